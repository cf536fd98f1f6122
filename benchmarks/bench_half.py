"""Weights stored as float16: does a model's Table 1 or recall move? (issue: shipped weights within 20 MB)

    .venv/bin/python benchmarks/bench_half.py --model synthpie-pose --data runs/paper --out docs/results/half_pose.json

The model is copied with its weights in float16 (generator.checkpoint.save_checkpoint(dtype=float16),
as generator.checkpoint.store_half stores the shipped models) and loaded back to float32; both copies
run Table 1 (`rbg eval generation`: the same seeded test pairs) and the paper's retrieval protocol
(`rbg bench --paper`: the same seeded queries over the same test gallery). Reported: each figure for
both, and the largest difference, in MSE units and recall points.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from bench_retrieval import publish

from facedata.faceset import FaceSet
from facedata.provenance import provenance
from generator.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from generator.evaluate import evaluate_generation
from generator.inference import Generator
from retrieval.benchmark import BenchConfig, run_benchmark


def measure(generator, faces: FaceSet, work: Path, args) -> dict:
    """Table 1's MSE per stage and the bench's recall rows of one model."""
    table = evaluate_generation(generator, faces, work / "table1", args.pairs, args.seed, force=True)
    config = BenchConfig(queries=args.queries, seed=args.seed, generation_pairs=0, pose_classifier="logreg",
                         gallery_identities=args.gallery_identities or None)
    record = run_benchmark(generator, faces, work / "bench", config, cache=None, force=True)
    recall = {f"{r['method']} / {r['features']} / C{c}": {k: round(100 * v, 2) for k, v in r[f"criterion{c}"]["recall"].items()}
              for r in record["results"] for c in (1, 2)}
    return {"stage1_mse": table["stage1_mse"], "stage2_mse": table["stage2_mse"], "recall": recall,
            "checkpoint_sha256": generator.checkpoint_hash}


def run(args) -> dict:
    faces = FaceSet.open(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model, info, folder = load_checkpoint(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-half-") as scratch:
        work = Path(scratch)
        save_checkpoint(work / "float32", model, info)
        save_checkpoint(work / "float16", model, info, dtype=torch.float16)
        sizes = {name: (work / name / "model.safetensors").stat().st_size for name in ("float32", "float16")}
        results = {}
        for name in ("float32", "float16"):
            print(f"{name} …", file=sys.stderr)
            results[name] = measure(Generator.load(work / name, "cpu"), faces, work / f"run-{name}", args)
    a, b = results["float32"], results["float16"]
    gaps = {"stage1_mse": abs(a["stage1_mse"] - b["stage1_mse"]), "stage2_mse": abs(a["stage2_mse"] - b["stage2_mse"]),
            "recall_points": max(abs(a["recall"][row][k] - b["recall"][row][k]) for row in a["recall"] for k in a["recall"][row])}
    return {"model": str(folder), "model_weights_sha256": sha256_file(folder / "model.safetensors"),
            "data": args.data, "pairs": args.pairs, "queries": args.queries,
            "gallery_identities": args.gallery_identities, "bytes": sizes, "results": results,
            "largest_difference": {k: round(v, 4) for k, v in gaps.items()},
            "within_0_1": within(gaps), "provenance": provenance(seed=args.seed)}


def within(gaps: dict, limit: float = 0.1) -> bool:
    """Every difference at most `limit` (recall points are multiples of 100/queries: compared at 1e-9)."""
    return all(v <= limit + 1e-9 for v in gaps.values())


def markdown(record: dict) -> str:
    """Both precisions side by side (the results layout "half")."""
    a, b = record["results"]["float32"], record["results"]["float16"]
    mib = {k: v / 2**20 for k, v in record["bytes"].items()}
    folder = Path(record["model"])
    name = folder.parent.name if folder.name == "checkpoint" else folder.name  # a training run's folder, not its checkpoint/
    lines = [f"`{name}`: weights {mib['float32']:.1f} MiB as float32, {mib['float16']:.1f} MiB as "
             f"float16; Table 1 on {record['pairs']:,} test pairs, recall on {record['queries']:,} queries (`rbg bench --paper`)", "",
             "| figure | float32 | float16 | difference |", "|---|---:|---:|---:|"]
    for stage in ("stage1_mse", "stage2_mse"):
        lines.append(f"| Table 1, {stage[:6]} MSE | {a[stage]:.3f} | {b[stage]:.3f} | {abs(a[stage] - b[stage]):.3f} |")
    for row in a["recall"]:
        for k in ("1", "5", "20"):
            if k in a["recall"][row]:
                x, y = a["recall"][row][k], b["recall"][row][k]
                lines.append(f"| {row} R@{k} | {x:.1f} | {y:.1f} | {abs(x - y):.2f} |")
    lines.append("")
    lines.append(f"Largest difference: {record['largest_difference']['stage2_mse']:.3f} (stage 2 MSE), "
                 f"{record['largest_difference']['recall_points']:.2f} recall points: "
                 f"{'within' if record['within_0_1'] else 'NOT within'} 0.1.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--gallery-identities", type=int, default=15, help="first N test people form the gallery (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    publish(run(args), args.out, lambda record: print(markdown(record)))


if __name__ == "__main__":
    main()
