"""`rbg framing fit`: a photo framing for a dataset, so that photos are cropped as its faces were."""

from __future__ import annotations

from pathlib import Path

import click

from rbg.cli.outputs import check_out, force_option


@click.group("framing")
def framing_group() -> None:
    """Photo framings: how a dataset framed its faces, fitted once, for rbg query and rbg serve --framing."""


@framing_group.command("fit")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="FaceSet the model was trained on (its crops).")
@click.option("--photos", required=True, type=click.Path(path_type=Path),
              help="The same faces at source resolution (imported without --size), row for row: pasted into photos.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Framing folder to write.")
@click.option("--edit", default="pose", show_default=True, help="The factor whose values get their own framings.")
@click.option("--detector", default=None, help="Face detector the framing is fitted for [the photo path's: blaze].")
@click.option("--fit-faces", type=click.IntRange(min=1), default=150, show_default=True,
              help="Train faces pasted into photos to fit the framings on.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@force_option("photo framing")
def framing_fit(data: Path, photos: Path, out: Path, edit: str, detector: str | None, fit_faces: int, seed: int,
                quiet: bool, force: bool) -> None:
    """Fit how the train people's faces, pasted into photos and detected again, are cropped back to the
    dataset's framing: per detection kind and pose, a reframing regressor, seven crops per face (2–5 min).

    \b
    rbg framing fit --data runs/kdef32 --photos runs/kdef64 --out runs/kdef-framing
    rbg query --index runs/kdef-index --framing runs/kdef-framing photo.jpg --pose +45
    """
    import time

    from facedata.detect import DETECTORS, DetectConfig
    from facedata.errors import UserError
    from facedata.faceset import FaceSet
    from retrieval.photo_framing import KIND, FramingConfig, PhotoFraming

    if detector is not None and detector not in DETECTORS:
        raise UserError(f"unknown face detector '{detector}' (valid: {', '.join(DETECTORS)})")
    check_out(out, KIND, force, data, photos)
    started = time.perf_counter()
    config = FramingConfig(detector=detector or DetectConfig.detector, fit_faces=fit_faces, seed=seed)
    framing = PhotoFraming.fit(FaceSet.open(data), photos, edit, config, progress=not quiet)
    framing.save(out, force=force)
    kinds = ", ".join(f"{key} ({count})" for key, count in framing.record["framing_faces"].items() if "@" not in key)
    click.echo(f"photo framing: {out}")
    click.echo(f"  {framing.record['fit_faces']} train faces framed by {config.detector}: {kinds}; "
               f"{sum('@' in k for k in framing.framings)} framings per pose")
    click.echo(f"  time: {time.perf_counter() - started:.1f} s wall")
