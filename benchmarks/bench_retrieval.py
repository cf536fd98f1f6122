"""Retrieval speed: gallery build images/s, query latency and throughput, and each FAISS factory's speed, memory and recall.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_retrieval.py --model M --data D --out runs/bench/retrieval.json

The gallery (the FaceSet's test split) is pose-normalized once (index.features, as `rbg index build`
does); every factory is then trained and filled from those cached features, so all factories index the
same vectors. Queries are the paper's protocol (retrieval.protocol.sample_queries, seeded) and recall is
scored with retrieval.protocol.score. "latency" is one query end to end (generate its features in the
target value + search, retrieval.search.search_by_generation), the median of N; "batch" is the same
for `batch` queries at once. Memory is the serialized index size, and the process's peak RSS while
that factory is trained, filled and searched by vector (Linux: VmHWM, reset before each factory) with
its growth over the RSS before (the baseline holds torch, the model and the query vectors). Ratios are to
Flat in the same run.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from facedata.atomic import write_json
from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.provenance import provenance
from index.faiss_factory import IndexConfig, fill_index
from index.faiss_index import GalleryIndex, IndexInfo
from index.features import FeatureChunks, compute_feature_chunks
from retrieval.search import search_by_generation
from retrieval.metrics import PAPER_KS
from retrieval.protocol import QuerySet, sample_queries, score

DEFAULT_FACTORIES = ("Flat", "PCA{pca},Flat", "IVF{nlist},PQ{m}x{nbits}", "HNSW32")


@dataclass(frozen=True)
class RetrievalBenchConfig:
    """What to measure, on which gallery."""

    factories: tuple[str, ...] = DEFAULT_FACTORIES  # {pca} {nlist} {m} {nbits} are sized to the gallery (factory_params)
    queries: int = 1000  # benchmark queries (the paper uses 10,000)
    latency_runs: int = 20  # single queries timed; the median is reported
    batch: int = 256  # queries per end-to-end batch
    build_batch: int = 256  # gallery images per feature chunk
    split: str = "test"
    layer: str | None = None  # None: the generator's default
    nprobe: int = 16
    ef_search: int = 64
    seed: int = 0
    device: str = "auto"


# -- timing and memory helpers, kept apart from the measured code ------------------------------------
def seconds_of(fn) -> tuple[float, object]:
    """Wall seconds of one call of fn, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_seconds(fn, runs: int) -> float:
    """Median wall seconds of `runs` calls fn(i), after one warm-up call."""
    fn(0)
    return statistics.median(seconds_of(lambda i=i: fn(i))[0] for i in range(runs))


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux clear_refs 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_bytes(field: str = "VmHWM") -> int:
    """This process's peak resident memory since the last reset_peak_rss ("VmHWM") or its current one ("VmRSS")."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # no /proc: the peak since start


def index_bytes(index: faiss.Index) -> int:
    """Size of the index as written to disk (index.faiss)."""
    with tempfile.NamedTemporaryFile(suffix=".faiss") as tmp:
        faiss.write_index(index, tmp.name)
        return Path(tmp.name).stat().st_size


def in_work_folder(work: Path | None, prefix: str, measure):
    """measure(folder) in a temporary folder under `work` (created if missing; None: the system's temp folder), removed after."""
    if work:
        work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=work) as folder:
        return measure(Path(folder))


def publish(record: dict, out: Path, print_table) -> None:
    """Print a benchmark's table and write its JSON record (atomically) to `out`."""
    print_table(record)
    write_json(out, record)
    print(f"written: {out}", file=sys.stderr)


# -- what is measured ---------------------------------------------------------------------------------
def factory_params(count: int, dimension: int) -> dict[str, int]:
    """Sizes for the factory templates on a gallery of `count` vectors of `dimension`:
    pca = min(256, count); nlist = the power of two nearest √count, at most count/39 (FAISS's
    k-means wants 39 points per list); m = the largest divisor of the dimension ≤ 64 sub-quantizers;
    nbits = 8 when count ≥ 256 training points, else 4."""
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(count))))
    while nlist > 1 and 39 * nlist > count:
        nlist //= 2
    m = max(d for d in range(1, min(64, dimension) + 1) if dimension % d == 0)
    return {"pca": min(256, count), "nlist": nlist, "m": m, "nbits": 8 if count >= 256 else 4}


@dataclass(frozen=True)
class Workload:
    """What every factory is measured on: the cached gallery features and the benchmark queries."""

    gallery: FaceSet  # the gallery view; index rows are its positions
    chunks: FeatureChunks  # its pose-normalized features, (count, d) on disk
    layer: str
    queries: QuerySet
    images: np.ndarray  # (q, H, W) uint8 query images
    vectors: np.ndarray  # (q, d) float32 their features in the target value


def search_all(gallery: GalleryIndex, vectors: np.ndarray, k: int, batch: int) -> np.ndarray:
    """Ranked gallery rows (q, k) of every query vector, searched `batch` at a time."""
    return np.concatenate([gallery.search(vectors[i : i + batch], k)[1] for i in range(0, len(vectors), batch)])


def recall_percent(ranked: np.ndarray, work: Workload, criterion: int) -> dict:
    """recall@1/5/20 in percent under a criterion, {"skipped": why} when the FaceSet cannot be scored so."""
    try:
        report = score(ranked, work.queries, work.gallery, criterion)[0]
    except UserError as exc:  # e.g. criterion 2 on a set without illumination or expression
        return {"skipped": str(exc)}
    return {str(k): round(v, 2) for k, v in report.percent().items()}


def bench_factory(factory: str, generator, work: Workload, config: RetrievalBenchConfig) -> dict:
    """Train, fill and search one factory; its speed, memory and recall."""
    reset_peak_rss()
    rss_before = rss_bytes("VmRSS")
    chunks, images, targets = work.chunks, work.images, list(work.queries.targets)
    index_config = IndexConfig(factory=factory, layer=work.layer, nprobe=config.nprobe, ef_search=config.ef_search,
                               seed=config.seed, batch_size=config.build_batch)
    build_s, (index, train_count) = seconds_of(
        lambda: fill_index(index_config, chunks.dimension, chunks.count, chunks.take, chunks.iter_vectors))
    info = IndexInfo(dimension=chunks.dimension, factory=factory, count=chunks.count, layer=work.layer,
                     checkpoint_hash=generator.checkpoint_hash, edit_factor=generator.edit_factor, train_count=train_count)
    gallery = GalleryIndex(index, work.gallery.faces.reset_index(drop=True), info, index_config)
    k = min(max(PAPER_KS), len(gallery))
    q, b = len(targets), min(config.batch, len(targets))
    search_s, ranked = seconds_of(lambda: search_all(gallery, work.vectors, k, config.batch))
    one_search_s = median_seconds(lambda i: gallery.search(work.vectors[i % q][None], k), config.latency_runs)
    peak = rss_bytes()  # the index's own cost: before the generator runs below allocate its buffers
    latency_s = median_seconds(lambda i: search_by_generation(generator, gallery, images[i % q][None], [targets[i % q]], k),
                               config.latency_runs)
    batch_s = median_seconds(lambda i: search_by_generation(generator, gallery, images[:b], targets[:b], k, b), 2)
    row = {
        "factory": factory, "train_count": train_count, "train_add_s": round(build_s, 3),
        "index_bytes": index_bytes(index), "peak_rss_bytes": peak, "rss_growth_bytes": peak - rss_before,
        "search_qps": round(q / search_s, 1), "search_ms": round(1e3 * one_search_s, 3),
        "latency_ms": round(1e3 * latency_s, 2), "batch_qps": round(b / batch_s, 1), "batch": b,
        "recall_c1": recall_percent(ranked, work, 1), "recall_c2": recall_percent(ranked, work, 2),
    }
    return row


def run(generator, faceset: FaceSet, config: RetrievalBenchConfig, folder: Path, progress: bool = True) -> dict:
    """Every measurement for one generator on one FaceSet (config.split of it is the gallery); the JSON record.

    `folder` holds the gallery's feature cache while the run lasts.
    """
    gallery = faceset if config.split == "all" else faceset.split(config.split)
    layer = config.layer or generator.default_feature_layer
    features_s, chunks = seconds_of(
        lambda: compute_feature_chunks(generator, gallery, folder / "features", layer, config.build_batch, progress))
    queries = sample_queries(gallery, generator.edit_factor, config.queries, config.seed)
    images = gallery.images[queries.positions]  # (q, H, W) uint8
    query_s, vectors = seconds_of(
        lambda: generator.features(images, list(queries.targets), layer=layer, batch_size=config.batch))
    work = Workload(gallery, chunks, layer, queries, images, np.asarray(vectors, np.float32))
    params = factory_params(chunks.count, chunks.dimension)
    rows = []
    for template in config.factories:
        factory = template.format(**params)
        if progress:
            print(f"factory {factory} …", file=sys.stderr)
        try:
            rows.append(bench_factory(factory, generator, work, config))
        except UserError as exc:
            rows.append({"factory": factory, "skipped": str(exc)})
        gc.collect()  # free this factory's index before the next one is measured
    flat = next((r for r in rows if r["factory"] == "Flat" and "skipped" not in r), None)
    for row in rows:
        if flat is not None and "skipped" not in row:
            row["vs_flat"] = {"search_qps": round(row["search_qps"] / flat["search_qps"], 3),
                              "index_bytes": round(row["index_bytes"] / flat["index_bytes"], 4),
                              "latency": round(row["latency_ms"] / flat["latency_ms"], 3)}
    return {
        "config": asdict(config),
        "model": {"path": str(getattr(generator, "path", None)), "sha256": generator.checkpoint_hash, "task": generator.task,
                  "device": str(getattr(generator, "device", "cpu"))},
        "gallery": {"name": gallery.info.name, "path": str(gallery.root), "split": config.split, "count": chunks.count,
                    "dimension": chunks.dimension, "layer": layer},
        "build": {"features_s": round(features_s, 2), "images_per_s": round(chunks.count / features_s, 2),
                  "generations_per_image": len(generator.vocabulary) + 1},
        "queries": {"count": len(queries), "features_s": round(query_s, 3), "features_qps": round(len(queries) / query_s, 1)},
        "factory_params": params,
        "factories": rows,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
                    "faiss_threads": faiss.omp_get_max_threads()},
        "provenance": provenance(seed=config.seed, faiss=faiss.__version__),
    }


def print_table(record: dict) -> None:
    g, b, q = record["gallery"], record["build"], record["queries"]
    print(f"gallery {g['name']} ({g['split']}): {g['count']} images × {g['dimension']}-d {g['layer']}; "
          f"build {b['images_per_s']:.1f} images/s ({b['generations_per_image']} generations each); "
          f"query features {q['features_qps']:.1f} q/s over {q['count']} queries")
    header = (f"{'factory':<22}{'train+add s':>12}{'index MB':>10}{'peak RSS MB':>12}{'+MB':>7}{'search q/s':>11}{'1 search ms':>12}"
              f"{'latency ms':>11}{'batch q/s':>10}{'R@1':>7}{'R@5':>7}{'R@20':>7}{'q/s ×Flat':>10}{'bytes ×Flat':>12}")
    print(header)
    for r in record["factories"]:
        if "skipped" in r:
            print(f"{r['factory']:<22}skipped: {r['skipped']}")
            continue
        recall = r["recall_c1"]
        ratio = r.get("vs_flat", {})
        print(f"{r['factory']:<22}{r['train_add_s']:>12.2f}{r['index_bytes'] / 1e6:>10.2f}"
              f"{r['peak_rss_bytes'] / 1e6:>12.0f}{r['rss_growth_bytes'] / 1e6:>7.0f}"
              f"{r['search_qps']:>11.1f}{r['search_ms']:>12.3f}{r['latency_ms']:>11.2f}{r['batch_qps']:>10.1f}"
              + "".join(f"{recall.get(str(k), float('nan')):>7.1f}" for k in PAPER_KS)
              + f"{ratio.get('search_qps', float('nan')):>10.2f}{ratio.get('index_bytes', float('nan')):>12.4f}")
    print("recall@K in % under criterion 1 (identity and target value); criterion 2 in the JSON")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint or run folder")
    parser.add_argument("--data", type=Path, required=True, help="FaceSet folder (its test split is the gallery)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/retrieval.json"))
    parser.add_argument("--factory", dest="factories", action="append", default=None,
                        help="a FAISS factory string (repeat); templates may use {pca} {nlist} {m} {nbits} "
                             f"[{' '.join(DEFAULT_FACTORIES)}]")
    parser.add_argument("--queries", type=int, default=RetrievalBenchConfig.queries)
    parser.add_argument("--latency-runs", type=int, default=RetrievalBenchConfig.latency_runs)
    parser.add_argument("--batch", type=int, default=RetrievalBenchConfig.batch)
    parser.add_argument("--split", choices=["test", "val", "train", "all"], default=RetrievalBenchConfig.split)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--device", default=RetrievalBenchConfig.device)
    parser.add_argument("--seed", type=int, default=RetrievalBenchConfig.seed)
    parser.add_argument("--work", type=Path, default=None, help="folder (created) that holds the run's temporary feature cache [the system's temp folder]")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = RetrievalBenchConfig(queries=args.queries, latency_runs=args.latency_runs, batch=args.batch, split=args.split,
                                  layer=args.layer, device=args.device, seed=args.seed)
    if args.factories:
        config = replace(config, factories=tuple(args.factories))
    from generator.inference import Generator

    try:
        generator, faceset = Generator.load(args.model, config.device), FaceSet.open(args.data)
        record = in_work_folder(args.work, "bench_retrieval-", lambda work: run(generator, faceset, config, work, progress=not args.quiet))
    except UserError as exc:
        sys.exit(f"Error: {exc}")
    publish(record, args.out, print_table)


if __name__ == "__main__":
    main()
