"""How far the crop of a re-detected face lies from the dataset's own crop, per pose, and what a
per-kind correction learned on the train people leaves.

    python benchmarks/crop_offsets.py --kdef data/kdef --detector hog+haar --out runs/crop_offsets.json

Each face of a FaceSet-like folder (images.npy + labels.csv with identity and pose) is pasted into a
640×480 background (photo_scenes, seeded), detected again, and cropped as the photo path crops it
(facedata.align.crop_transform: eye-aligned with landmarks, from the box without). The pasted square
is the dataset's crop. Per pose: the detection rate, and the crop's centre offset (in dataset-crop
sides, right and down) and scale (crop side / dataset side), as medians and spreads. Then a
correction per detection kind (frontal, profile-left, profile-right), the median scale and offset on
the train people (identity < --train-identities), is applied to the others and measured again.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.align import crop_transform
from facedata.atomic import write_json
from facedata.detect import DETECTORS, DetectConfig, detect_config, detect_faces
from facedata.provenance import provenance
from photo_scenes import found_at, scenes


def crop_square(face) -> tuple[float, float, float]:
    """(centre x, centre y, side) in photo pixels of the crop the photo path takes of a detected face."""
    t = crop_transform(face)
    centre = t @ np.array([0.5, 0.5, 1.0])
    return float(centre[0]), float(centre[1]), float(np.hypot(*t[:, 0]))


def measure(faces: np.ndarray, labels: pd.DataFrame, config: DetectConfig, seed: int) -> pd.DataFrame:
    """One row per face: pose, identity, found, kind, and the crop's offset and scale against the pasted square."""
    rows = []
    for scene, label in tqdm(list(zip(scenes(faces, seed), labels.itertuples())), desc="detect", unit="scene"):
        tx, ty, side = (scene.truth[0] + scene.truth[2]) / 2, (scene.truth[1] + scene.truth[3]) / 2, scene.truth[2] - scene.truth[0]
        hits = [f for f in detect_faces(scene.image, config) if found_at(f.box, scene.truth)]
        row = {"identity": label.identity, "pose": label.pose, "found": bool(hits), "kind": None}
        if hits:
            face = max(hits, key=lambda f: f.area)
            cx, cy, s = crop_square(face)
            row.update(kind=face.kind, dx=(cx - tx) / side, dy=(cy - ty) / side, scale=s / side,
                       box_dx=((face.box[0] + face.box[2]) / 2 - tx) / side, box_dy=((face.box[1] + face.box[3]) / 2 - ty) / side,
                       box_scale=(face.box[2] - face.box[0]) / side)
        rows.append(row)
    return pd.DataFrame(rows)


def corrected(table: pd.DataFrame, train: pd.Series) -> pd.DataFrame:
    """The crops after a per-kind correction fitted on the train rows: the crop = box centre + median offset,
    side = median scale × box width (all in box terms), applied to every row."""
    out = table.copy()
    found = table["found"]
    for kind, group in table[found & train].groupby("kind"):
        scale = float((1 / group["box_scale"]).median())  # dataset side per box width
        ox = float(((0 - group["box_dx"]) / group["box_scale"]).median())  # dataset centre from box centre, box widths
        oy = float(((0 - group["box_dy"]) / group["box_scale"]).median())
        mask = found & (table["kind"] == kind)
        bs = table.loc[mask, "box_scale"]
        out.loc[mask, "dx"] = table.loc[mask, "box_dx"] + ox * bs
        out.loc[mask, "dy"] = table.loc[mask, "box_dy"] + oy * bs
        out.loc[mask, "scale"] = scale * bs
    return out


def summary(table: pd.DataFrame, people: pd.Series) -> list[dict]:
    """Per pose: found rate, median and spread (median absolute) of offset and scale, over `people` rows."""
    rows = []
    for pose, group in table[people].groupby("pose"):
        hit = group[group["found"]]
        row = {"pose": str(pose), "faces": len(group), "found": float(group["found"].mean())}
        for key in ("dx", "dy", "scale"):
            values = hit[key].dropna()
            row[f"{key}_median"] = float(values.median()) if len(values) else None
            row[f"{key}_abs_median"] = float((values - (1.0 if key == "scale" else 0.0)).abs().median()) if len(values) else None
        rows.append(row)
    return rows


def markdown(record: dict) -> str:
    lines = []
    for name in ("as cropped", "corrected per kind on train people"):
        lines += [f"**{name}** (test people; offsets in dataset-crop sides, scale = crop side / dataset side)", "",
                  "| pose | faces | found | centre right | centre down | scale | median \\|offset\\| right | down | \\|scale − 1\\| |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in record[name]:
            f = lambda v: "—" if v is None else f"{v:+.3f}"  # noqa: E731
            g = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"| {r['pose']} | {r['faces']} | {100 * r['found']:.1f} % | {f(r['dx_median'])} | {f(r['dy_median'])} | "
                         f"{g(r['scale_median'])} | {g(r['dx_abs_median'])} | {g(r['dy_abs_median'])} | {g(r['scale_abs_median'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kdef", type=Path, required=True, help="folder with images.npy and labels.csv (identity, pose)")
    parser.add_argument("--detector", default="hog+haar", choices=list(DETECTORS))
    parser.add_argument("--train-identities", type=int, default=45, help="people 0..N-1 fit the correction")
    parser.add_argument("--test-from", type=int, default=50, help="people from this one on are measured")
    parser.add_argument("--per-pose", type=int, default=60, help="faces per pose and split, drawn at random")
    parser.add_argument("--min-face", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    images, labels = np.load(args.kdef / "images.npy"), pd.read_csv(args.kdef / "labels.csv")
    rng = np.random.default_rng(args.seed)
    picked = []
    for pose in sorted(labels["pose"].unique()):
        for people in (labels["identity"] < args.train_identities, labels["identity"] >= args.test_from):
            pool = np.flatnonzero((labels["pose"] == pose) & people)
            picked.append(rng.choice(pool, min(args.per_pose, len(pool)), replace=False))
    picked = np.concatenate(picked)
    config = detect_config(args.detector, args.min_face)
    table = measure(images[picked], labels.iloc[picked].reset_index(drop=True), config, args.seed)
    train, test = table["identity"] < args.train_identities, table["identity"] >= args.test_from
    record = {"config": asdict(config), "as cropped": summary(table, test),
              "corrected per kind on train people": summary(corrected(table, train), test),
              "kinds_found": table[test & table["found"]].groupby(["pose", "kind"]).size().rename("n").reset_index().to_dict("records"),
              "provenance": provenance(seed=args.seed, kdef=str(args.kdef))}
    print(markdown(record))
    if args.out:
        write_json(args.out, record)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
