"""`rbg data import multipie|caspeal|kdef|manifest`: read a real face set into a FaceSet folder, atomically."""

from __future__ import annotations

from pathlib import Path

import click

from rbg.cli.face_options import detector_option
from rbg.cli.outputs import check_faceset_out, force_option

val_identities_option = click.option(
    "--val-identities", type=click.IntRange(min=0), default=None,
    help="The last N people of the train side are val, to validate and tune on; the test people stay as they are "
         "[about 10 % of the train side; 0: no val split].")


@click.group("import")
def import_group() -> None:
    """Read real faces into a FaceSet: Multi-PIE, CAS-PEAL-R1, KDEF, or a manifest of your own."""


@import_group.command("multipie")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--landmarks", type=click.Path(path_type=Path), help="CSV of eyes and chin per image "
              "(file,left_eye_x,left_eye_y,right_eye_x,right_eye_y,chin_x,chin_y); else an approximate fixed crop.")
@click.option("--size", default="32", show_default=True, help="Output image size: N or HxW.")
@click.option("--train-identities", default=100, show_default=True, help="The first N subjects (by id) are train and val; the rest test.")
@val_identities_option
@click.option("--recording", default="01", show_default=True, help="Session 1 recording to read.")
@force_option("FaceSet")
def multipie(root: Path, out: Path, landmarks: Path | None, size: str, train_identities: int,
             val_identities: int | None, recording: str, force: bool) -> None:
    """Multi-PIE session 1 under ROOT: 7 cameras as yaw -45..+45, 20 illuminations (§4.1)."""
    check_faceset_out(out, force, root, landmarks)
    from facedata.imageio import size_hw
    from facedata.multipie import read_multipie

    faceset = read_multipie(root, size=size_hw(size), landmarks=landmarks,
                            train_identities=train_identities, val_identities=val_identities, recording=recording)
    _write(faceset, out, force)


@import_group.command("caspeal")
@click.argument("roots", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--eyes", type=click.Path(path_type=Path), help="FaceFP_2.txt style eye file "
              "('<name> lx ly rx ry' per line); else an approximate fixed crop.")
@click.option("--size", default="32", show_default=True, help="Output image size: N or HxW.")
@click.option("--train-identities", default=350, show_default=True, help="The first N people (by id) are train and val; the rest test.")
@val_identities_option
@force_option("FaceSet")
def caspeal(roots: tuple[Path, ...], out: Path, eyes: Path | None, size: str, train_identities: int,
            val_identities: int | None, force: bool) -> None:
    """CAS-PEAL-R1 accessory images under ROOTS (FRONTAL/Accessory, plus FRONTAL/Normal for 'none')."""
    check_faceset_out(out, force, *roots, eyes)
    from facedata.caspeal import read_caspeal
    from facedata.imageio import size_hw

    faceset = read_caspeal(list(roots), size=size_hw(size), eyes=eyes, train_identities=train_identities,
                           val_identities=val_identities)
    _write(faceset, out, force)


@import_group.command("kdef")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--size", default="32", show_default=True, help="Output image size: N or HxW.")
@click.option("--train-identities", default=50, show_default=True,
              help="The first N people (F01…F35, then M01…) are train and val; the rest test.")
@val_identities_option
@force_option("FaceSet")
def kdef(root: Path, out: Path, size: str, train_identities: int, val_identities: int | None, force: bool) -> None:
    """KDEF as distributed under ROOT (AF01/AF01ANFL.JPG …): pose -90..+90, expression, session factors."""
    check_faceset_out(out, force, root)
    from facedata.imageio import size_hw
    from facedata.kdef import read_kdef

    faceset = read_kdef(root, size=size_hw(size), train_identities=train_identities, val_identities=val_identities)
    _write(faceset, out, force)


@import_group.command("manifest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FaceSet folder to write.")
@click.option("--size", default=None, help="Resize every image to N or HxW (required when sizes differ).")
@click.option("--name", default=None, help="FaceSet name (default: the manifest's folder name).")
@click.option("--train-identities", type=int, default=None,
              help="The first N identities (by first appearance) are train and val; default 70%. A 'split' column wins.")
@val_identities_option
@click.option("--factors", default=None, metavar="COLUMNS",
              help="Comma-separated columns kept as factors [every column but identity, path, index, split, "
                   "source]; e.g. 'pose,expression,session'. The others are ignored.")
@click.option("--images", "images", type=click.Path(path_type=Path), default=None,
              help="The images.npy to read pixels from (default: the one beside FILE; its 'index' column, "
                   "if any, picks rows).")
@click.option("--align", is_flag=True, help="Images are photos: detect each face (--detector) and crop it "
              "as the training faces were framed, at --size (square, default 32).")
@click.option("--face", type=int, default=1, show_default=True, help="With --align: the N-th largest face of each photo.")
@click.option("--skip-no-face", is_flag=True, help="With --align: leave out rows without a usable face (listed in "
              "faceset.json) instead of stopping.")
@detector_option
@force_option("FaceSet")
def manifest(file: Path, out: Path, size: str | None, name: str | None, train_identities: int | None,
             val_identities: int | None, factors: str | None, images: Path | None, align: bool, face: int, skip_no_face: bool,
             detector: str, min_face: int | None, force: bool) -> None:
    """Your own faces listed in FILE (CSV or Parquet).

    Columns: identity (required); path (an image file) or an images.npy beside FILE (or --images),
    with an optional 'index' column; split (train/val/test) and source (optional); every other column
    (pose, expression, session, tilt …) is a factor unless --factors names the ones to keep. Kept
    factors can be matched in training pairs (rbg train --pair-match) and by criterion 2
    (rbg bench --criterion2). With --align the images are photos whose faces are detected and
    eye-aligned.
    """
    check_faceset_out(out, force, file, *([images] if images is not None else []))
    from facedata.errors import UserError
    from facedata.imageio import size_hw
    from facedata.manifest import read_manifest
    from facedata.detect import detect_config
    from facedata.photo import AlignConfig

    if not align and (face != 1 or skip_no_face):
        raise UserError("--face and --skip-no-face go with --align")
    aligned = AlignConfig(face=face, skip_no_face=skip_no_face, detect=detect_config(detector, min_face)) if align else None
    kept = [f.strip() for f in factors.split(",") if f.strip()] if factors is not None else None
    faceset = read_manifest(file, size=size_hw(size) if size else None, name=name, train_identities=train_identities,
                            val_identities=val_identities, factors=kept, images=images, align=aligned)
    _write(faceset, out, force)


def _write(faceset, out: Path, force: bool = False) -> None:
    """Write the FaceSet atomically and print its summary (facedata.contact_sheet.summarize)."""
    from facedata.contact_sheet import summarize

    faceset.write(out, force=force)
    click.echo(f"Wrote {out}")
    click.echo(summarize(faceset))
