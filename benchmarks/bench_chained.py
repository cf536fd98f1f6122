"""Several attributes in one query: one model of both factors against two single-factor models chained.

The queries are those of `rbg bench` (sample_queries over the combined factor, seeded), each asking for
a (pose, accessory) that differs from the face's own in one factor or both. Two ways answer them:

  ours     the pose+accessory model generates the query in its target (pose, accessory) in one pass;
  chained  the pose model turns the face to the target pose, then the accessory model puts the
           target accessory on that output (two generations, the first rounded to an 8-bit image);
           "chained, known skips" leaves out the pose edit where the target pose is the query's own,
           known, pose (the accessory model always runs: its refiner gives the features).

Both galleries are normalized the same way: each test face's (pose, accessory) is predicted by one
classifier per factor fitted on the train people, and the face is generated in that value, by the
multi model for ours and by the chain for chained. The features are each pipeline's last refiner's
middle layer (stage2.mid), L2-normalized, searched exactly. Criterion 1 = identity and both target values.

    python benchmarks/bench_chained.py --data runs/multi --model runs/train-pose-accessory \
        --pose-model runs/train-pose --accessory-model runs/train-accessory --out runs/chained
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facedata.atomic import atomic_file, write_json
from facedata.combined import combined_name, edited_factors, split_value, with_factor
from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.provenance import provenance
from generator.inference import Generator
from index.features import l2_normalize
from index.pose_classifier import fit_on_train_split
from retrieval.metrics import evaluate_ranking, match_keys
from retrieval.protocol import sample_queries


@dataclass(frozen=True)
class ChainedConfig:
    """What the comparison runs on: data, the three models, the query count, K and the seed."""

    data: str
    model: str
    pose_model: str
    accessory_model: str
    queries: int = 1000
    ks: tuple[int, ...] = (1, 5, 10)
    seed: int = 0
    split: str = "test"
    batch_size: int = 256


def chain_generate(first: Generator, second: Generator, images: np.ndarray, targets: np.ndarray,
                   own: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
    """Stage-2 features of the chain: `first` to each target's first part, then `second` to its second part.

    `images` (n, H, W) uint8; `targets` (n,) combined values; `own` (n,) combined values known for the
    sources: a first edit whose target equals the own value is then skipped (the second model always
    runs: its refiner gives the features). Returns (n, d) float32.
    """
    parts = np.asarray([split_value(t, 2) for t in targets], dtype=object)
    assert parts.shape == (len(images), 2), parts.shape
    edited = np.ones(len(images), bool) if own is None else parts[:, 0] != np.asarray(
        [split_value(v, 2)[0] for v in own], dtype=object)
    middle = np.array(images, copy=True)
    if edited.any():
        _, turned = first.generate(images[edited], list(parts[edited, 0]), batch_size=batch_size)
        middle[edited] = np.clip(np.rint(turned), 0, 255).astype(np.uint8)
    return second.features(middle, list(parts[:, 1]), batch_size=batch_size)


def exact_ranking(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """The k nearest gallery rows of each query by L2 distance of L2-normalized vectors: (q, k) int64."""
    q, g = l2_normalize(np.asarray(queries, np.float32)), l2_normalize(np.asarray(gallery, np.float32))
    distances = -2.0 * q @ g.T  # + constants: the same order as squared L2 of unit vectors
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64)


def run(config: ChainedConfig) -> dict:
    """Rankings of ours and the chain on the same queries and their recall@K (criterion 1), with timings."""
    multi = Generator.load(config.model)
    pose, accessory = Generator.load(config.pose_model), Generator.load(config.accessory_model)
    factors = edited_factors(multi.edit_factor)
    if factors != (pose.edit_factor, accessory.edit_factor):
        raise UserError(f"{config.model} edits {multi.edit_factor}; the chain edits {pose.edit_factor} then "
                        f"{accessory.edit_factor}: give models of {' and '.join(factors)}, in that order")
    edit = combined_name(factors)
    faces = with_factor(FaceSet.open(config.data), edit)
    gallery = faces.split(config.split)
    queries = sample_queries(gallery, edit, config.queries, seed=config.seed)
    classifier, _ = fit_on_train_split(faces, edit)
    kept = classifier.predict(gallery.images)
    truth = gallery.faces[edit].to_numpy().astype(str)
    images, q_images = gallery.images, gallery.images[queries.positions]
    own = truth[queries.positions]
    timings, rankings = {}, {}
    k = min(max(config.ks), len(gallery))

    start = time.perf_counter()
    g_ours = multi.features(images, list(kept), batch_size=config.batch_size)
    q_ours = multi.features(q_images, list(queries.targets), batch_size=config.batch_size)
    timings["ours"] = time.perf_counter() - start
    rankings["ours (one pose+accessory model)"] = exact_ranking(q_ours, g_ours, k)

    start = time.perf_counter()
    g_chain = chain_generate(pose, accessory, images, kept, batch_size=config.batch_size)
    q_chain = chain_generate(pose, accessory, q_images, queries.targets, batch_size=config.batch_size)
    timings["chained"] = time.perf_counter() - start
    rankings["chained (pose model, then accessory model)"] = exact_ranking(q_chain, g_chain, k)
    q_skip = chain_generate(pose, accessory, q_images, queries.targets, own=own, batch_size=config.batch_size)
    rankings["chained, known skips (no pose edit to the query's own pose)"] = exact_ranking(q_skip, g_chain, k)

    q_keys, g_keys = match_keys([gallery.faces["identity"].to_numpy()[queries.positions], queries.targets],
                                [gallery.faces["identity"].to_numpy(), truth])
    mine = np.asarray([split_value(v, 2) for v in own], dtype=object)
    wanted = np.asarray([split_value(v, 2) for v in queries.targets], dtype=object)
    both = (mine[:, 0] != wanted[:, 0]) & (mine[:, 1] != wanted[:, 1])
    rows = []
    for name, ranked in rankings.items():
        every = evaluate_ranking(ranked, q_keys, g_keys, config.ks)
        both_changed = evaluate_ranking(ranked[both], q_keys[both], g_keys, config.ks)
        rows.append({"method": name, "recall": every.recall, "recall_both_changed": both_changed.recall})
    return {
        "config": {**asdict(config), "ks": list(config.ks)},
        "gallery": len(gallery), "gallery_identities": gallery.num_identities, "queries": len(queries),
        "queries_both_changed": int(both.sum()),
        "kept_accuracy": float(np.mean(kept == truth)),
        "rows": rows, "seconds": {k: round(v, 2) for k, v in timings.items()},
        "ratio_r1": (rows[0]["recall"][config.ks[0]] / rows[1]["recall"][config.ks[0]]
                     if rows[1]["recall"][config.ks[0]] else None),
        "provenance": provenance(seed=config.seed),
    }


def table(record: dict) -> str:
    """The rows as a markdown table of recall@K in %, every query and those changing both factors."""
    ks = record["config"]["ks"]
    head = "| method | " + " | ".join(f"R@{k}" for k in ks) + " | " + " | ".join(f"R@{k}, both changed" for k in ks) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(ks))]
    for row in record["rows"]:
        recall, both = ({int(k): v for k, v in row[name].items()} for name in ("recall", "recall_both_changed"))  # JSON keys are text
        cells = [f"{100 * recall[k]:.1f}" for k in ks] + [f"{100 * both[k]:.1f}" for k in ks]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(record: dict) -> str:
    """The table with what it was measured on, for docs pages (benchmarks/results_tables.py)."""
    ratio = f"; ours / chained at R@{record['config']['ks'][0]}: {record['ratio_r1']:.2f}×" if record["ratio_r1"] else ""
    return (f"{record['queries']:,} queries ({record['queries_both_changed']:,} change both factors), gallery of "
            f"{record['gallery']:,} faces of {record['gallery_identities']} unseen people, criterion 1 (identity, pose "
            f"and accessory), recall in %{ratio}\n\n" + table(record).rstrip("\n"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, help="the pose+accessory checkpoint")
    parser.add_argument("--pose-model", required=True)
    parser.add_argument("--accessory-model", required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=None, help="folder for chained.json and chained.md")
    args = parser.parse_args(argv)
    config = ChainedConfig(args.data, args.model, args.pose_model, args.accessory_model, args.queries,
                           seed=args.seed, split=args.split)
    record = run(config)
    text = table(record)
    print(f"{record['queries']} queries ({record['queries_both_changed']} change both factors), gallery of "
          f"{record['gallery']} faces of {record['gallery_identities']} people; kept (pose, accessory) right for "
          f"{100 * record['kept_accuracy']:.1f} %")
    print(text, end="")
    print(f"ours / chained at R@{config.ks[0]}: {record['ratio_r1']:.2f}×" if record["ratio_r1"] else "")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "chained.json", record)
        with atomic_file(args.out / "chained.md") as tmp:
            tmp.write_text(markdown(record))


if __name__ == "__main__":
    main()
