"""A gallery build split into shards that workers compute, giving the index one process would build.

Two steps run on a distributor's workers (index.distribute):
1. Features: each worker loads the generator from its checkpoint and reopens the gallery from its folder
   (the same rows; gallery fingerprint and model hash checked), then computes whole chunks into the
   shared cache folder (index.features), one chunk per task. The driver checks that every chunk is there.
2. IVF lists: the driver trains the empty index on the same seeded sample as a one-process build
   (faiss_factory.trained_index); each worker adds a contiguous run of chunks to a copy under their
   gallery positions and writes a shard index; the driver merges the shards' lists into an on-disk
   file (index.ondisk_lists). Other factories (Flat, PCA…,Flat, HNSW) are filled by the driver from
   the cache in gallery order, exactly as one process fills them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.atomic import atomic_file
from facedata.errors import UserError
from facedata.faceset import FaceSet
from index import faiss_factory
from index.features import STATE_FILE, FeatureChunks, compute_feature_chunks
from index.ondisk_lists import LISTS_FILE, can_merge_lists, merge_shards
from index.view_pca import ViewPCA, faiss_dimension, fill_projected_index, split_factory, trained_index_for


@dataclass(frozen=True)
class FeatureJob:
    """What a worker needs to compute gallery chunks as the driver would: paths, rows, options, fingerprints."""

    model: str  # the checkpoint folder, absolute
    device: str
    gallery: str  # the FaceSet folder, absolute
    rows: np.ndarray  # (n,) int64: the gallery's rows of the folder's images.npy, in gallery order
    fingerprint: str  # FaceSet.fingerprint of the driver's gallery: its images and labels
    checkpoint_hash: str
    cache: str  # the build cache folder, absolute
    options: dict  # compute_feature_chunks keywords: layer, chunk_size, views
    key: str  # the cache key the driver opened the cache with


def feature_job(generator, gallery: FaceSet, cache: Path, options: dict, key: str) -> FeatureJob:
    """The job for this build, or a UserError when the model or gallery cannot be reopened by path."""
    if getattr(generator, "path", None) is None:
        raise UserError("a distributed build loads the model from its checkpoint folder on each worker: load it with Generator.load")
    if gallery.root is None:
        raise UserError(f"{gallery.info.name}: a distributed build reads the gallery from its folder on each worker: "
                        "write it first (FaceSet.write) and open it from there")
    return FeatureJob(
        model=os.path.abspath(generator.path), device=str(getattr(generator, "device", "cpu")),
        gallery=os.path.abspath(gallery.root),
        rows=np.asarray(gallery.rows, dtype=np.int64), fingerprint=gallery.fingerprint(),
        checkpoint_hash=generator.checkpoint_hash, cache=os.path.abspath(cache), options=dict(options), key=key,
    )


def reopen_gallery(job: FeatureJob) -> FaceSet:
    """The driver's gallery, read from its folder: the same rows in the same order, or a UserError."""
    opened = FaceSet.open(job.gallery)
    positions = pd.Index(opened.rows).get_indexer(job.rows)
    if (positions < 0).any():
        raise UserError(f"{job.gallery}: holds {len(opened)} images on {socket.gethostname()}, fewer than the gallery's rows need")
    gallery = opened.take(positions)
    if gallery.fingerprint() != job.fingerprint:
        raise UserError(f"{job.gallery}: on {socket.gethostname()} this folder's faces differ from the gallery being built "
                        "(changed on disk, or edited in memory before the build)")
    return gallery


class ChunkWorker:
    """Computes gallery feature chunks into the shared cache; the model and gallery are loaded once."""

    def __init__(self, job: FeatureJob):
        from generator.inference import Generator

        cache = Path(job.cache)
        if not (cache / STATE_FILE).is_file():
            raise UserError(f"{cache}: no build cache here on {socket.gethostname()}; the cache folder (beside --out) "
                            "must be on a filesystem every Ray node shares")
        self.generator = Generator.load(job.model, job.device)
        if self.generator.checkpoint_hash != job.checkpoint_hash:
            raise UserError(f"{job.model}: on {socket.gethostname()} this checkpoint is model {self.generator.checkpoint_hash[:12]}…, "
                            f"the build's is {job.checkpoint_hash[:12]}…")
        self.gallery = reopen_gallery(job)
        self.job = job

    def __call__(self, chunk: int) -> int:
        job = self.job
        computed = compute_feature_chunks(self.generator, self.gallery, Path(job.cache), progress=False, only=[chunk], **job.options)
        assert computed.key == job.key, (computed.key, job.key)
        return chunk


def missing_chunks(chunks: FeatureChunks) -> list[int]:
    """The chunk ids not wholly in the cache yet (FeatureChunks.missing: the rule a resumed build uses)."""
    return chunks.missing()


def chunk_length(chunks: FeatureChunks, i: int) -> int:
    """How many gallery images chunk i holds (the last one may be short)."""
    return min(chunks.chunk_size, chunks.count - i * chunks.chunk_size)


def compute_chunks(distributor, generator, gallery: FaceSet, cache: Path, options: dict, progress: bool = True) -> str:
    """Fill the cache with every chunk, computed by the distributor's workers; the cache key they used.

    The driver opens the cache (keeping chunks of an interrupted run of the same build) and hands out
    only the missing chunks; a chunk still missing afterwards means the workers wrote elsewhere.
    """
    opened = compute_feature_chunks(generator, gallery, cache, progress=False, only=(), **options)
    todo = missing_chunks(opened)
    if todo:
        job = feature_job(generator, gallery, cache, options, opened.key)
        done = len(gallery) - sum(chunk_length(opened, i) for i in todo)
        bar = tqdm(total=len(gallery), initial=done, desc=f"gallery features ({distributor.workers} workers)",
                   unit="img", disable=not progress)
        for chunk in distributor.map(partial(ChunkWorker, job), todo):
            bar.update(chunk_length(opened, chunk))
        bar.close()
    left = missing_chunks(opened)
    if left:
        raise UserError(f"{cache}: chunks {left[:5]} are missing after the workers finished; the cache folder "
                        "must be on a filesystem every worker shares")
    return opened.key


def shard_ranges(num_chunks: int, shards: int) -> list[tuple[int, int, int]]:
    """(shard, first chunk, end chunk) for `shards` contiguous, near-equal runs of chunks in gallery order."""
    shards = max(1, min(int(shards), num_chunks))
    bounds = np.linspace(0, num_chunks, shards + 1).round().astype(int)
    return [(s, int(bounds[s]), int(bounds[s + 1])) for s in range(shards)]


def shard_file(folder: Path, shard: int, key: str) -> Path:
    """Where shard `shard`'s index lives in the cache."""
    return Path(folder) / f"shard-{shard:03d}.{key}.faiss"


class ShardWriter:
    """Adds runs of cached chunks to copies of one trained, empty index and writes each as a shard index."""

    def __init__(self, trained: np.ndarray, chunks: FeatureChunks, projection: ViewPCA | None = None):
        self.trained = trained  # faiss.serialize_index of the trained index, (bytes,) uint8
        self.chunks = chunks
        self.projection = projection  # the index's per-view PCA, applied to each chunk before it is added

    def __call__(self, shard: tuple[int, int, int]) -> tuple[int, str, int]:
        number, first, end = shard
        index = faiss.deserialize_index(self.trained)
        for i in range(first, end):
            vectors = np.ascontiguousarray(self.chunks.vectors(i), dtype=np.float32)
            vectors = vectors if self.projection is None else self.projection.apply(vectors)
            start = i * self.chunks.chunk_size
            index.add_with_ids(vectors, np.arange(start, start + len(vectors), dtype=np.int64))  # ids = gallery positions
        path = shard_file(self.chunks.folder, number, self.chunks.key)
        with atomic_file(path) as tmp:
            faiss.write_index(index, str(tmp))
        return number, str(path), int(index.ntotal)


def fill_index(distributor, config: faiss_factory.IndexConfig, chunks: FeatureChunks, views: int = 1,
               progress: bool = False) -> tuple[ViewPCA | None, faiss.Index, int]:
    """The per-view PCA if the factory has one (index.view_pca), the filled index and its training count:
    IVF lists added in shards on the workers, others here."""
    shards = shard_ranges(chunks.num_chunks, distributor.workers)
    inner = faiss_factory.new_index(split_factory(config.factory)[1], faiss_dimension(config.factory, chunks.dimension, views))
    if len(shards) < 2 or not can_merge_lists(inner):
        return fill_projected_index(config, chunks.dimension, chunks.count, views, chunks.take, chunks.iter_vectors, progress)
    projection, index, train_count = trained_index_for(config, chunks.dimension, chunks.count, views, chunks.take)
    writer = partial(ShardWriter, faiss.serialize_index(index), chunks, projection)
    bar = tqdm(total=chunks.count, desc=f"add to {config.factory} ({len(shards)} shards)", unit="vec", disable=not progress)
    files: dict[int, Path] = {}
    for number, path, added in distributor.map(writer, shards):
        files[number] = Path(path)
        bar.update(added)
    bar.close()
    merge_shards(index, [files[s] for s, _, _ in shards], chunks.folder / LISTS_FILE)
    assert index.ntotal == chunks.count, (index.ntotal, chunks.count)
    return projection, index, train_count
