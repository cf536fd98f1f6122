"""How many faces of a real set dlib's detector finds, per factor value, at the photo alignment's settings.

    python benchmarks/detect_faces.py                      # ../shared/data/cmu_faces, the default DetectConfig
    python benchmarks/detect_faces.py --min-face 20 --threshold -0.3 --out runs/detect.json

Prints a markdown table (found / all, per pose and per accessory) and writes JSON with the config,
the versions and the command.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.atomic import write_json
from facedata.detect import DetectConfig, detect_faces
from facedata.provenance import provenance

DEFAULT_SET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmu_faces"


def found_table(found: np.ndarray, labels: pd.DataFrame, factors: list[str]) -> list[dict]:
    """Rows of (factor, value, found, total, rate), the whole set first."""
    rows = [{"factor": "all", "value": "", "found": int(found.sum()), "total": len(found)}]
    for factor in factors:
        for value, group in labels.groupby(factor, sort=True):
            hits = found[group.index.to_numpy()]
            rows.append({"factor": factor, "value": str(value), "found": int(hits.sum()), "total": len(hits)})
    return [{**row, "rate": row["found"] / row["total"]} for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_SET, help="folder with images.npy and labels.csv")
    parser.add_argument("--min-face", type=int, default=DetectConfig.min_face)
    parser.add_argument("--threshold", type=float, default=DetectConfig.threshold)
    parser.add_argument("--factors", nargs="*", default=["pose", "accessory"])
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)

    images = np.load(args.data / "images.npy", mmap_mode="r")  # (N, H, W) uint8
    labels = pd.read_csv(args.data / "labels.csv")
    config = DetectConfig(min_face=args.min_face, threshold=args.threshold)
    start = time.perf_counter()
    counts = [len(detect_faces(np.asarray(image), config)) for image in tqdm(images, desc="detect", unit="img")]
    seconds = time.perf_counter() - start
    found = np.asarray(counts) > 0
    rows = found_table(found, labels.iloc[: len(images)].reset_index(drop=True), args.factors)

    scale = config.work_scale(images.shape[1:])
    print(f"{args.data.name}: {len(images)} images of {images.shape[1]}x{images.shape[2]}, resized {scale:.2f}x for the "
          f"detector (min_face {config.min_face} px, threshold {config.threshold}); {seconds:.1f} s, "
          f"{int((np.asarray(counts) > 1).sum())} with several faces")
    print("| factor | value | found | of | rate |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['factor']} | {row['value']} | {row['found']} | {row['total']} | {100 * row['rate']:.1f} % |")
    if args.out:
        record = {"config": asdict(config), "work_scale": scale, "seconds": seconds, "rows": rows,
                  "provenance": provenance(data=str(args.data), dlib_bin=metadata.version("dlib-bin"))}
        write_json(args.out, record)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
