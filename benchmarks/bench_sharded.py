"""Speed of the sharded gallery build: one process (torch on every core) against N Ray workers of one core.

    .venv/bin/python benchmarks/bench_sharded.py --model synthpie-pose --data runs/paper \\
        --gallery-limit 2000 --workers 2 --out runs/bench/sharded.json

Both builds index the same gallery (the first --gallery-limit faces of --split) with the same factory,
chunk size, views and normalization, one after the other in this run (--repeats alternates them and
keeps the medians). `--views all --normalize classifier` times the all-poses build a gallery face costs
1 generation and V feature passes in (the pose classifier, fitted once on --data's train split, is not
timed); each row also gives the hours 10^6 faces would take at its rate.
A build's time is its whole wall time: for Ray that includes starting the local cluster, its worker
processes and each worker's model load. The two indexes are checked to give the same search results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from bench_retrieval import in_work_folder, publish

from facedata.faceset import FaceSet
from facedata.provenance import provenance
from generator.inference import Generator
from index.distribute import RayDistributor
from index.faiss_index import GalleryIndex, IndexConfig, build_index
from index.pose_classifier import fit_on_train_split


@dataclass(frozen=True)
class BenchConfig:
    """What to build and how often."""

    model: str = "synthpie-pose"
    data: str = "runs/paper"
    split: str = "test"
    gallery_limit: int = 2000  # first faces of the split; 0 = all
    workers: int = 2
    factory: str = "Flat"
    batch_size: int = 256
    repeats: int = 1
    queries: int = 50  # search results compared between the two indexes
    views: str = "kept"  # "all": every value side by side (`rbg index build --views all`)
    normalize: str = "full"  # "classifier": 1 generation in a fitted pose classifier's pose, not 7


def open_gallery(config: BenchConfig) -> FaceSet:
    faces = FaceSet.open(config.data)
    gallery = faces if config.split == "all" else faces.split(config.split)
    limit = config.gallery_limit or len(gallery)
    return gallery.take(range(min(limit, len(gallery))))


def timed_build(generator, gallery: FaceSet, out: Path, index_config: IndexConfig, workers: int,
                threads: int | None = None, classifier=None) -> float:
    """Seconds of one build into `out`: one process when workers == 1 (torch on `threads`, default all), else
    a fresh local Ray cluster."""
    start = time.perf_counter()
    if workers == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            build_index(generator, gallery, out, index_config, progress=False, force=True, classifier=classifier)
        finally:
            torch.set_num_threads(before)
    else:
        with RayDistributor(workers) as distributor:
            build_index(generator, gallery, out, index_config, progress=False, force=True, distributor=distributor,
                        classifier=classifier)
    return time.perf_counter() - start


def compare(a: GalleryIndex, b: GalleryIndex, n: int) -> dict:
    """Whether both indexes return the same rows for n random queries, and how far apart their distances are.

    Features computed on another thread count can differ in the last bits (BLAS summation order); a
    trained transform (PCA) carries that into every distance, so rows are the test and distances are told.
    """
    probe = np.random.default_rng(0).standard_normal((n, a.info.dimension)).astype(np.float32)
    k = min(10, len(a))
    (da, ra), (db, rb) = a.search(probe, k), b.search(probe, k)
    return {"same_rows": bool(np.array_equal(ra, rb)), "max_distance_difference": float(np.abs(da - db).max())}


def run(config: BenchConfig, work: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        generator = Generator.load(config.model, "cpu")
    gallery = open_gallery(config)
    index_config = IndexConfig(factory=config.factory, batch_size=config.batch_size, views=config.views,
                               normalize=config.normalize)
    classifier = None
    if config.normalize != "full":
        classifier, _ = fit_on_train_split(FaceSet.open(config.data), generator.edit_factor)
    plans = {"one process": (1, None), "one process, 1 thread": (1, 1), f"ray ×{config.workers}": (config.workers, 1)}
    seconds: dict[str, list[float]] = {name: [] for name in plans}
    load_before = os.getloadavg()
    for repeat in range(config.repeats):
        order = list(plans) if repeat % 2 == 0 else list(reversed(plans))
        for name in order:
            seconds[name].append(timed_build(generator, gallery, work / name.replace(" ", "-").replace(",", ""),
                                             index_config, *plans[name], classifier=classifier))
            print(f"  {name}: {seconds[name][-1]:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()
    built = {name: GalleryIndex.load(work / name.replace(" ", "-").replace(",", "")) for name in plans}
    base = statistics.median(seconds["one process"])
    one_thread = statistics.median(seconds["one process, 1 thread"])
    rows = []
    for name, (workers, threads) in plans.items():
        median = statistics.median(seconds[name])
        rows.append({"build": name, "workers": workers, "torch_threads": threads or torch.get_num_threads(),
                     "seconds": round(median, 2), "all_seconds": [round(s, 2) for s in seconds[name]],
                     "faces_per_s": round(len(gallery) / median, 2), "ratio": round(base / median, 3),
                     "million_faces_hours": round(1e6 * median / len(gallery) / 3600, 1),
                     "ratio_to_one_thread": round(one_thread / median, 3)})
    try:
        import ray
        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {
        "config": asdict(config),
        "faces": len(gallery),
        "rows": rows,
        "comparison": {name: compare(built["one process"], other, config.queries) for name, other in built.items()},
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "machine": {"cpus": os.cpu_count()},
        "provenance": provenance(seed=index_config.seed, ray=ray_version),
    }


def print_table(record: dict) -> None:
    print(f"{record['faces']} faces of {record['config']['data']}, factory {record['config']['factory']}, "
          f"load average {record['load_average']['before'][0]:.2f} → {record['load_average']['after'][0]:.2f} "
          f"on {record['machine']['cpus']} CPUs")
    print(markdown(record))
    print(f"same search results: {same_results(record)}")


def same_results(record: dict) -> str:
    """The three builds' search results compared, in words (records before "comparison" say yes or no)."""
    if "comparison" not in record:
        return "yes" if record["same_results"] else "NO"
    compared = record["comparison"].values()
    rows = "yes" if all(c["same_rows"] for c in compared) else "NO"
    return f"{rows} (rows; largest distance difference {max(c['max_distance_difference'] for c in compared):.1e})"


def markdown(record: dict) -> str:
    """The run as a Markdown table (the README's results layout "sharded")."""
    config = record["config"]
    lines = [f"{record['faces']:,} faces, factory {config['factory']}, views {config.get('views', 'kept')}, normalization "
             f"{config.get('normalize', 'full')}, {config['repeats']} repeat(s) "
             f"(medians), load average {record['load_average']['before'][0]:.2f} → {record['load_average']['after'][0]:.2f} "
             f"on {record['machine']['cpus']} CPUs; same search results: {same_results(record)}", "",
             "| build | workers | torch threads each | seconds | faces/s | × one process | × one thread | 10^6 faces, hours |",
             "|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        hours = r.get("million_faces_hours", round(1e6 / r["faces_per_s"] / 3600, 1))
        lines.append(f"| {r['build']} | {r['workers']} | {r['torch_threads']} | {r['seconds']:.1f} | {r['faces_per_s']:.1f} "
                     f"| {r['ratio']:.2f} | {r['ratio_to_one_thread']:.2f} | {hours:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--data", default=defaults.data)
    parser.add_argument("--split", default=defaults.split, choices=["test", "val", "train", "all"])
    parser.add_argument("--gallery-limit", type=int, default=defaults.gallery_limit, help="first faces of the split (0: all)")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--factory", default=defaults.factory)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--views", default=defaults.views, choices=["kept", "all"])
    parser.add_argument("--normalize", default=defaults.normalize, choices=["full", "classifier", "none"])
    parser.add_argument("--work-dir", type=Path, default=None, help="where the two indexes are built [a temporary folder]")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sharded.json"))
    args = parser.parse_args(argv)
    if args.workers < 2 or args.repeats < 1:
        sys.exit("Error: --workers must be ≥ 2 and --repeats ≥ 1")
    config = BenchConfig(model=args.model, data=args.data, split=args.split, gallery_limit=args.gallery_limit,
                         workers=args.workers, factory=args.factory, batch_size=args.batch_size, repeats=args.repeats,
                         views=args.views, normalize=args.normalize)
    record = in_work_folder(args.work_dir, "bench-sharded-", lambda work: run(config, work))
    publish(record, args.out, print_table)


if __name__ == "__main__":
    main()
