"""One PCA factory over the large gallery: its build, saved size, reload, memory, latency and recall.

A factory is the run's shared PCA in front of its own index, trained and filled from the projected
gallery file; measure_isolated runs it in a fresh process so that its peak RSS is its own.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import re
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch
from bench_retrieval import median_seconds, reset_peak_rss, rss_bytes, search_all, seconds_of
from distractors import DistractorConfig, StreamLayout
from exhaustive_stream import iter_rows, read_rows
from tqdm import tqdm

from facedata.atomic import write_json
from facedata.errors import UserError
from index.faiss_factory import IndexConfig, fill_index, new_index, plan_training, set_search_parameters
from index.faiss_index import GalleryIndex, IndexInfo
from retrieval.search import search_by_generation
from retrieval.metrics import PAPER_KS, evaluate_ranking

DEFAULT_FACTORIES = ("PCA256,Flat", "PCA256,IVF4096,PQ64", "PCA256,HNSW32")


@dataclass(frozen=True)
class ScaleBenchConfig:
    """What to measure, at which size."""

    total: int = 1_000_000  # gallery rows: the real faces plus distractors
    queries: int = 1000
    exact_queries: int = 300  # the first queries also searched exhaustively at full width
    factories: tuple[str, ...] = DEFAULT_FACTORIES  # all start with the same PCA<n>
    k: int = max(PAPER_KS)
    pca_train: int = 20_000  # PCA sample rows, capped by pca_train_memory
    pca_train_memory: int = 1 << 30
    quantizer_train: int = 160_000  # IVF / PQ training rows (IVF4096 needs 39 × 4096)
    nprobe: tuple[int, ...] = (16, 32, 64, 128, 256)
    ef_search: tuple[int, ...] = (32, 64, 128, 256, 512)
    ef_construction: tuple[int, ...] = (40,)  # HNSW build depths, each measured (FAISS's default 40)
    recall_slack: float = 1.0  # R@1 points below exact PCA search a setting may give
    latency_runs: int = 50
    batch: int = 256
    read_block: int = 65_536  # projected rows per read
    isolate: bool = True  # each factory in its own process (its own peak RSS)
    distractors: DistractorConfig = field(default_factory=DistractorConfig)
    seed: int = 0
    device: str = "cpu"


# -- the parts of a factory string ---------------------------------------------------------------------
def split_pca(factory: str) -> tuple[int, str]:
    """"PCA256,HNSW32" → (256, "HNSW32"); a UserError for a factory without a leading PCA."""
    match = re.fullmatch(r"PCA(\d+),(.+)", factory.strip())
    if not match:
        raise UserError(f"factory '{factory}': must start with PCA<n>, (e.g. 'PCA256,HNSW32'): "
                        "the full-width vectors of a large gallery do not fit in memory")
    return int(match.group(1)), match.group(2)


def check_factories(config: ScaleBenchConfig, dimension: int) -> int:
    """The one PCA width all factories share, after refusing any that cannot be built at this size."""
    widths = {split_pca(f)[0] for f in config.factories}
    if len(widths) != 1:
        raise UserError(f"factories {list(config.factories)}: all must start with the same PCA<n> (one PCA is fitted)")
    (width,) = widths
    if width > dimension:
        raise UserError(f"PCA{width}: the vectors have {dimension} dimensions")
    for factory in config.factories:
        inner = split_pca(factory)[1]
        plan_training(new_index(inner, width), quantizer_config(config, inner), config.total)
    return width


def quantizer_config(config: ScaleBenchConfig, inner: str, setting: int | None = None, ef_construction: int | None = None) -> IndexConfig:
    """How the index behind the PCA is trained, built (HNSW at ef_construction) and searched (nprobe = efSearch = setting)."""
    depth = {} if setting is None else {"nprobe": setting, "ef_search": setting}
    build = {} if ef_construction is None else {"ef_construction": ef_construction}
    return IndexConfig(factory=inner, train_size=config.quantizer_train, train_memory=1 << 40, seed=config.seed,
                       batch_size=config.read_block, gpu=False, **depth, **build)


def measurement_jobs(config: ScaleBenchConfig, width: int) -> list[tuple[str, int | None]]:
    """(factory, efConstruction) pairs to measure: each HNSW factory at every config.ef_construction, others once (None)."""
    jobs = []
    for factory in config.factories:
        hnsw = search_settings(new_index(split_pca(factory)[1], width), config)[0] == "efSearch"
        jobs += [(factory, depth) for depth in config.ef_construction] if hnsw else [(factory, None)]
    return jobs


def search_settings(index: faiss.Index, config: ScaleBenchConfig) -> tuple[str | None, tuple[int, ...]]:
    """What to sweep for this index: ("nprobe", …) for IVF, ("efSearch", …) for HNSW, (None, (0,)) otherwise."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return "nprobe", tuple(p for p in config.nprobe if p <= ivf.nlist) or (ivf.nlist,)
    if hasattr(faiss.downcast_index(inner), "hnsw"):
        return "efSearch", config.ef_search
    return None, (0,)


@dataclass(frozen=True)
class Workpack:
    """What every factory is measured on, as files in the run folder (a factory's process reads them)."""

    folder: Path
    total: int
    width: int  # PCA output width
    model: Path | None
    checkpoint_hash: str
    edit_factor: str
    vocabulary: tuple[str, ...]
    layer: str
    exact_r1: float  # exact PCA-space R@1 (%), the recall a setting is held to

    def file(self, name: str) -> Path:
        return self.folder / name

    def array(self, name: str) -> np.ndarray:
        return np.load(self.file(f"{name}.npy"), allow_pickle=False)


def recall_percent(ranked: np.ndarray, layout: StreamLayout, q_keys: np.ndarray, g_keys: np.ndarray) -> dict[str, float]:
    """recall@1/5/20 (%) under criterion 1 of ranked gallery rows (q, k); distractor rows are never correct."""
    report = evaluate_ranking(layout.real_rows(ranked), q_keys, g_keys, PAPER_KS)
    return {str(k): round(v, 2) for k, v in report.percent().items()}


def ranking_figures(ranked: np.ndarray, pack: Workpack, exact: np.ndarray, subset: int) -> dict:
    """Recall on all queries and on the full-width subset, top-1 agreement with exact PCA search, distractor top-1s."""
    layout, q_keys, g_keys = StreamLayout(pack.array("real_at")), pack.array("q_keys"), pack.array("g_keys")
    return {
        "recall_c1": recall_percent(ranked, layout, q_keys, g_keys),
        "recall_c1_subset": recall_percent(ranked[:subset], layout, q_keys[:subset], g_keys),
        "top1_as_exact_pca": round(100.0 * float(np.mean(ranked[:, 0] == exact[:, 0])), 2),
        "top1_distractor": round(100.0 * float(np.mean(layout.real_rows(ranked[:, :1]) < 0)), 2),
    }


def pick_setting(sweep: list[dict], floor: float) -> dict:
    """The first (cheapest) setting whose R@1 reaches `floor`, else the one with the best R@1."""
    for row in sweep:
        if row["recall_c1"]["1"] >= floor:
            return row
    return max(sweep, key=lambda r: r["recall_c1"]["1"])


@contextlib.contextmanager
def one_thread():
    """FAISS and torch on one thread while a single query is timed, as a server gives each query one core.

    On this shared machine a single query split over two threads waits for the busier core: measured
    here at 291 ms instead of 6 ms for one generation, 16 ms instead of 2 ms for one Flat search.
    """
    faiss_threads, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(faiss_threads)
        torch.set_num_threads(torch_threads)


# -- one factory --------------------------------------------------------------------------------------------
def measure_factory(factory: str, pack: Workpack, config: ScaleBenchConfig, generator=None, progress: bool = True,
                    ef_construction: int | None = None) -> dict:
    """Train, fill, save, reload and search one factory: its build time, memory, latency and recall."""
    reset_peak_rss()
    rss_start = rss_bytes("VmRSS")
    pca = faiss.read_VectorTransform(str(pack.file("pca.faiss")))
    inner_factory = split_pca(factory)[1]
    projected = pack.file("projected.f32")
    build_s, (inner, train_count) = seconds_of(lambda: fill_index(
        quantizer_config(config, inner_factory, ef_construction=ef_construction), pack.width, pack.total,
        lambda positions: read_rows(projected, pack.width, positions, config.read_block),
        lambda: iter_rows(projected, pack.width, config.read_block), progress))
    index = faiss.IndexPreTransform(pca, inner)
    saved = pack.file(f"index-{job_name(factory, ef_construction)}.faiss")
    faiss.write_index(index, str(saved))
    faces = pd.DataFrame({"real_row": pack.array("real_at")})
    info = IndexInfo(dimension=index.d, factory=factory, count=pack.total, checkpoint_hash=pack.checkpoint_hash,
                     edit_factor=pack.edit_factor, vocabulary=pack.vocabulary, layer=pack.layer, train_count=train_count)
    vectors, exact = pack.array("query_vectors"), pack.array("exact_pca_rows")
    subset = len(pack.array("exact_full_rows"))
    q = len(vectors)

    def measure(gallery: GalleryIndex) -> tuple[dict, np.ndarray]:
        search_s, ranked = seconds_of(lambda: search_all(gallery, vectors, config.k, config.batch))
        with one_thread():
            one_s = median_seconds(lambda i: gallery.search(vectors[i % q][None], config.k), config.latency_runs)
        return {"search_qps": round(q / search_s, 1), "search_ms": round(1e3 * one_s, 3),
                **ranking_figures(ranked, pack, exact, subset)}, ranked

    name, values = search_settings(index, config)
    gallery = GalleryIndex(index, faces, info, quantizer_config(config, inner_factory))
    sweep, rankings = [], {}
    for value in tqdm(values, desc=f"sweep {factory}", disable=not progress or name is None):
        if name is not None:
            set_search_parameters(index, quantizer_config(config, inner_factory, value))
        row, rankings[value] = measure(gallery)
        sweep.append({"setting": value, **row})
    chosen = pick_setting(sweep, pack.exact_r1 - config.recall_slack)
    peak, growth = rss_bytes(), rss_bytes() - rss_start
    del gallery, index, inner, pca
    gc.collect()

    rss_before_load = rss_bytes("VmRSS")
    loaded = faiss.read_index(str(saved))  # a plain read: IO_FLAG_MMAP + search segfaults in faiss-cpu 1.15
    loaded_rss = rss_bytes("VmRSS") - rss_before_load
    reloaded = GalleryIndex(loaded, faces, info, quantizer_config(config, inner_factory, chosen["setting"] or None))
    reload_same = bool(np.array_equal(search_all(reloaded, vectors, config.k, config.batch), rankings[chosen["setting"]]))
    if generator is None:
        from generator.inference import Generator

        generator = Generator.load(pack.model, config.device)
    images, targets = pack.array("query_images"), list(pack.array("query_targets"))
    one_query = lambda i: search_by_generation(generator, reloaded, images[i % q][None], [targets[i % q]], config.k)  # noqa: E731
    with one_thread():
        latency_s = median_seconds(one_query, config.latency_runs)
    latency_all_threads_s = median_seconds(one_query, config.latency_runs)
    b = min(config.batch, q)
    batch_s = median_seconds(lambda i: search_by_generation(generator, reloaded, images[:b], targets[:b], config.k, b), 2)
    return {
        "factory": factory, "ef_construction": ef_construction, "setting_name": name, "setting": chosen["setting"] if name else None,
        "train_count": train_count, "own_train_add_s": round(build_s, 2),
        "index_bytes": saved.stat().st_size, "loaded_rss_bytes": loaded_rss,
        "peak_rss_bytes": peak, "rss_growth_bytes": growth,
        "latency_ms": round(1e3 * latency_s, 2), "latency_ms_all_threads": round(1e3 * latency_all_threads_s, 2),
        "batch_qps": round(b / batch_s, 1), "batch": b, "threads": {"single_query": 1, "batch": faiss.omp_get_max_threads()},
        "reload_same_results": reload_same,
        **{k: v for k, v in chosen.items() if k != "setting"},
        "sweep": sweep if name else [],
    }


def job_name(factory: str, ef_construction: int | None) -> str:
    """A file-name-safe name of one measurement: "PCA256_HNSW32_efc200"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", factory) + ("" if ef_construction is None else f"_efc{ef_construction}")


def _factory_process(factory: str, ef_construction: int | None, pack: Workpack, config: ScaleBenchConfig, result: Path) -> None:
    """measure_factory in a process of its own; the row (or why it was skipped) written to `result`."""
    try:
        row = measure_factory(factory, pack, config, ef_construction=ef_construction)
    except UserError as exc:
        row = {"factory": factory, "ef_construction": ef_construction, "skipped": str(exc)}
    write_json(result, row)


def measure_isolated(factory: str, pack: Workpack, config: ScaleBenchConfig, ef_construction: int | None = None) -> dict:
    """One factory measured in a fresh process, so its peak RSS is its alone."""
    result = pack.file(f"row-{job_name(factory, ef_construction)}.json")
    process = multiprocessing.get_context("spawn").Process(target=_factory_process, args=(factory, ef_construction, pack, config, result))
    process.start()
    process.join()
    if process.exitcode != 0 or not result.is_file():
        return {"factory": factory, "ef_construction": ef_construction, "failed": f"its process exited with code {process.exitcode}"}
    return json.loads(result.read_text())
