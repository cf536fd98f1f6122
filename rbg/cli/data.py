"""`rbg data ...`: render, import and inspect FaceSets."""

from __future__ import annotations

import click

from rbg.cli.data_import import import_group, val_identities_option
from rbg.cli.outputs import check_faceset_out, force_option


@click.group()
def data() -> None:
    """Make and inspect FaceSets (the built-in SynthPIE renderer, real-set importers)."""


data.add_command(import_group)


@data.command("synth")
@click.option("--preset", default="small", show_default=True,
              help="paper | accessory | completion | small | varied (expressions, sex and age, skin texture, backdrops, "
                   "exposure, tilt, noise; framed like KDEF) | pose-accessory (5 poses × 4 accessories: for "
                   "--task pose+accessory)")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="FaceSet folder to write")
@click.option("--identities", type=int, help="number of identities (keeps the preset's train share)")
@click.option("--train-identities", type=int, help="how many of the first identities form the train side (train and val)")
@val_identities_option
@click.option("--size", type=int, help="output image size in pixels (square)")
@click.option("--identity-spread", type=float, help="how far identities deviate from the mean face (0 = all alike)")
@click.option("--seed", type=int, help="random seed of the identities")
@click.option("--eye-bar", is_flag=True, help="also render every image with a black bar over the eyes (factor occluded)")
@click.option("--poses", help="comma-separated yaw angles in degrees, e.g. -90,-45,0,45,90 (default: the preset's)")
@force_option("FaceSet")
def synth(preset, out, identities, train_identities, val_identities, size, identity_spread, seed, eye_bar, poses, force) -> None:
    """Render SynthPIE faces from 3D heads into a FaceSet; prints the time and the factor counts."""
    from facedata.contact_sheet import summarize
    from facedata.synth import render_faceset, synth_config

    check_faceset_out(out, force)
    yaws = None
    if poses is not None:
        try:
            yaws = tuple(float(p) for p in poses.split(","))
        except ValueError:
            raise click.BadParameter(f"{poses!r}: give comma-separated numbers of degrees", param_hint="--poses") from None

    config = synth_config(
        preset,
        identities=identities,
        train_identities=train_identities,
        val_identities=val_identities,
        image_size=size,
        identity_spread=identity_spread,
        seed=seed,
        occlusion=("no", "yes") if eye_bar else None,
        poses=yaws,
    )
    click.echo(f"rendering {config.image_count} images ({config.identities} identities) at {config.image_size}×{config.image_size}", err=True)
    faceset = render_faceset(config)
    faceset.write(out, force=force)
    click.echo(f"rendered {len(faceset)} images in {faceset.info.extra['render_seconds']:.1f} s → {out}")
    click.echo(summarize(faceset))


@data.command("show")
@click.argument("faceset_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="contact sheet to write (.png, .jpg or .jpeg)")
@click.option("--rows", default=6, show_default=True, type=click.IntRange(min=1), help="identities shown per block")
def show(faceset_dir, out, rows) -> None:
    """Print a FaceSet's factor summary and write a labelled PNG contact sheet."""
    from facedata.contact_sheet import contact_sheet, summarize
    from facedata.faceset import FaceSet
    from facedata.imageio import image_format
    from facedata.outputs import check_output_file

    image_format(out)
    check_output_file(out)
    faceset = FaceSet.open(faceset_dir)
    click.echo(summarize(faceset))
    click.echo(f"contact sheet → {contact_sheet(faceset, out, rows=rows)}")

