"""What a crop off the dataset's framing costs: recall when each query is cropped from its photo with a
random offset and scale error of a chosen size.

    python benchmarks/framing_sensitivity.py --model runs/kdef-skip --data runs/kdef32 --photos runs/kdef64 \
        --queries 1000 --cache reports/.bench-cache --out runs/framing

The photo path (photo_path.py) finds a face, crops it from its box and searches with the crop; its
crops sit within a few hundredths of the dataset's crop on average (crop_offsets.py), yet its recall
is far below the crops'. This separates the crop's error from the detector's: each query face is pasted
into the same seeded 640×480 photo as in photo_path.py, and cropped at the pasted square moved by a
Gaussian offset (standard deviation `offset` crop sides, right and down) and scaled by exp(N(0, `scale`)),
so the background fills what the crop takes beyond the face, as in a photo. Level 0:0 is the pasted
square itself: the crops' figure up to one resampling. Search: "ours, all poses, classifier pose", as
photo_path.py and the crop-based bench rank it, against the same gallery.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facedata.faceset import FaceSet
from facedata.imageio import crop_square
from facedata.provenance import provenance
from generator.inference import Generator
from index.pose_classifier import PoseClassifierConfig
from photo_scenes import scenes, write_report
from facedata.faceset import same_faces_at_resolution
from retrieval.multi_view import rank_among, view_distances
from retrieval.protocol import sample_queries, score
from retrieval.reframe import ReframeConfig, Reframer, fit_reframer, jittered_transform  # noqa: F401 (tests take it from here)
from retrieval.two_step import fit_pose_filter

KS = (1, 5, 20)
LEVELS = "0:0,0.02:0,0:0.05,0.03:0.07,0.05:0.1,0.1:0.15"  # offset sd (crop sides) : log-scale sd


def parse_levels(text: str) -> list[tuple[float, float]]:
    """"0:0,0.03:0.07" → [(0.0, 0.0), (0.03, 0.07)]; SystemExit naming the bad entry."""
    levels = []
    for part in text.split(","):
        try:
            offset, scale = (float(v) for v in part.split(":"))
        except ValueError:
            raise SystemExit(f"--levels: '{part}' is not OFFSET:SCALE (two numbers, e.g. 0.03:0.07)") from None
        if offset < 0 or scale < 0:
            raise SystemExit(f"--levels: '{part}' has a negative standard deviation")
        levels.append((offset, scale))
    return levels


def jittered_crops(faces: np.ndarray, levels: list[tuple[float, float]], size: tuple[int, int],
                   seed: int, reframer: Reframer | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per level, each face pasted into its photo (the same photo at every level) and cropped off by that
    level's random error: a list of (n, h, w) uint8; and with a `reframer` those crops taken again where
    it reads them off (else an empty list)."""
    aspect = faces.shape[1] / faces.shape[2]
    placed = scenes(faces, seed)
    out, again = [], []
    for i, (offset, scale) in enumerate(levels):
        rng = np.random.default_rng([seed, i])
        shifts = rng.normal(0.0, offset, (len(faces), 2))
        scales = np.exp(rng.normal(0.0, scale, len(faces)))
        transforms = [jittered_transform(scene.truth, aspect, s, z) for scene, s, z in zip(placed, shifts, scales)]
        out.append(np.stack([crop_square(scene.image, t, size) for scene, t in zip(placed, transforms)]))
        if reframer is not None:
            errors = reframer.errors(out[-1])
            again.append(np.stack([crop_square(scene.image, Reframer.corrected(t, e), size)
                                   for scene, t, e in zip(placed, transforms, errors)]))
    return out, again


def run(args) -> dict:
    started = time.perf_counter()
    levels = parse_levels(args.levels)
    faces = FaceSet.open(args.data)
    photos = same_faces_at_resolution(faces, args.photos, "--photos")
    generator = Generator.load(args.model)
    edit = generator.edit_factor
    gallery, train = faces.split(args.split), faces.split("train")
    queries = sample_queries(gallery, edit, args.queries, seed=args.seed)
    pose_filter = fit_pose_filter(train, gallery, queries, PoseClassifierConfig(model="cnn", seed=args.seed),
                                  Path(args.cache) if args.cache else None)
    gallery_rows = np.flatnonzero((faces.faces["split"] == args.split).to_numpy())
    asked = np.unique(queries.positions)  # each query face is photographed once
    index_of = {int(p): i for i, p in enumerate(asked)}
    photo_index = np.array([index_of[int(p)] for p in queries.positions])
    reframer, reframe_record = None, None
    if args.reframe:
        train_rows = np.flatnonzero((faces.faces["split"] == "train").to_numpy())
        reframer, reframe_record = fit_reframer(photos.images[train_rows], faces.images.shape[1:],
                                                ReframeConfig(seed=args.seed), args.reframe_copies, args.seed)
    crops, again = jittered_crops(photos.images[gallery_rows[asked]], levels, faces.images.shape[1:], args.seed + 1,
                                  reframer)
    g, q, a = len(gallery), len(queries), len(asked)
    images = np.concatenate([gallery.images, *crops, *again])
    rows = np.concatenate([queries.positions, *[g + i * a + photo_index for i in range(len(crops) + len(again))]])
    every, _ = view_distances(generator, images, rows, None, layer=args.layer, batch_size=args.batch_size)
    results = []
    kinds = [("the dataset's", None)] + [("pasted square, jittered", level) for level in levels]
    kinds += [("jittered, then reframed", level) for level in levels] if again else []
    for i, (kind, level) in enumerate(kinds):
        ranked = rank_among(every[i * q : (i + 1) * q, :g], pose_filter.gallery_pred, queries.targets, max(KS))
        hits = score(ranked, queries, gallery, 1, KS)[1]
        row = {"crop": kind,
               "offset_sd": None if level is None else level[0], "log_scale_sd": None if level is None else level[1]}
        row.update({f"r{k}": round(100 * float(hits[:, :k].any(axis=1).mean()), 1) for k in KS})
        results.append(row)
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "model": str(args.model), "data": str(args.data), "set": faces.info.name, "photos": str(args.photos),
        "layer": generator.check_layer(args.layer), "split": args.split, "gallery": g, "seed": args.seed, "queries": q, "query_photos": a, "method": "ours, all poses, classifier pose",
        "pose_classifier_accuracy": round(100 * pose_filter.accuracy, 1), "results": results,
        **({"reframe": reframe_record} if reframe_record else {}),
        "seconds": round(time.perf_counter() - started, 1), "provenance": provenance(seed=args.seed),
    }


def markdown(record: dict) -> str:
    people = f" of the {record['split']} people" if record.get("split", "test") != "test" else ""
    lines = [f"`{record['set']}`: {record['queries']:,} queries{people}, criterion-1 recall in %, {record['method']}; each "
             "query cropped from its photo with a random offset (standard deviation in crop sides) and scale "
             "(exp of a Gaussian of this standard deviation).", "",
             "| query crop | offset sd | log-scale sd | R@1 | R@5 | R@20 |", "|---|---:|---:|---:|---:|---:|"]
    for r in record["results"]:
        offset = "—" if r["offset_sd"] is None else f"{r['offset_sd']:g}"
        scale = "—" if r["log_scale_sd"] is None else f"{r['log_scale_sd']:g}"
        lines.append(f"| {r['crop']} | {offset} | {scale} | {r['r1']} | {r['r5']} | {r['r20']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint (or training run) folder")
    parser.add_argument("--data", required=True, help="the FaceSet the model works on (its test people are the gallery)")
    parser.add_argument("--photos", required=True, help="the same faces at source resolution, pasted into the photos")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--levels", default=LEVELS, help=f"OFFSET_SD:LOG_SCALE_SD,… [{LEVELS}]")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="whose faces form the gallery and the queries: val to choose a setting, test to report it")
    parser.add_argument("--reframe", action="store_true",
                        help="also each crop taken again where a regressor trained on the train people reads it off")
    parser.add_argument("--reframe-copies", type=int, default=3, help="random crops of each train face it learns from")
    parser.add_argument("--layer", default=None, help="feature layer [the model's default]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cache", default=None, help="the bench's cache folder (the pose classifier is reused)")
    parser.add_argument("--out", required=True, help="folder for framing_sensitivity.json and .md")
    args = parser.parse_args(argv)
    parse_levels(args.levels)  # a bad --levels is refused before any work
    record = run(args)
    write_report(args.out, "framing_sensitivity", record, markdown(record))
    print(markdown(record))
    print(f"wall time {record['seconds']} s")


if __name__ == "__main__":
    main()
