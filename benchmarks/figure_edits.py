"""Figure 8 across the newer edits: one unseen SynthPIE face relit under every light, and turned and
dressed in every (pose, accessory) pair, by the shipped models.

    python benchmarks/figure_edits.py --data runs/multi --out docs/figure8_new_edits.png

The face is the first test face of a `pose-accessory` FaceSet (`rbg data synth --preset
pose-accessory`) in the frontal pose without accessory; its light (07) is one the relighting model
knows. Left: the face, then `synthpie-illumination`'s stage-2 image for each of its 20 lights, five a
row. Right: `synthpie-pose-accessory`'s image for each pose (columns) and accessory (rows).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facedata.atomic import atomic_file
from facedata.faceset import FaceSet
from generator.evaluate import figure_value_grid, save_png, tile
from generator.inference import Generator


def frontal_face(faces: FaceSet) -> tuple[np.ndarray, str]:
    """The first test face in pose 0 without accessory, and its identity."""
    test = faces.split("test")
    rows = np.flatnonzero(((test.faces["pose"] == "0") & (test.faces["accessory"] == "none")).to_numpy())
    return test.images[rows[0]], str(test.faces["identity"].iloc[rows[0]])


def lights_grid(generator: Generator, face: np.ndarray, path: Path, per_row: int = 5) -> None:
    """The face (first column, first row), then its stage-2 image under every light, `per_row` a row."""
    values = len(generator.vocabulary)
    _, stage2 = generator.generate(np.repeat(face[None], values, axis=0), np.arange(values))
    blank = np.full(face.shape, 255.0)
    rows = [[face if r == 0 else blank, *stage2[r * per_row : (r + 1) * per_row]] for r in range(-(-values // per_row))]
    names = generator.vocabulary
    labels = ["/".join(names[c::per_row]) for c in range(per_row)]  # the lights down each column
    save_png(tile(rows), path, columns=("input", *labels), cell=face.shape[1])


def captioned(path: Path, caption: str) -> Image.Image:
    """The PNG at `path` under a one-line caption, on white."""
    picture = Image.open(path).convert("L")
    band = 28
    out = Image.new("L", (picture.width, picture.height + band), 255)
    ImageDraw.Draw(out).text((6, 8), caption, fill=0)
    out.paste(picture, (0, band))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a pose-accessory FaceSet (its first frontal test face is used)")
    parser.add_argument("--lights-model", default="synthpie-illumination")
    parser.add_argument("--pose-accessory-model", default="synthpie-pose-accessory")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    face, identity = frontal_face(FaceSet.open(args.data))
    with tempfile.TemporaryDirectory() as scratch:
        lights, grid = Path(scratch) / "lights.png", Path(scratch) / "grid.png"
        lights_grid(Generator.load(args.lights_model), face, lights)
        pose_accessory = Generator.load(args.pose_accessory_model)
        figure_value_grid(pose_accessory, face, grid)
        rows = " / ".join(pose_accessory.factor_vocabularies["accessory"])
        panels = [captioned(lights, f"{identity} (unseen) under each light, 5 a row: {args.lights_model}"),
                  captioned(grid, f"each pose (columns) and accessory (rows: {rows}): {args.pose_accessory_model}")]
    gap = 24
    sheet = Image.new("L", (sum(p.width for p in panels) + gap, max(p.height for p in panels)), 255)
    sheet.paste(panels[0], (0, 0))
    sheet.paste(panels[1], (panels[0].width + gap, 0))
    with atomic_file(args.out) as tmp:
        sheet.save(tmp, format="PNG")
    print(f"written: {args.out} ({sheet.width}×{sheet.height})")


if __name__ == "__main__":
    main()
