"""Gallery normalization modes: build speed and the recall each gives (`rbg index build --normalize`).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_normalize.py --model M --data D --out docs/results/normalize_X.json

For each mode of index.pose_normalize.NORMALIZE_MODES ("full": the paper's 7 generations per face and
the closest kept, then the features of that one; "classifier": the pose of a pixel classifier fitted
on the train identities, then one generation; "none": that pose and the refiner's features of the image
itself, no generation):
- speed: faces/s of the gallery features (the build's cost; the FAISS add is negligible beside it),
  all modes timed in one run on the same first `--speed-faces` test faces, in turns, so load on the
  machine hits them alike; ratios are to "full";
- recall: an index of the whole test gallery per mode (`rbg index build`'s build_index, Flat), searched
  as `rbg query` does (features of each query generated in its target) by the paper's seeded queries, scored with
  retrieval.protocol.score: criterion 1 and 2, R@1/5/20, and the share of faces whose kept pose is true.
Indexes are kept in `--index-dir` (one folder per mode) and reused by a rerun when they hold the same
gallery, model and mode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facedata.atomic import write_json
from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.provenance import provenance
from generator.inference import Generator
from index.faiss_factory import IndexConfig
from index.faiss_index import GalleryIndex, build_index
from index.features import all_value_features
from index.pose_classifier import fit_on_train_split
from index.pose_normalize import NORMALIZE_MODES, normalize_features
from retrieval.metrics import PAPER_KS, criterion2_factors, default_criterion2
from retrieval.protocol import sample_queries, score


def build_speed(generator, images: np.ndarray, modes, classifier, layer: str, batch: int, rounds: int) -> dict:
    """Faces/s of each mode's gallery features on the same images, timed in turns over `rounds` rounds."""
    seconds = {mode: 0.0 for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            start = time.perf_counter()
            for i in range(0, len(images), batch):
                normalize_features(generator, images[i : i + batch], layer, mode, classifier, batch)
            seconds[mode] += time.perf_counter() - start
    return {mode: rounds * len(images) / seconds[mode] for mode in modes}


def mode_index(generator, gallery: FaceSet, folder: Path, mode: str, views: str, classifier, info: dict,
               batch: int) -> tuple[GalleryIndex, float | None]:
    """The mode's Flat index of the gallery, reused from `folder` when it matches; and its build seconds if built now."""
    if (folder / "index.json").is_file():
        try:
            index = GalleryIndex.load(folder, generator, gpu=False)
            same = (index.info.gallery.get("fingerprint") == gallery.fingerprint()
                    and index.config.normalize == mode and index.views == views and index.info.factory == "Flat")
            if same:
                return index, None
        except UserError:
            pass
    start = time.perf_counter()
    config = IndexConfig(factory="Flat", batch_size=batch, views=views, normalize=mode, gpu=False)
    index = build_index(generator, gallery, folder, config, progress=True, force=True,
                        classifier=classifier, classifier_info=info)
    return index, time.perf_counter() - start


def query_vectors(generator, gallery: FaceSet, queries, views: str, batch: int) -> np.ndarray:
    """The queries' features generated in their targets, as `rbg query` computes them (the same for every mode)."""
    images = gallery.images[queries.positions]
    if views == "all":
        return all_value_features(generator, images, generator.default_feature_layer, batch)
    return generator.features(images, list(queries.targets), batch_size=batch)


def recall_rows(index: GalleryIndex, vectors: np.ndarray, gallery: FaceSet, queries, also) -> dict:
    """recall@K of ours (plain search, as `rbg query` on a kept-views index) and ours pose-aware
    (ranked among faces kept in the target, as on an all-views index) for one index."""
    k = max(PAPER_KS)
    aware = index.search_among(vectors, k, queries.targets)[1]
    plain = aware if index.views == "all" else index.search(vectors, k)[1]
    rows = {}
    for name, ranked in (("ours", plain), ("ours, pose-aware", aware)):
        rows[name] = {f"criterion{c}": {str(k): 100 * v for k, v in score(ranked, queries, gallery, c, PAPER_KS, also=also)[0].recall.items()}
                      for c in (1, 2)}
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="FaceSet: the train split fits the pose classifier, the test split is the gallery")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--modes", default=",".join(NORMALIZE_MODES))
    parser.add_argument("--views", default="kept", choices=("kept", "all"))
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--criterion2", default=None, help="factor(s) criterion 2 also matches [illumination, else expression]")
    parser.add_argument("--speed-faces", type=int, default=1000, help="test faces timed per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--index-dir", default=None, help="where the per-mode indexes are kept [beside --out]")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        modes = tuple(m.strip() for m in args.modes.split(","))
        unknown = [m for m in modes if m not in NORMALIZE_MODES]
        if unknown:
            raise UserError(f"--modes: unknown {unknown} (valid: {', '.join(NORMALIZE_MODES)})")
        generator = Generator.load(args.model, args.device)
        faces = FaceSet.open(args.data)
        gallery = faces.split("test")
        layer = generator.default_feature_layer
        classifier, info = fit_on_train_split(faces, generator.edit_factor)
        truth = gallery.faces[generator.edit_factor].to_numpy().astype(str)
        classifier_accuracy = float(np.mean(classifier.predict(gallery.images) == truth))
        load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None

        speed_images = gallery.images[: min(args.speed_faces, len(gallery))]
        rates = build_speed(generator, speed_images, modes, classifier, layer, args.batch_size, args.rounds)

        also = criterion2_factors(args.criterion2) or default_criterion2(list(gallery.faces.columns), generator.edit_factor)
        queries = sample_queries(gallery, generator.edit_factor, args.queries, seed=args.seed)
        index_dir = Path(args.index_dir) if args.index_dir else Path(args.out).resolve().parent / f".{Path(args.out).stem}-indexes"
        vectors = query_vectors(generator, gallery, queries, args.views, args.batch_size)
        results = {}
        for mode in modes:
            index, seconds = mode_index(generator, gallery, index_dir / mode, mode, args.views, classifier, info, args.batch_size)
            kept = index.faces[f"kept_{generator.edit_factor}"].to_numpy().astype(str)
            results[mode] = {
                "build_faces_per_second": rates[mode],
                "speedup_vs_full": rates[mode] / rates["full"] if "full" in rates else None,
                "whole_gallery_build_seconds": seconds,
                "kept_true_pose": 100 * float(np.mean(kept == truth)),
                "recall": recall_rows(index, vectors, gallery, queries, also),
            }
    except UserError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    record = {
        "benchmark": "gallery normalization modes",
        "data": {"name": faces.info.name, "path": str(args.data), "gallery": len(gallery),
                 "train_faces_for_classifier": info["faces"]},
        "model": {"path": str(args.model), "checkpoint_sha256": generator.checkpoint_hash, "layer": layer},
        "config": {k: v for k, v in vars(args).items()},
        "criterion2_factors": list(also),
        "pose_classifier_accuracy_on_gallery": 100 * classifier_accuracy,
        "speed_faces": len(speed_images),
        "load_average_before": load_before,
        "load_average_after": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
        "modes": results,
        "provenance": provenance(seed=args.seed),
    }
    write_json(args.out, record)
    print(markdown(record))
    return 0


def markdown(record: dict) -> str:
    """The result as a Markdown table: one row per mode."""
    lines = [f"{record['data']['name']}: {record['data']['gallery']:,} gallery faces, {record['config']['queries']:,} queries, "
             f"views {record['config']['views']}; pose classifier right on {record['pose_classifier_accuracy_on_gallery']:.1f} % of the gallery",
             "", "| normalize | build faces/s | × full | kept pose true | ours C1 R@1 | R@5 | R@20 | C2 R@1 | pose-aware C1 R@1 | R@5 | R@20 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, r in record["modes"].items():
        ours, aware = r["recall"]["ours"], r["recall"]["ours, pose-aware"]
        ratio = f"{r['speedup_vs_full']:.2f}" if r["speedup_vs_full"] else "—"
        lines.append(f"| {mode} | {r['build_faces_per_second']:.1f} | {ratio} | {r['kept_true_pose']:.1f} % | "
                     + " | ".join(f"{ours['criterion1'][k]:.1f}" for k in ("1", "5", "20"))
                     + f" | {ours['criterion2']['1']:.1f} | "
                     + " | ".join(f"{aware['criterion1'][k]:.1f}" for k in ("1", "5", "20")) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
