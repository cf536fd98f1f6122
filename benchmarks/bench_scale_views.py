"""Search among 10^6 faces with all poses: a compact all-views index's size, memory, latency and recall.

    nice .venv/bin/python benchmarks/bench_scale_views.py --model runs/kdef-skip --data runs/kdef32 \\
        --factory VIEWPCA64,IVF4096,SQ8 --out docs/results/scale_views_1m.json

The real gallery is the test people's faces, each as all its views side by side
(index.features.all_value_features: V·d floats, 327,680 bytes a KDEF face), kept in the value the 2-step
pose classifier (fitted on the train people) gives it. It is placed at seeded rows among synthetic
distractors, made as bench_scale.py makes them (distractors.py): a mix of two real faces of different
identities in one kept value, plus Gaussian noise, re-normalized.

At 10^6 rows the full-width vectors would take 328 GB, so nothing is made at full width. The PCA (joint,
"PCA{p},…", or per view, "VIEWPCA{p},…": index.view_pca; fitted on the train people's vectors, never on the
faces searched) is linear, so a distractor's projection follows from its two faces' projections, its mixing
weight, its noise's projection (Gaussian: the PCA's rows are orthonormal) and its full-width norm, which
the real faces' Gram matrix gives. The exact full-width
distance of a real query to a distractor follows from the same Gram matrix. Only the query's dot product
with the noise (standard deviation noise/√(V·d) ≈ 7·10⁻⁵ for KDEF) is left out of both.

Measured: build (train + add) time, index bytes, the serving process's peak RSS, one query end to end on one
thread (the V generations of the query + PCA + filtered search), batch throughput on all threads,
R@1/5/20 (criterion 1) against exact search in the PCA space and at full width, and the kept-value
filter's search time for the rarest and the most common target, with ID selectors and with the widening
search it replaced, on a kept column skewed so that one value holds --rare-share of the rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from bench_compact import cached_views
from bench_retrieval import median_seconds, publish, rss_bytes, seconds_of
from distractors import DistractorConfig, StreamLayout, partner_faces
from scale_factory import one_thread
from tqdm import tqdm

from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.provenance import provenance
from generator.inference import Generator
from generator.int8 import calibration_faces
from index.faiss_factory import IndexConfig, new_index, set_search_parameters, training_sample_size
from index.faiss_index import GalleryIndex, IndexInfo
from index.kept_filter import KeptFilter, widening_search
from index.pose_classifier import PoseClassifierConfig
from index.view_pca import PROJECTION_FILE, ViewPCA, split_factory
from retrieval.metrics import PAPER_KS, criterion_keys, evaluate_ranking
from retrieval.protocol import sample_queries
from retrieval.two_step import fit_pose_filter

TARGETS = {"index_bytes_max": 4_000_000_000, "peak_rss_max": 6 * 1024**3, "latency_ms_max": 30.0, "recall_gap_max": 1.0}


@dataclass(frozen=True)
class ViewsScaleConfig:
    """What to measure, at which size."""

    model: str
    data: str
    total: int = 1_000_000
    queries: int = 1000
    factory: str = "PCA128,IVF4096,Flat"  # "PCA{p},…" a joint PCA, "VIEWPCA{p},…" a PCA per view, then the FAISS factory
    nprobe: tuple[int, ...] = (8, 16, 32, 64, 128)
    k: int = 20
    quantizer_train: int = 160_000
    latency_runs: int = 30
    batch: int = 256
    rare_share: float = 0.005
    pose_classifier: str = "cnn"
    cache: str = "reports/.bench-cache"
    seed: int = 0
    distractors: DistractorConfig = field(default_factory=DistractorConfig)


@dataclass
class RealGallery:
    """The real faces: projected views, Gram matrix at full width, identities, kept values."""

    projected: np.ndarray  # (n, P) float32: PCA of each face's all-views vector
    lifted: np.ndarray  # (n, P) float32: W·x, the projection before the mean is taken off
    shift: np.ndarray  # (P,) float32: W·μ
    gram: np.ndarray  # (n, n) float32: full-width dot products
    identities: np.ndarray
    kept: np.ndarray
    width: int  # full width V·d


def distractor_rows(real: RealGallery, count: int, rng: np.random.Generator, config: DistractorConfig):
    """`count` distractors as PCA rows (count, p), their two faces (count, 2), mix weights and full-width norms."""
    first = rng.integers(0, len(real.identities), size=count)
    second = partner_faces(first, real.identities, real.kept, rng)
    weight = rng.uniform(config.mix_low, config.mix_high, size=count).astype(np.float32)
    noise = rng.standard_normal((count, real.lifted.shape[1]), dtype=np.float32) * np.float32(config.noise / np.sqrt(real.width))
    cross = real.gram[first, second]
    norm = np.sqrt(weight**2 + (1 - weight) ** 2 + 2 * weight * (1 - weight) * cross + config.noise**2).astype(np.float32)
    mixed = (weight[:, None] * real.lifted[first] + (1 - weight)[:, None] * real.lifted[second] + noise) / norm[:, None]
    return mixed - real.shift, first, second, weight, norm


class Stream:
    """The 10^6-row gallery, block by block from a seed: PCA rows, kept values, and how to score a real query exactly."""

    def __init__(self, real: RealGallery, layout: StreamLayout, seed: int, config: DistractorConfig):
        self.real, self.layout, self.seed, self.config = real, layout, seed, config

    @property
    def blocks(self) -> int:
        return -(-self.layout.total // self.config.block)

    def block(self, b: int):
        """Rows [b·block, …): PCA rows (m, p), kept (m,), and for the distractors their (first, second, weight, norm)."""
        start = b * self.config.block
        real_at = self.layout.real_at[start : start + self.config.block]
        is_real = real_at >= 0
        rows = np.empty((len(real_at), self.real.projected.shape[1]), dtype=np.float32)
        kept = np.empty(len(real_at), dtype=object)
        rows[is_real] = self.real.projected[real_at[is_real]]
        kept[is_real] = self.real.kept[real_at[is_real]]
        mix = None
        if not is_real.all():
            rng = np.random.default_rng([self.seed, 1, b])
            made, first, second, weight, norm = distractor_rows(self.real, int((~is_real).sum()), rng, self.config)
            rows[~is_real] = made
            kept[~is_real] = self.real.kept[first]
            mix = (first, second, weight, norm)
        return rows, kept.astype(str), is_real, mix


def exact_top(stream: Stream, q_real: np.ndarray, q_pca: np.ndarray, targets: np.ndarray, k: int, progress: bool):
    """Exact filtered top-k of each query over the whole stream: in the PCA space, and at full width (Gram)."""
    q = len(q_real)
    tops = {name: (np.full((q, k), np.inf, np.float32), np.full((q, k), -1, np.int64)) for name in ("pca", "full")}
    gram = stream.real.gram[q_real]
    for b in tqdm(range(stream.blocks), desc="exact search", unit="block", disable=not progress):
        rows, kept, is_real, mix = stream.block(b)
        start = b * stream.config.block
        d_pca = (np.sum(q_pca**2, axis=1)[:, None] + np.sum(rows**2, axis=1)[None] - 2 * q_pca @ rows.T)
        dots = np.empty((q, len(rows)), dtype=np.float32)
        real_at = stream.layout.real_at[start : start + len(rows)]
        dots[:, is_real] = gram[:, real_at[is_real]]
        if mix is not None:
            first, second, weight, norm = mix
            dots[:, ~is_real] = (weight * gram[:, first] + (1 - weight) * gram[:, second]) / norm
        d_full = 2 - 2 * dots
        wrong = kept[None, :] != targets[:, None]
        for name, d in (("pca", d_pca), ("full", d_full)):
            d = np.where(wrong, np.inf, d).astype(np.float32)
            best_d, best_r = tops[name]
            all_d = np.concatenate([best_d, d], axis=1)
            all_r = np.concatenate([best_r, np.broadcast_to(np.arange(start, start + len(rows)), d.shape)], axis=1)
            order = np.lexsort((all_r, all_d), axis=1)[:, :k]
            tops[name] = (np.take_along_axis(all_d, order, 1), np.take_along_axis(all_r, order, 1))
    return {name: np.where(np.isfinite(d), r, -1) for name, (d, r) in tops.items()}


def recall(ranked: np.ndarray, layout: StreamLayout, q_keys: np.ndarray, g_keys: np.ndarray) -> dict:
    report = evaluate_ranking(layout.real_rows(ranked), q_keys, g_keys, PAPER_KS)
    return {str(k): round(v, 2) for k, v in report.percent().items()}


def fitted_projection(factory: str, sample: np.ndarray, views: int, seed: int) -> tuple[ViewPCA, str]:
    """The factory's PCA fitted on a sample of all-views vectors (a joint one as a single "view"), and the FAISS
    factory after it."""
    view_width, rest = split_factory(factory)
    if view_width is None:
        head, _, rest = factory.partition(",")
        if not (head.startswith("PCA") and head[3:].isdigit() and rest):
            raise UserError(f"--factory '{factory}': give PCA{{p}},FACTORY or VIEWPCA{{p}},FACTORY")
        return ViewPCA.fit(sample, 1, int(head[3:]), seed), rest
    return ViewPCA.fit(sample, views, view_width, seed), rest


def _serve_process(index_file: str, faces_file: str, info: dict, model: str, query_file: str, config: dict, result: str) -> None:
    """In a fresh process: load the saved index, answer queries end to end; its peak RSS is the server's.

    Then the same with int8 queries (Generator.use_int8, calibrated on a sample of the gallery's faces):
    their latency, and every query's ranking, saved beside `result` for the recall."""
    loaded = faiss.read_index(index_file)
    faces = pd.read_parquet(faces_file)
    index_config = IndexConfig(factory=info["factory"], views="all", nprobe=config["nprobe"])
    gallery = GalleryIndex(loaded, faces, IndexInfo(**{**info, "vocabulary": tuple(info["vocabulary"])}), index_config,
                           projection=ViewPCA.load(Path(index_file).with_name(PROJECTION_FILE)))
    generator = Generator.load(model, "cpu")
    data = np.load(query_file)
    images, targets = data["images"], data["targets"].astype(str)
    from retrieval.search import search_by_generation

    b = min(len(images), config["batch"])  # the batch timed, and the queries the single-query runs cycle through
    one = lambda i: search_by_generation(generator, gallery, images[i % b][None], [targets[i % b]], config["k"])  # noqa: E731
    batch = lambda i: search_by_generation(generator, gallery, images[:b], list(targets[:b]), config["k"], b)  # noqa: E731
    with one_thread():
        latency = median_seconds(one, config["latency_runs"])
        generate_only = median_seconds(lambda i: generator.features(images[i % b][None], [targets[i % b]]), config["latency_runs"])
    record = {"latency_ms": round(1e3 * latency, 2), "one_generation_ms": round(1e3 * generate_only, 2),
              "batch_qps": round(b / median_seconds(batch, 2), 1), "batch": b}
    start = time.perf_counter()
    generator.use_int8(data["calibration"])
    record["int8_calibration_s"] = round(time.perf_counter() - start, 2)
    record["int8_calibration_faces"] = len(data["calibration"])
    with one_thread():
        record["int8_latency_ms"] = round(1e3 * median_seconds(one, config["latency_runs"]), 2)
    record["int8_batch_qps"] = round(b / median_seconds(batch, 2), 1)
    ranked = search_by_generation(generator, gallery, images, list(targets), config["k"]).rows
    np.save(Path(result).with_suffix(".int8_rows.npy"), ranked)
    record["serving_peak_rss_bytes"] = rss_bytes()
    Path(result).write_text(json.dumps(record))


def filter_cost(index: faiss.Index, pca_queries: np.ndarray, kept: np.ndarray, k: int, nprobe: int,
                rare_share: float, seed: int, runs: int) -> dict:
    """Search time of the rarest and the most common target on a kept column skewed to `rare_share` for one value,
    with ID selectors (the index's filter) and with the widening search it replaced (one query, one thread)."""
    rng = np.random.default_rng([seed, 7])
    skewed = np.where(rng.random(len(kept)) < rare_share, "rare", "common")
    selectors = KeptFilter(skewed)
    set_search_parameters(index, IndexConfig(nprobe=nprobe))
    figures = {"rare_share": rare_share, "rows": {"rare": int(np.sum(skewed == "rare")), "common": int(np.sum(skewed == "common"))}}

    def unfiltered(v, width):
        return index.search(v, width)

    with one_thread():
        for value in ("rare", "common"):
            target = np.asarray([value])
            figures[f"selectors_ms_{value}"] = round(1e3 * median_seconds(
                lambda i: selectors.search(index, pca_queries[i % len(pca_queries)][None], k, target, nprobe, 64), runs), 3)
            figures[f"widening_ms_{value}"] = round(1e3 * median_seconds(
                lambda i: widening_search(unfiltered, pca_queries[i % len(pca_queries)][None], k, skewed, target,
                                          len(skewed), 4 * k * 2), max(3, runs // 5)), 3)
    return figures


def run(config: ViewsScaleConfig, folder: Path, progress: bool = True) -> dict:
    load_start = os.getloadavg()
    generator = Generator.load(config.model)
    faces = FaceSet.open(config.data)
    edit = generator.edit_factor
    train, gallery = faces.split("train"), faces.split("test")
    cache = Path(config.cache)
    stages = {}
    queries = sample_queries(gallery, edit, config.queries, config.seed)
    pose_filter = fit_pose_filter(train, gallery, queries, PoseClassifierConfig(model=config.pose_classifier, seed=config.seed), cache)
    kept = np.asarray(pose_filter.gallery_pred).astype(str)
    stages["views_s"], (real_vectors, train_vectors) = seconds_of(lambda: (
        np.asarray(cached_views(generator, gallery, None, 256, cache, "test-gallery")),
        cached_views(generator, train, None, 256, cache, "train")))
    width = real_vectors.shape[1]
    sample_count = training_sample_size(IndexConfig(), width, len(train_vectors))
    picks = np.sort(np.random.default_rng(config.seed).choice(len(train_vectors), size=sample_count, replace=False))
    stages["pca_fit_s"], (projection, inner_factory) = seconds_of(lambda: fitted_projection(
        config.factory, np.asarray(train_vectors[picks]), len(generator.vocabulary), config.seed))
    del train_vectors
    shift = np.einsum("vpd,vd->vp", projection.components, projection.mean).ravel()
    projected = np.concatenate([projection.apply(real_vectors[i : i + 256]) for i in range(0, len(real_vectors), 256)])
    real = RealGallery(projected=projected, lifted=(projected + shift).astype(np.float32), shift=shift.astype(np.float32),
                       gram=(real_vectors @ real_vectors.T).astype(np.float32),
                       identities=gallery.faces["identity"].to_numpy().astype(str), kept=kept, width=width)
    query_images = gallery.images[queries.positions]
    query_vectors = np.ascontiguousarray(real_vectors[queries.positions])  # a face's all-views vector is its query's
    del real_vectors
    layout = StreamLayout.place(len(kept), config.total, config.seed)
    stream = Stream(real, layout, config.seed, config.distractors)
    q_keys, g_keys = criterion_keys(queries.faces(gallery), queries.targets, gallery.faces.reset_index(drop=True), edit, 1)
    q_pca = real.projected[queries.positions]
    stages["exact_s"], exact = seconds_of(lambda: exact_top(stream, queries.positions, q_pca, queries.targets, config.k, progress))

    # the index: the factory's own index over the projected rows, trained on a sample of them; the
    # projection goes in front of it as GalleryIndex applies it (index.view_pca)
    inner = new_index(inner_factory, projection.d_out)
    t = time.perf_counter()
    train_rows = []
    kept_rows = []
    for b in tqdm(range(stream.blocks), desc="PCA rows", unit="block", disable=not progress):
        rows, block_kept, _, _ = stream.block(b)
        kept_rows.append(block_kept)
        train_rows.append(rows[: max(1, config.quantizer_train * len(rows) // config.total + 1)])
    sample = np.concatenate(train_rows)[: config.quantizer_train]
    stages["make_rows_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if not inner.is_trained:
        inner.train(np.ascontiguousarray(sample))
    stages["train_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    for b in tqdm(range(stream.blocks), desc=f"add to {inner_factory}", unit="block", disable=not progress):
        inner.add(stream.block(b)[0])
    stages["add_s"] = round(time.perf_counter() - t, 2)
    index_file = folder / "index.faiss"
    faiss.write_index(inner, str(index_file))
    projection.save(folder / PROJECTION_FILE)
    index_bytes = index_file.stat().st_size + (folder / PROJECTION_FILE).stat().st_size
    kept_all = np.concatenate(kept_rows)
    faces_table = pd.DataFrame({"real_row": layout.real_at, f"kept_{edit}": kept_all})
    faces_table.to_parquet(folder / "faces.parquet", index=False)
    info = IndexInfo(dimension=width, factory=config.factory, count=config.total, checkpoint_hash=generator.checkpoint_hash,
                     edit_factor=edit, vocabulary=tuple(generator.vocabulary), layer=generator.default_feature_layer,
                     config={"views": "all", "factory": config.factory})

    sweep, top_rows = [], {}
    for nprobe in config.nprobe:
        searched = GalleryIndex(inner, faces_table, info, IndexConfig(factory=config.factory, views="all", nprobe=nprobe),
                                projection=projection)
        seconds, (_, ranked) = seconds_of(lambda: searched.search_among(
            query_vectors, config.k, queries.targets))
        top_rows[nprobe] = ranked[:, 0]
        sweep.append({"nprobe": nprobe, "recall_c1": recall(ranked, layout, q_keys, g_keys),
                      "top1_as_exact_pca": round(100 * float(np.mean(ranked[:, 0] == exact["pca"][:, 0])), 2),
                      "search_ms_per_query_batch": round(1e3 * seconds / len(ranked), 3)})
    exact_pca = recall(exact["pca"], layout, q_keys, g_keys)
    chosen = next((s for s in sweep if exact_pca["1"] - s["recall_c1"]["1"] <= TARGETS["recall_gap_max"]), sweep[-1])

    np.savez(folder / "queries.npz", images=query_images, targets=np.asarray(queries.targets),
             calibration=calibration_faces(gallery.images, seed=config.seed))
    result = folder / "serve.json"
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_serve_process, args=(
        str(index_file), str(folder / "faces.parquet"), {**asdict(info), "vocabulary": list(info.vocabulary)}, config.model,
        str(folder / "queries.npz"), {"nprobe": chosen["nprobe"], "k": config.k, "latency_runs": config.latency_runs,
                                      "batch": config.batch}, str(result)))
    process.start()
    process.join()
    serving = json.loads(result.read_text()) if result.is_file() else {"error": f"serving process exit {process.exitcode}"}
    int8_rows = result.with_suffix(".int8_rows.npy")
    if int8_rows.is_file():
        ranked = np.load(int8_rows)
        serving["int8_recall_c1"] = recall(ranked, layout, q_keys, g_keys)
        serving["int8_top1_as_float32"] = round(100 * float(np.mean(ranked[:, 0] == top_rows[chosen["nprobe"]])), 2)
    cost = filter_cost(inner, q_pca, kept_all, config.k, chosen["nprobe"], config.rare_share, config.seed, config.latency_runs)
    record = {
        "config": asdict(config),
        "ground_truth": {"data": faces.info.name, "split": "test", "real": len(kept), "width": width,
                         "vocabulary": list(generator.vocabulary),
                         "full_bytes_per_face": 4 * width, "model_sha256": generator.checkpoint_hash,
                         "pose_classifier_accuracy": round(float(pose_filter.accuracy), 4)},
        "gallery": {"rows": config.total, "real": len(kept), "synthetic_distractors": layout.distractor_count()},
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "index_bytes": index_bytes,
        "bytes_per_face": round(index_bytes / config.total, 1),
        "exact": {"pca": exact_pca, "full": recall(exact["full"], layout, q_keys, g_keys),
                  "real_only_note": "exact searches are filtered by the kept value, as the index is"},
        "sweep": sweep,
        "chosen": chosen,
        "serving": serving,
        "filter_cost": cost,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "provenance": provenance(seed=config.seed, faiss=faiss.__version__, command=" ".join(sys.argv)),
    }
    record["targets"] = TARGETS
    record["targets_met"] = {
        "index_bytes": record["index_bytes"] <= TARGETS["index_bytes_max"],
        "peak_rss": serving.get("serving_peak_rss_bytes", 1 << 62) <= TARGETS["peak_rss_max"],
        "latency_ms": serving.get("latency_ms", 1e9) <= TARGETS["latency_ms_max"],
        "int8_latency_ms": serving.get("int8_latency_ms", 1e9) <= TARGETS["latency_ms_max"],
        "int8_recall_vs_exact_pca": exact_pca["1"] - serving.get("int8_recall_c1", {"1": -1e9})["1"] <= TARGETS["recall_gap_max"],
        "recall_vs_exact_pca": exact_pca["1"] - chosen["recall_c1"]["1"] <= TARGETS["recall_gap_max"],
        "filter_cost_flat": cost["selectors_ms_rare"] <= 1.5 * cost["selectors_ms_common"],
    }
    return record


def markdown(record: dict) -> str:
    """The result as Markdown: the index at 10^6 rows, its recall sweep, the serving figures and the filter's cost."""
    s, g, cost = record["serving"], record["gallery"], record["filter_cost"]
    mb = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    lines = [f"{g['rows']:,} rows ({g['real']:,} real {record['ground_truth']['data']} test faces, "
             f"{g['synthetic_distractors']:,} distractors), every face all its views "
             f"({record['ground_truth']['full_bytes_per_face']:,} B at full width), index {record['config']['factory']}: "
             f"**{record['index_bytes'] / 1e9:.2f} GB**, {record['bytes_per_face']:,.0f} B a face",
             "", "| search | C1 R@1 | R@5 | R@20 | ms / query (batch) |", "|---|---:|---:|---:|---:|",
             "| exact, full width | " + " | ".join(f"{record['exact']['full'][k]:.1f}" for k in ("1", "5", "20")) + " | — |",
             "| exact, PCA space | " + " | ".join(f"{record['exact']['pca'][k]:.1f}" for k in ("1", "5", "20")) + " | — |"]
    for row in record["sweep"]:
        mark = " (chosen)" if row["nprobe"] == record["chosen"]["nprobe"] else ""
        lines.append(f"| nprobe {row['nprobe']}{mark} | " + " | ".join(f"{row['recall_c1'][k]:.1f}" for k in ("1", "5", "20"))
                     + f" | {row['search_ms_per_query_batch']:.3f} |")
    if "latency_ms" in s:
        lines += ["", f"One query end to end on one thread ({len(record['ground_truth'].get('vocabulary', [])) or 'V'} generations in one "
                      f"pass + PCA + filtered search): **{s['latency_ms']:.1f} ms** (one plain generation {s['one_generation_ms']:.1f} ms); "
                      f"batch of {s['batch']}: {s['batch_qps']:.1f} queries/s; serving process peak RSS {mb(s['serving_peak_rss_bytes'])}. "
                      f"Build: train {record['stages'].get('train_s', 0):.0f} s + add {record['stages'].get('add_s', 0):.0f} s."]
    if "int8_latency_ms" in s:
        r = s.get("int8_recall_c1", {})
        lines += ["", f"With int8 queries (`--int8`, calibrated on {s.get('int8_calibration_faces', 64)} gallery faces in "
                      f"{s['int8_calibration_s']:.0f} s): one query **{s['int8_latency_ms']:.1f} ms** "
                      f"({s['latency_ms'] / s['int8_latency_ms']:.2f}× faster, same run); batch {s['int8_batch_qps']:.1f} queries/s; "
                      f"C1 R@1/5/20 {r.get('1', float('nan')):.1f} / {r.get('5', float('nan')):.1f} / {r.get('20', float('nan')):.1f} "
                      f"at the chosen nprobe (float32 queries: {record['chosen']['recall_c1']['1']:.1f}); top-1 the same as float32's "
                      f"for {s.get('int8_top1_as_float32', float('nan')):.1f} % of queries."]
    lines += ["", f"Kept-value filter, one query on one thread, kept column skewed to {100 * cost['rare_share']:.1f} % "
                  f"({cost['rows']['rare']:,} rows) for the rare value:",
              "", "| filter | rarest target ms | most common target ms |", "|---|---:|---:|",
              f"| ID selectors (the index's) | {cost['selectors_ms_rare']:.3f} | {cost['selectors_ms_common']:.3f} |",
              f"| widening search (before) | {cost['widening_ms_rare']:.3f} | {cost['widening_ms_common']:.3f} |"]
    return "\n".join(lines)


def print_table(record: dict) -> None:
    print(markdown(record))
    print(f"targets met: {record['targets_met']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--factory", default=ViewsScaleConfig.factory)
    parser.add_argument("--cache", default="reports/.bench-cache")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"))
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    config = ViewsScaleConfig(model=args.model, data=args.data, total=args.total, queries=args.queries,
                              factory=args.factory, cache=args.cache)
    args.work.mkdir(parents=True, exist_ok=True)
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="scale-views-", dir=args.work) as folder:
            record = run(config, Path(folder))
    except UserError as exc:
        sys.exit(f"Error: {exc}")
    publish(record, args.out, print_table)


if __name__ == "__main__":
    main()
