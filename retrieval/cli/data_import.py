"""`rbg data import multipie|caspeal|manifest`: read a real face set into a FaceSet folder, atomically."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("import")
def import_group() -> None:
    """Read real faces into a FaceSet: Multi-PIE, CAS-PEAL-R1, or a manifest of your own."""


@import_group.command("multipie")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--landmarks", type=click.Path(path_type=Path), help="CSV of eyes and chin per image "
              "(file,left_eye_x,left_eye_y,right_eye_x,right_eye_y,chin_x,chin_y); else an approximate fixed crop.")
@click.option("--size", default="32", show_default=True, help="Output image size: N or HxW.")
@click.option("--train-identities", default=100, show_default=True, help="The first N subjects (by id) are train.")
@click.option("--recording", default="01", show_default=True, help="Session 1 recording to read.")
def multipie(root: Path, out: Path, landmarks: Path | None, size: str, train_identities: int, recording: str) -> None:
    """Multi-PIE session 1 under ROOT: 7 cameras as yaw -45..+45, 20 illuminations (§4.1)."""
    from facedata.imageio import size_hw
    from facedata.multipie import read_multipie

    faceset = read_multipie(root, size=size_hw(size), landmarks=landmarks,
                            train_identities=train_identities, recording=recording)
    _write(faceset, out)


@import_group.command("caspeal")
@click.argument("roots", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--eyes", type=click.Path(path_type=Path), help="FaceFP_2.txt style eye file "
              "('<name> lx ly rx ry' per line); else an approximate fixed crop.")
@click.option("--size", default="32", show_default=True, help="Output image size: N or HxW.")
@click.option("--train-identities", default=350, show_default=True, help="The first N people (by id) are train.")
def caspeal(roots: tuple[Path, ...], out: Path, eyes: Path | None, size: str, train_identities: int) -> None:
    """CAS-PEAL-R1 accessory images under ROOTS (FRONTAL/Accessory, plus FRONTAL/Normal for 'none')."""
    from facedata.caspeal import read_caspeal
    from facedata.imageio import size_hw

    faceset = read_caspeal(list(roots), size=size_hw(size), eyes=eyes, train_identities=train_identities)
    _write(faceset, out)


@import_group.command("manifest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--size", default=None, help="Resize every image to N or HxW (required when sizes differ).")
@click.option("--name", default=None, help="FaceSet name (default: the manifest's folder name).")
@click.option("--train-identities", type=int, default=None,
              help="The first N identities (by first appearance) are train; default 70%. A 'split' column wins.")
@click.option("--align", is_flag=True, help="Images are photos: detect each face (dlib, the deep extra) and crop it "
              "eye-aligned at --size (square, default 32).")
@click.option("--face", type=int, default=1, show_default=True, help="With --align: the N-th largest face of each photo.")
@click.option("--skip-no-face", is_flag=True, help="With --align: leave out rows without a usable face (listed in "
              "faceset.json) instead of stopping.")
def manifest(file: Path, out: Path, size: str | None, name: str | None, train_identities: int | None,
             align: bool, face: int, skip_no_face: bool) -> None:
    """Your own faces listed in FILE (CSV or Parquet: identity, path or images.npy, factor columns)."""
    from facedata.errors import UserError
    from facedata.imageio import size_hw
    from facedata.manifest import read_manifest
    from facedata.photo import AlignConfig

    if not align and (face != 1 or skip_no_face):
        raise UserError("--face and --skip-no-face go with --align")
    aligned = AlignConfig(face=face, skip_no_face=skip_no_face) if align else None
    faceset = read_manifest(file, size=size_hw(size) if size else None, name=name, train_identities=train_identities,
                            align=aligned)
    _write(faceset, out)


def _write(faceset, out: Path) -> None:
    """Write the FaceSet atomically and print what it holds: counts per split and per factor value."""
    faceset.write(out)
    faces = faceset.faces
    splits = faces.groupby("split")["identity"].nunique()
    h, w = faceset.image_size
    click.echo(f"Wrote {out}: {len(faceset)} faces of {h}x{w}, {faceset.num_identities} identities "
               f"(train {splits.get('train', 0)}, test {splits.get('test', 0)})")
    for factor in faceset.factors:
        counts = faces[factor].value_counts()
        listed = ", ".join(f"{value} {int(counts.get(value, 0))}" for value in faceset.vocabulary(factor))
        click.echo(f"  {factor} ({len(counts)} values): {listed}")
    extra = faceset.info.extra
    if "alignment" in extra:
        click.echo(f"  alignment: {extra['alignment']}")
    if extra.get("skipped_cameras"):
        click.echo("  skipped (other cameras): " + ", ".join(f"{k} {v}" for k, v in extra["skipped_cameras"].items()))
    if extra.get("dropped_identities"):
        click.echo(f"  dropped: {extra['dropped_identities']} identities without any accessory image")
    if extra.get("missing_classes"):
        click.echo(f"  no images of: {', '.join(extra['missing_classes'])}")
    if extra.get("unaligned"):
        click.echo(f"  left out: {len(extra['unaligned'])} rows without a usable face (listed in faceset.json)")
    if extra.get("ignored_columns"):
        click.echo(f"  ignored columns: {', '.join(extra['ignored_columns'])}")
