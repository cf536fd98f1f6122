"""Pose-normalized gallery features computed chunk by chunk into an on-disk cache that a rerun resumes.

The cache is a folder of `chunk-000000.<key>.npy` (L2-normalized float32 vectors of gallery positions
[i·chunk_size, (i+1)·chunk_size)) and `chunk-000000.<key>.kept.npy` (kept target codes), plus
`build.json`, the fingerprint of what the chunks were computed from (model hash, layer, gallery, chunk
size); `<key>` is the start of that fingerprint's sha256, so every chunk names the model and config
that made it. Each chunk file is written atomically, the vectors last, so a chunk exists whole or not
at all; a rerun skips only the chunks carrying its own key, and any other fingerprint in build.json
starts the cache afresh. Callers hold a lock on the cache (index.faiss_index.build_index) so that two
builds never write into one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from facedata.atomic import atomic_file
from facedata.errors import UserError
from facedata.faceset import FaceSet
from index.pose_normalize import check_normalize, classified_kept, normalize_batch, normalize_features

EVERY_VALUE_BYTES = 1 << 30  # every view of a batch of faces held at once, up to this (value_views)

VIEWS = ("kept", "all")

STATE_FILE = "build.json"
CACHE_VERSION = 2


def chunk_key(state: dict) -> str:
    """The first 16 hex digits of the sha256 of a cache fingerprint (model hash, layer, gallery, chunk size)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def chunk_file(folder: Path, i: int, key: str, suffix: str = ".npy") -> Path:
    """Where chunk i computed under fingerprint `key` lives: a chunk of another model or config has another name."""
    return folder / f"chunk-{i:06d}.{key}{suffix}"


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, (n, d) float32; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    assert vectors.ndim == 2, vectors.shape
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, np.finfo(np.float32).tiny))


def value_views(generator, images: np.ndarray, layer: str | None = None,
                batch_size: int = 256, memory: int = EVERY_VALUE_BYTES) -> Iterator[np.ndarray]:
    """Each face generated in each value of the vocabulary in turn: one (n, d) L2-normalized view per value.

    Where every view of every face fits in `memory` bytes, the faces go through the generator's
    every-value pass (each source encoded once, no pictures decoded: about 60 % of V passes' arithmetic);
    otherwise one value at a time over all faces, one view in memory at a time.
    """
    values = list(generator.vocabulary)
    images = np.asarray(images)
    if len(images) * len(values) * generator.feature_dim(layer) * 4 <= memory:
        every, _ = generator.every_value(images, layer, batch_size=batch_size)
        for v in range(len(values)):
            yield l2_normalize(every[:, v])
        return
    for value in values:
        yield l2_normalize(generator.features(images, [value] * len(images), layer=layer, batch_size=batch_size))


def all_value_features(generator, images: np.ndarray, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
    """Each face generated in every value, its V views' L2-normalized features side by side, over √V: (n, V·d).

    Beyond the paper (retrieval/multi_view.py): the squared L2 between two such unit vectors is the
    mean of the V per-view squared distances, so one FAISS search compares two faces in every pose.
    The vector does not depend on a query's target; the target is enforced by the gallery's kept value.
    """
    views = list(value_views(generator, images, layer, batch_size))
    return np.ascontiguousarray(np.concatenate(views, axis=1) / np.float32(np.sqrt(len(views))))


@dataclass(frozen=True)
class FeatureChunks:
    """A complete cache of gallery feature chunks: read vectors and kept codes back chunk by chunk."""

    folder: Path
    count: int
    dimension: int
    chunk_size: int
    key: str  # chunk_key of the fingerprint the chunks were computed from

    @property
    def num_chunks(self) -> int:
        return -(-self.count // self.chunk_size)

    def vectors(self, i: int) -> np.ndarray:
        """Chunk i's vectors, (b, d) float32, memory-mapped."""
        return np.load(chunk_file(self.folder, i, self.key), mmap_mode="r")

    def missing(self, pixels: bool = False) -> list[int]:
        """The chunk ids not (or not wholly) in the cache yet; with `pixels`, their indexed images count too."""
        return [i for i in range(self.num_chunks) if not chunk_complete(self.folder, i, self.key, pixels)]

    def pixels(self, i: int) -> np.ndarray:
        """Chunk i's indexed images, (b, H·W) float32 0–255, memory-mapped (caches computed with pixels)."""
        return np.load(chunk_file(self.folder, i, self.key, ".pixels.npy"), mmap_mode="r")

    def kept(self) -> np.ndarray:
        """Every gallery image's kept target code, (count,) int64."""
        return np.concatenate([np.load(chunk_file(self.folder, i, self.key, ".kept.npy")) for i in range(self.num_chunks)])

    def iter_vectors(self) -> Iterator[np.ndarray]:
        """Chunks in gallery order, (b, d) float32 each, one in memory at a time."""
        for i in range(self.num_chunks):
            yield np.asarray(self.vectors(i))

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at sorted gallery positions, (len(positions), d) float32 (a training sample)."""
        positions = np.asarray(positions, dtype=np.int64)
        assert np.all(np.diff(positions) > 0), "positions must be sorted and unique"
        chunk_of = positions // self.chunk_size
        parts = [np.asarray(self.vectors(int(i))[positions[chunk_of == i] - i * self.chunk_size]) for i in np.unique(chunk_of)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float32)


def compute_feature_chunks(
    generator, gallery: FaceSet, folder: Path, layer: str, chunk_size: int, progress: bool = True,
    views: str = "kept", normalize: str = "full", classifier=None, pixels: bool = False,
    only: Iterable[int] | None = None, pose_images: str | None = None,
) -> FeatureChunks:
    """Fill `folder` with the gallery's pose-normalized feature chunks, reusing those a previous run left.

    `views` "kept": each face's features generated in its kept value; "all": all_value_features.
    `normalize` (index.pose_normalize.NORMALIZE_MODES) chooses how the kept value is found, with
    `classifier` (index.pose_classifier) for the cheap modes; `pixels` also keeps the indexed image
    of each face (`.pixels.npy` chunks), which the benchmark's pixel rows search.
    `only`: compute just these chunk ids (a shard of a distributed build, index.sharded); the cache is
    then left incomplete, and `dimension` is 0 while no chunk exists yet.
    `pose_images`: a FaceSet folder of the gallery's FaceSet's faces at source resolution, row for row
    (facedata.faceset.same_faces_at_resolution), which the classifier reads instead of the crops.
    """
    if views not in VIEWS:
        raise UserError(f"unknown views '{views}' (valid: {', '.join(VIEWS)})")
    check_normalize(normalize, classifier)
    pose_source = FaceSet.open(pose_images) if pose_images is not None and normalize != "full" else None
    if views == "all" and pixels:
        raise UserError("views 'all' keeps no indexed images (pixels) per face")
    folder = Path(folder)
    state = {
        "cache_version": CACHE_VERSION,
        "checkpoint_hash": generator.checkpoint_hash,
        "layer": layer,
        "gallery": gallery.fingerprint(),
        "count": len(gallery),
        "chunk_size": int(chunk_size),
        **({"views": views} if views != "kept" else {}),  # caches of kept views keep their key
        **({"normalize": normalize, "classifier": classifier.fingerprint} if normalize != "full" else {}),
        **({"pose_images": pose_source.fingerprint()} if pose_source is not None else {}),
        **({"pixels": True} if pixels else {}),
    }
    _open_cache(folder, state)
    key = chunk_key(state)
    num_chunks = -(-len(gallery) // chunk_size)
    done = {i for i in range(num_chunks) if chunk_complete(folder, i, key, pixels)}
    dimension = None
    bar = tqdm(total=len(gallery), desc="gallery features", unit="img", disable=not progress)
    wanted = set(range(num_chunks)) if only is None else set(only)
    for i in range(num_chunks):
        positions = range(i * chunk_size, min((i + 1) * chunk_size, len(gallery)))
        if i in done or i not in wanted:
            bar.update(len(positions))
            continue
        chunk = gallery.take(positions)
        images = chunk.images
        read = pose_source.take(chunk.rows).images if pose_source is not None else None  # what the classifier reads
        if views == "all":
            kept = (normalize_batch(generator, images, chunk_size).kept if normalize == "full"
                    else classified_kept(generator, classifier, images if read is None else read))
            features = all_value_features(generator, images, layer=layer, batch_size=chunk_size)
        else:
            batch = normalize_features(generator, images, layer, normalize, classifier, chunk_size, pixels, read)
            features, kept = batch.features, batch.kept
            if pixels:
                with atomic_file(chunk_file(folder, i, key, ".pixels.npy")) as tmp:
                    np.save(tmp, batch.pixels, allow_pickle=False)
        with atomic_file(chunk_file(folder, i, key, ".kept.npy")) as tmp:
            np.save(tmp, kept, allow_pickle=False)
        with atomic_file(chunk_file(folder, i, key)) as tmp:
            np.save(tmp, l2_normalize(features), allow_pickle=False)
        dimension = features.shape[1]
        bar.update(len(images))
    bar.close()
    if dimension is None:  # every chunk came from the cache (or, with `only`, none was computed)
        present = sorted(done)
        dimension = int(np.load(chunk_file(folder, present[0], key), mmap_mode="r").shape[1]) if present else 0
    return FeatureChunks(folder=folder, count=len(gallery), dimension=dimension, chunk_size=int(chunk_size), key=key)


def chunk_complete(folder: Path, i: int, key: str, pixels: bool = False) -> bool:
    """Whether chunk i's files (vectors, kept codes, and indexed images with `pixels`) exist and open whole;
    a damaged chunk is computed again."""
    for suffix in (".npy", ".kept.npy") + ((".pixels.npy",) if pixels else ()):
        try:
            np.load(chunk_file(folder, i, key, suffix), mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return False
    return True


def _open_cache(folder: Path, state: dict) -> None:
    """Keep a cache built from the same inputs; otherwise start it empty with this state."""
    state_file = folder / STATE_FILE
    if state_file.is_file():
        try:
            if json.loads(state_file.read_text()) == state:
                return
        except ValueError:
            pass
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: the build cache's place holds a regular file; remove it or write to another --out")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with atomic_file(state_file) as tmp:
        tmp.write_text(json.dumps(state, indent=2) + "\n")
