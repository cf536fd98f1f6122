"""Search among 10^6 gallery faces: each PCA factory's build time, memory, latency and recall next to exact search.

    nice .venv/bin/python benchmarks/bench_scale.py --index runs/paper-index-flat --out docs/results/scale_1m.json

The ground truth is a real gallery read back from a Flat index (`rbg index build --factory Flat`):
its vectors (index.reconstruct_n), its faces (faces.parquet) and its FaceSet and model (index.json).
It is embedded at seeded random rows among synthetic distractors (distractors.py: a mix of two real
faces of different identities in one kept value, plus noise), up to --total rows, made block by block
and never all in memory. Distractors are wrong answers. Queries follow retrieval.protocol.sample_queries
and are scored under criterion 1 (right identity in the target value).

One PCA (index.faiss_factory.train_index: our SVD) is fitted on the first rows of the stream and every
vector is projected once, to a file; each factory is then the same PCA in front of its own index,
trained and filled from that file in its own process, so its peak RSS is its own. Exact search is done
twice: over all rows in the PCA space (every query) and at full width while streaming (the first
--exact-queries queries). nprobe / efSearch are swept; the smallest setting whose R@1 is within
--recall-slack points of exact PCA search is reported (the most accurate one when none is).
Single queries are timed on one thread (scale_factory.one_thread), batches on all.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from bench_retrieval import in_work_folder, publish, seconds_of
from distractors import StreamLayout, SyntheticGallery
from exhaustive_stream import block_top, empty_top, iter_rows, merge_top
from scale_factory import (
    DEFAULT_FACTORIES,
    ScaleBenchConfig,
    Workpack,
    check_factories,
    measure_factory,
    measure_isolated,
    measurement_jobs,
    recall_percent,
)
from tqdm import tqdm

from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.provenance import provenance
from index.faiss_factory import IndexConfig, new_index, train_index, training_sample_size
from index.faiss_index import GalleryIndex, IndexInfo
from index.features import l2_normalize
from retrieval.metrics import PAPER_KS, criterion_keys, evaluate_ranking
from retrieval.protocol import sample_queries

TARGETS = {"index_bytes_max": 4_000_000_000, "latency_ms_max": 15.0, "recall_gap_max": 1.0}


# -- the ground truth ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroundTruth:
    """The real gallery: its vectors (n, d), its FaceSet view (row i = vector i), what built it."""

    vectors: np.ndarray  # (n, d) float32 unit rows
    gallery: FaceSet
    kept: np.ndarray  # (n,) str kept value of each face
    info: IndexInfo
    model: Path | None
    path: Path


def load_ground_truth(path: Path) -> GroundTruth:
    """The vectors, faces, gallery and model of a Flat index folder; a UserError for anything else."""
    from retrieval.query import open_gallery

    index = GalleryIndex.load(path)
    info = index.info
    if info.factory != "Flat" or index.views != "kept":
        raise UserError(f"{path}: a {info.factory} index of {index.views} views; the benchmark reads back the exact "
                        "vectors of a Flat index of kept views (rbg index build --factory Flat)")
    vectors = l2_normalize(index.index.reconstruct_n(0, info.count))  # unit rows already; normalized again for safety
    gallery = open_gallery(index).take(index.faces["image_row"].to_numpy())
    kept = index.faces[f"kept_{info.edit_factor}"].to_numpy().astype(str)
    return GroundTruth(vectors, gallery, kept, info, index.locate(info.provenance.get("model")), Path(path))


# -- the whole run ----------------------------------------------------------------------------------------
def distractor_closeness(synthetic: SyntheticGallery, sample: int = 1024) -> dict:
    """How near distractors come to real faces, next to how near real faces of other identities come to each other."""
    real, identities = synthetic.real, synthetic.identities
    block = synthetic.block(0)
    distractors = block[synthetic.layout.real_at[: len(block)] < 0][:sample]
    near_real = faiss.knn(distractors, real, 1)[0][:, 0]
    probe = np.random.default_rng([synthetic.seed, 2]).choice(len(real), size=min(sample, len(real)), replace=False)
    d, r = faiss.knn(real[probe], real, min(len(real), 200))
    other = np.where(identities[np.maximum(r, 0)] != identities[probe][:, None], d, np.inf).min(axis=1)
    return {"sample": int(len(distractors)),
            "distractor_to_nearest_real_median": round(float(np.median(near_real)), 4),
            "distractor_to_nearest_real_min": round(float(near_real.min()), 4),
            "real_to_nearest_other_identity_median": round(float(np.median(other[np.isfinite(other)])), 4),
            "metric": "squared L2 between unit vectors"}


def fit_shared_pca(synthetic: SyntheticGallery, width: int, count: int, path: Path) -> tuple[faiss.VectorTransform, float, float]:
    """The PCA every factory shares, fitted (our SVD, train_index) on the first `count` stream rows and
    written to `path`; it, and the seconds to sample and to fit.

    The SVD of a wide sample is randomized (torch.svd_lowrank), its start drawn from the run's seed
    (index.faiss_factory.fit_pca), so the PCA does not hang on whatever drew from torch's generator
    before (two code versions gave an exact PCA-space R@1 of 52.0 and 52.1 at 10^6).
    """
    index = new_index(f"PCA{width},Flat", synthetic.dimension)
    sample_s, sample = seconds_of(lambda: synthetic.head(count))
    fit_s, _ = seconds_of(lambda: train_index(index, sample, synthetic.seed))
    faiss.write_VectorTransform(index.chain.at(0), str(path))
    return faiss.read_VectorTransform(str(path)), round(sample_s, 2), round(fit_s, 2)


def prepare(truth: GroundTruth, generator, config: ScaleBenchConfig, folder: Path, progress: bool = True) -> tuple[Workpack, dict]:
    """Queries, the PCA, the projected gallery and both exact searches, written to `folder`; and their figures."""
    d = truth.vectors.shape[1]
    width = check_factories(config, d)
    edit, layer = truth.info.edit_factor, truth.info.layer
    queries = sample_queries(truth.gallery, edit, config.queries, config.seed)
    images = truth.gallery.images[queries.positions]
    features_s, vectors = seconds_of(lambda: l2_normalize(generator.features(images, list(queries.targets), layer=layer,
                                                                              batch_size=config.batch)))
    q_keys, g_keys = criterion_keys(queries.faces(truth.gallery), queries.targets, truth.gallery.faces.reset_index(drop=True), edit, 1)
    layout = StreamLayout.place(len(truth.vectors), config.total, config.seed)
    synthetic = SyntheticGallery(truth.vectors, truth.gallery.faces["identity"].to_numpy().astype(str),
                                 truth.kept, layout, config.seed, config.distractors)
    fig = {}

    pca_config = IndexConfig(train_size=config.pca_train, train_memory=config.pca_train_memory)
    train_count = training_sample_size(pca_config, d, config.total)
    pca, fig["pca_sample_s"], fig["pca_fit_s"] = fit_shared_pca(synthetic, width, train_count, folder / "pca.faiss")

    subset = vectors[: config.exact_queries]
    full_top = empty_top(len(subset), config.k)
    timing = {"generate_s": 0.0, "project_s": 0.0, "exact_full_s": 0.0}
    with open(folder / "projected.f32", "wb") as out:
        blocks = synthetic.iter_blocks()
        for _ in tqdm(range(synthetic.blocks), desc="distractors → PCA", unit="block", disable=not progress):
            seconds, (start, block) = seconds_of(lambda: next(blocks))
            timing["generate_s"] += seconds
            seconds, projected = seconds_of(lambda: pca.apply(block))
            timing["project_s"] += seconds
            projected.astype(np.float32).tofile(out)
            if len(subset):
                seconds, full_top = seconds_of(lambda: merge_top(*full_top, *block_top(subset, block, start, config.k), config.k))
                timing["exact_full_s"] += seconds
    fig.update({k: round(v, 2) for k, v in timing.items()})

    q_pca = pca.apply(vectors)
    pca_top = empty_top(len(vectors), config.k)
    start, exact_s = 0, 0.0
    for block in iter_rows(folder / "projected.f32", width, config.read_block):
        seconds, pca_top = seconds_of(lambda: merge_top(*pca_top, *block_top(q_pca, block, start, config.k), config.k))
        exact_s, start = exact_s + seconds, start + len(block)
    fig["exact_pca_s"] = round(exact_s, 2)
    real_top = faiss.knn(vectors, synthetic.real, min(config.k, len(synthetic.real)))[1]
    layout_recall = lambda rows, keys: recall_percent(rows, layout, keys, g_keys)  # noqa: E731
    real_only = evaluate_ranking(real_top, q_keys, g_keys, PAPER_KS).percent()
    exact = {
        "pca": {"queries": len(vectors), "rows": config.total, "width": width, "seconds": fig["exact_pca_s"],
                "recall_c1": layout_recall(pca_top[1], q_keys),
                "recall_c1_subset": layout_recall(pca_top[1][: len(subset)], q_keys[: len(subset)]),
                "top1_distractor": round(100.0 * float(np.mean(layout.real_rows(pca_top[1][:, :1]) < 0)), 2)},
        "full": {"queries": len(subset), "rows": config.total, "width": d, "seconds": fig["exact_full_s"],
                 "recall_c1": layout_recall(full_top[1], q_keys[: len(subset)]),
                 "top1_distractor": round(100.0 * float(np.mean(layout.real_rows(full_top[1][:, :1]) < 0)), 2)},
        "real_only": {"queries": len(vectors), "rows": len(synthetic.real), "width": d,
                      "recall_c1": {str(k): round(v, 2) for k, v in real_only.items()}},
    }
    for name, array in {"real_at": layout.real_at, "q_keys": q_keys, "g_keys": g_keys, "query_vectors": vectors,
                        "query_images": images, "query_targets": np.asarray(queries.targets).astype(str),
                        "exact_pca_rows": pca_top[1], "exact_full_rows": full_top[1]}.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)
    pack = Workpack(folder, config.total, width, truth.model, truth.info.checkpoint_hash, edit, tuple(truth.info.vocabulary),
                    layer, exact["pca"]["recall_c1"]["1"])
    figures = {"stages": {"query_features_s": round(features_s, 2), **fig}, "exact": exact,
               "distractors": {"count": layout.distractor_count(), **asdict(config.distractors), **distractor_closeness(synthetic)},
               "pca_train_count": train_count}
    return pack, figures


def targets_met(row: dict, exact: dict, slack: float) -> dict:
    """Each target against what the factory measured: index ≤ 4 GB, one query ≤ 15 ms, R@1 within 1 point of exact."""
    return {
        "index_bytes": row["index_bytes"] <= TARGETS["index_bytes_max"] and row["loaded_rss_bytes"] <= TARGETS["index_bytes_max"],
        "latency_ms": row["latency_ms"] <= TARGETS["latency_ms_max"],
        "recall_vs_exact_pca": exact["pca"]["recall_c1"]["1"] - row["recall_c1"]["1"] <= slack,
        "recall_vs_exact_full": (exact["full"]["recall_c1"]["1"] - row["recall_c1_subset"]["1"] <= slack) if exact["full"]["queries"] else None,
    }


def run(truth: GroundTruth, generator, config: ScaleBenchConfig, folder: Path, progress: bool = True) -> dict:
    """Every measurement for one ground truth at config.total rows; the JSON record (no vectors)."""
    load_start = os.getloadavg()
    pack, figures = prepare(truth, generator, config, folder, progress)
    shared_s = figures["stages"]["pca_fit_s"] + figures["stages"]["project_s"]
    rows = []
    for factory, depth in measurement_jobs(config, pack.width):
        if progress:
            print(f"factory {factory}{'' if depth is None else f' (efConstruction {depth})'} …", file=sys.stderr)
        row = (measure_isolated(factory, pack, config, depth) if config.isolate
               else measure_factory(factory, pack, config, generator, progress, depth))
        if "own_train_add_s" in row:
            row["train_add_s"] = round(row["own_train_add_s"] + shared_s, 2)
            row["targets_met"] = targets_met(row, figures["exact"], config.recall_slack)
        rows.append(row)
        gc.collect()
    return {
        "config": asdict(config),
        "ground_truth": {"index": str(truth.path), "gallery": truth.info.gallery.get("name"), "count": len(truth.vectors),
                         "dimension": int(truth.vectors.shape[1]), "layer": truth.info.layer,
                         "model_sha256": truth.info.checkpoint_hash},
        "gallery": {"rows": config.total, "real": len(truth.vectors), "synthetic_distractors": pack.total - len(truth.vectors)},
        **figures,
        "shared_build_s": round(shared_s, 2),
        "targets": TARGETS,
        "factories": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "provenance": provenance(seed=config.seed, faiss=faiss.__version__),
    }


def row_label(row: dict) -> str:
    """A factory, with its HNSW build depth when it has one."""
    return row["factory"] + ("" if row.get("ef_construction") is None else f" (efConstruction {row['ef_construction']})")


def markdown(record: dict) -> str:
    """The result as Markdown: a line on the gallery, one table row per search, each sweep and each target met or missed."""
    g, e = record["gallery"], record["exact"]
    subset = e["full"]["queries"]
    lines = [f"{g['real']:,} real faces among {g['synthetic_distractors']:,} synthetic distractors ({g['rows']:,} rows), "
             f"{record['ground_truth']['dimension']:,}-d {record['ground_truth']['layer']} features; {e['pca']['queries']:,} queries, "
             f"recall@K in % under criterion 1; shared PCA fit + projection {record['shared_build_s']:.0f} s, in every train+add",
             "",
             "| search | setting | train+add s | index MB | loaded RSS MB | peak RSS MB | 1 search ms | one query e2e ms "
             f"| e2e ms, 2 threads | search q/s | e2e batch q/s | R@1 | R@5 | R@20 | R@1, first {subset} q | top-1 = exact % | reload |",
             "|---" * 17 + "|"]
    exact_subset = {"pca": e["pca"]["recall_c1_subset"]["1"], "full": e["full"]["recall_c1"]["1"]}
    for name, key in (("exact, PCA space", "pca"), ("exact, full width", "full"), ("exact, real faces only", "real_only")):
        r, x = e[key]["recall_c1"], e[key]
        cut = f"{exact_subset[key]:.1f}" if key in exact_subset else ""
        lines.append(f"| {name} ({x['queries']:,} q × {x['rows']:,} × {x['width']:,}-d) |" + " |" * 10
                     + f" {r['1']:.1f} | {r['5']:.1f} | {r['20']:.1f} | {cut} | | |")
    for r in record["factories"]:
        if "own_train_add_s" not in r:
            lines.append(f"| {r['factory']} | {r.get('skipped') or r.get('failed')} |" + " |" * 15)
            continue
        setting = f"{r['setting_name']} {r['setting']}" if r["setting_name"] else ""
        if r["setting_name"] == "efSearch":
            setting += f", efConstruction {r.get('ef_construction') or 40}"
        rec = r["recall_c1"]
        lines.append(f"| {r['factory']} | {setting} | {r['train_add_s']:.0f} ({r['own_train_add_s']:.0f} own) | {r['index_bytes'] / 1e6:,.0f} "
                     f"| {r['loaded_rss_bytes'] / 1e6:,.0f} | {r['peak_rss_bytes'] / 1e6:,.0f} | {r['search_ms']:.2f} | {r['latency_ms']:.2f} "
                     f"| {r['latency_ms_all_threads']:.1f} | {r['search_qps']:,.0f} | {r['batch_qps']:,.0f} "
                     f"| {rec['1']:.1f} | {rec['5']:.1f} | {rec['20']:.1f} | {r['recall_c1_subset']['1']:.1f} "
                     f"| {r['top1_as_exact_pca']:.1f} | {'same' if r['reload_same_results'] else 'DIFFERS'} |")
    lines += ["", "Single-query times on one thread (FAISS and torch), throughput on both; top-1 = exact: the share of queries "
              "whose first result is exact PCA search's; reload: results after a save and plain read_index.", ""]
    for r in record["factories"]:
        if r.get("sweep"):
            steps = "; ".join(f"{s['setting']}: R@1 {s['recall_c1']['1']:.1f}, {s['search_ms']:.2f} ms" for s in r["sweep"])
            lines.append(f"- {row_label(r)}, {r['setting_name']}: {steps}")
    for r in record["factories"]:
        if "targets_met" in r:
            met = ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in r["targets_met"].items() if v is not None)
            lines.append(f"- {row_label(r)} targets (index ≤ 4 GB, one query ≤ 15 ms, R@1 within 1 point of exact): {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("runs/paper-index-flat"), help="Flat index folder: the real ground truth")
    parser.add_argument("--out", type=Path, default=Path("docs/results/scale_1m.json"))
    parser.add_argument("--total", type=int, default=ScaleBenchConfig.total, help="gallery rows, real faces included")
    parser.add_argument("--queries", type=int, default=ScaleBenchConfig.queries)
    parser.add_argument("--exact-queries", type=int, default=ScaleBenchConfig.exact_queries,
                        help="queries also searched exhaustively at full width")
    parser.add_argument("--factories", default=";".join(DEFAULT_FACTORIES), help="';'-separated factory strings, all PCA<n>,…")
    parser.add_argument("--latency-runs", type=int, default=ScaleBenchConfig.latency_runs)
    parser.add_argument("--ef-construction", default=",".join(map(str, ScaleBenchConfig.ef_construction)),
                        help="HNSW build depths, comma-separated: each HNSW factory is measured at each (FAISS's default 40)")
    parser.add_argument("--recall-slack", type=float, default=ScaleBenchConfig.recall_slack,
                        help="R@1 points below exact PCA search that the chosen nprobe / efSearch may give")
    parser.add_argument("--seed", type=int, default=ScaleBenchConfig.seed)
    parser.add_argument("--device", default=ScaleBenchConfig.device)
    parser.add_argument("--in-process", action="store_true", help="measure every factory in this process (faster; peak RSS shared)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the run's temporary files [the system's temp folder]")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        ef_construction = tuple(int(v) for v in args.ef_construction.split(","))
    except ValueError:
        sys.exit(f"Error: --ef-construction {args.ef_construction!r}: comma-separated whole numbers, e.g. 40,200")
    config = ScaleBenchConfig(total=args.total, queries=args.queries, exact_queries=args.exact_queries,
                              factories=tuple(f.strip() for f in args.factories.split(";") if f.strip()),
                              latency_runs=args.latency_runs, recall_slack=args.recall_slack, ef_construction=ef_construction, seed=args.seed, device=args.device, isolate=not args.in_process)
    try:
        for name, value in (("--total", config.total), ("--queries", config.queries), ("--latency-runs", config.latency_runs)):
            if value < 1:
                raise UserError(f"{name} must be ≥ 1, got {value}")
        if not 0 <= config.exact_queries <= config.queries:
            raise UserError(f"--exact-queries must be in [0, --queries={config.queries}], got {config.exact_queries}")
        truth = load_ground_truth(args.index)
        check_factories(config, truth.info.dimension)
        if truth.model is None:
            raise UserError(f"{args.index}: index.json records no model")
        from generator.inference import Generator

        generator = Generator.load(truth.model, config.device)
        record = in_work_folder(args.work, "bench_scale-", lambda work: run(truth, generator, config, work, progress=not args.quiet))
    except UserError as exc:
        sys.exit(f"Error: {exc}")
    publish(record, args.out, lambda r: print(markdown(r)))


if __name__ == "__main__":
    main()
