"""A gallery searched as shards: one index folder per shard, each opened by its own Ray actor, top-k merged.

A gallery too large for one machine's memory is held as several index folders, each a part of the
gallery's rows in order (built part by part with `rbg index build`, or cut from one index by
`split_index`). Every actor opens one folder and answers its k nearest rows; the driver shifts each
shard's rows by the rows of the shards before it and keeps the k nearest overall, ties to the lower
row (order_ties), so a sharded exact search returns what one index of all the rows returns.
The kept-value filter (search_among) runs inside each shard.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from facedata.errors import UserError
from index.distribute import RayDistributor
from index.faiss_index import GalleryIndex, order_ties


class _ShardHost:
    """A Ray actor holding one shard's index, loaded once."""

    def __init__(self, path: str, threads: int = 1):
        faiss.omp_set_num_threads(max(1, int(threads)))
        self.index = GalleryIndex.load(path)

    def count(self) -> int:
        return len(self.index)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(vectors, min(int(k), len(self.index)))

    def search_among(self, vectors: np.ndarray, k: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search_among(vectors, min(int(k), len(self.index)), targets)


def merge_top_k(results: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each shard's (distances, local rows) → the k nearest overall as (distances, global rows), ties by row."""
    distances = np.concatenate([np.asarray(d, dtype=np.float32) for d, _ in results], axis=1)
    rows = np.concatenate([np.where(r >= 0, r + offset, -1) for (_, r), offset in zip(results, offsets)], axis=1)
    distances, rows = order_ties(distances, rows)
    width = min(k, rows.shape[1])
    out_d = np.full((len(rows), k), np.inf, dtype=np.float32)
    out_r = np.full((len(rows), k), -1, dtype=np.int64)
    out_d[:, :width], out_r[:, :width] = distances[:, :width], rows[:, :width]
    return out_d, out_r


class ShardedGallery:
    """Index folders searched together, one Ray actor per shard (a local cluster, or `address`'s)."""

    def __init__(self, paths: Sequence[str | Path], address: str | None = None, threads_per_shard: int = 1):
        if not paths:
            raise UserError("a sharded gallery needs at least one index folder")
        self.paths = [Path(p) for p in paths]
        infos = [GalleryIndex.load(p).info for p in self.paths]  # refuses a bad folder here, before any actor
        first = infos[0]
        for path, info in zip(self.paths[1:], infos[1:]):
            if (info.checkpoint_hash, info.layer, info.dimension, tuple(info.vocabulary)) != (
                    first.checkpoint_hash, first.layer, first.dimension, tuple(first.vocabulary)):
                raise UserError(f"{path}: not a shard of {self.paths[0]}'s gallery (another model, layer or dimension)")
        self.counts = [info.count for info in infos]
        self.offsets = list(np.cumsum([0, *self.counts[:-1]]).astype(int))
        self._distributor = RayDistributor(len(self.paths), address)
        self._threads = int(threads_per_shard)
        self._hosts: list = []

    def __len__(self) -> int:
        return int(sum(self.counts))

    def __enter__(self) -> "ShardedGallery":
        ray = self._distributor.connect()
        host = ray.remote(num_cpus=1)(_ShardHost)
        self._hosts = [host.remote(str(path.resolve()), self._threads) for path in self.paths]
        self._ray = ray
        return self

    def __exit__(self, *exc) -> None:
        for host in self._hosts:
            self._ray.kill(host)
        self._hosts = []
        self._distributor.__exit__(*exc)

    def locate(self, row: int) -> tuple[int, int]:
        """A global row as (shard, row in that shard's faces.parquet)."""
        shard = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return shard, int(row - self.offsets[shard])

    def _gather(self, calls, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._hosts:
            raise RuntimeError("open the sharded gallery with `with ShardedGallery(...) as gallery:` first")
        return merge_top_k(self._ray.get(calls), self.offsets, k)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows over every shard: distances (q, k), global rows (q, k)."""
        self._check_k(k)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return self._gather([host.search.remote(vectors, k) for host in self._hosts], k)

    def search_among(self, vectors: np.ndarray, k: int, targets) -> tuple[np.ndarray, np.ndarray]:
        """search_among over every shard: the k nearest rows whose kept value is each query's target."""
        self._check_k(k)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        targets = np.asarray(targets).astype(str)
        return self._gather([host.search_among.remote(vectors, k, targets) for host in self._hosts], k)

    def _check_k(self, k: int) -> None:
        if not 1 <= int(k) <= len(self):
            raise UserError(f"k={k} is out of range: the sharded gallery holds {len(self)} images (use 1 ≤ k ≤ {len(self)})")


def split_index(index: GalleryIndex, parts: int, out: str | Path) -> list[Path]:
    """Cut an index into `parts` shard folders of consecutive rows (out/shard-000, …), codes copied as they are.

    For the flat-code indexes (Flat, SQ, PQ, after a PCA or not): each shard holds the same codes, so a
    sharded search equals the whole index's. An IVF or HNSW index is built per shard instead.
    """
    if not 1 <= parts <= len(index):
        raise UserError(f"--shards {parts}: must be between 1 and the index's {len(index)} rows")
    whole = index.index
    inner = faiss.downcast_index(whole.index) if isinstance(whole, faiss.IndexPreTransform) else faiss.downcast_index(whole)
    if not isinstance(inner, faiss.IndexFlatCodes):
        raise UserError(f"a {index.info.factory} index cannot be cut into shards: build one index per part of the gallery")
    codes = faiss.vector_to_array(inner.codes).reshape(inner.ntotal, inner.code_size)
    bounds = np.linspace(0, len(index), parts + 1).round().astype(int)
    folders = []
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        shard = faiss.clone_index(whole)
        shard_inner = faiss.downcast_index(shard.index) if isinstance(shard, faiss.IndexPreTransform) else shard
        shard_inner.reset()
        shard_inner.add_sa_codes(np.ascontiguousarray(codes[start:stop]))
        if isinstance(shard, faiss.IndexPreTransform):
            shard.ntotal = shard_inner.ntotal
        info = replace(index.info, count=int(stop - start))
        part = GalleryIndex(shard, index.faces.iloc[start:stop].reset_index(drop=True), info, index.config,
                            pose_classifier=index.pose_classifier, projection=index.projection)
        folders.append(part.save(Path(out) / f"shard-{i:03d}"))
    return folders
