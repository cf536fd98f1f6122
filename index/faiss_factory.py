"""FAISS indexes from factory strings: create one, train it on a bounded sample, fill it chunk by chunk.

Training goes through here so that a leading PCA is fitted by an SVD (fit_pca) rather than by
faiss.PCAMatrix.train, which is cubic in the vector width, and so that a factory that needs more
training vectors than the gallery has is refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import faiss
import numpy as np
import torch
from tqdm import tqdm

from facedata.errors import UserError

IVF_POINTS_PER_LIST = 39  # FAISS's k-means wants ≥ 39 training points per centroid
EXACT_SVD_LIMIT = 2048  # PCA by exact SVD up to this min(n, d), randomized (svd_lowrank) above


@dataclass(frozen=True)
class IndexConfig:
    """How a gallery index is built and searched; saved in index.json."""

    factory: str = "Flat"  # a FAISS index_factory string: "Flat", "PCA256,Flat", "IVF256,PQ32", "HNSW32"
    layer: str | None = None  # feature layer; None = the generator's default (its refiner's middle layer)
    batch_size: int = 256  # gallery images per chunk; pose normalization generates V× as many
    train_size: int = 20_000  # most vectors used to train PCA / IVF / PQ
    train_memory: int = 1 << 30  # bytes the training sample may take (caps train_size for large d)
    nprobe: int = 16  # IVF lists visited per query
    ef_search: int = 64  # HNSW search depth
    ef_construction: int = 40  # HNSW build depth (FAISS's default); deeper builds a better-connected graph, slower
    seed: int = 0  # picks the training sample
    gpu: bool = True  # search on all GPUs when faiss-gpu is installed and a GPU is present
    views: str = "kept"  # "kept": each face in its kept value (§4.1.2); "all": every value side by side
    normalize: str = "full"  # how the kept value is found: "full" (§4.1.2), "classifier", "none" (index.pose_normalize)


# An all-views index's default, by gallery size: on KDEF val, the factory whose top hit is most often exact
# search's at ≤ 4 KB a face and ≤ 5 ms one query (benchmarks/bench_compact.py, docs/speed.md), among those
# a gallery of that many faces can fit (a PCA to p dimensions needs ≥ p faces)
ALL_VIEWS_FACTORIES = (
    "VIEWPCA256,SQ8",  # 1,280 B a face, ≥ 256 faces: top-1 as exact search's for 95.3 % of val queries
    "VIEWPCA128,SQ8",  # 640 B, 128 to 255 faces: 92.1 %
    "VIEWPCA64,Flat",  # 1,280 B, 64 to 127 faces: 90.2 %
)


def leading_width(factory: str) -> int:
    """The width of a factory's leading PCA ("PCA128,…" or, per view, "VIEWPCA128,…"), 0 without one: the
    fewest vectors that can fit it."""
    head = factory.split(",")[0]
    digits = head.removeprefix("VIEW").removeprefix("PCA")
    return int(digits) if head.removeprefix("VIEW").startswith("PCA") and digits.isdigit() else 0


def default_factory(views: str, count: int) -> str:
    """The factory a build takes when none is given: Flat for kept views; for all views (V·d floats a face,
    328 KB on KDEF) the first of ALL_VIEWS_FACTORIES the gallery can fit, else Flat."""
    for factory in ALL_VIEWS_FACTORIES:
        if views == "all" and count >= leading_width(factory):
            return factory
    return "Flat"


def new_index(factory: str, dimension: int) -> faiss.Index:
    """An empty FAISS index for `factory` over `dimension`-d vectors, or a UserError naming the factory."""
    try:
        index = faiss.index_factory(int(dimension), factory, faiss.METRIC_L2)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "rejected"
        raise UserError(
            f"index factory '{factory}' does not work for {dimension}-d vectors ({reason}); "
            f"e.g. 'Flat', 'PCA256,Flat', 'IVF256,PQ16' (PQ's m must divide the dimension), 'HNSW32'"
        ) from None
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if hasattr(inner, "do_polysemous_training"):
        # The factory turns on polysemous training for PQ (≈ 25 s of annealing per 8 sub-quantizers);
        # it only serves Hamming pre-filtering, which our searches never use, so results are the same.
        inner.do_polysemous_training = False
    return index


def _leading_pca(index: faiss.Index) -> faiss.PCAMatrix | None:
    """The PCA transform an index applies first (factories "PCA…,"), if any."""
    if isinstance(index, faiss.IndexPreTransform) and index.chain.size() > 0:
        transform = faiss.downcast_VectorTransform(index.chain.at(0))
        if isinstance(transform, faiss.PCAMatrix):
            return transform
    return None


def training_requirement(index: faiss.Index) -> tuple[int, str]:
    """The fewest training vectors this index accepts, and why: IVF 39 × nlist, PQ 2^nbits, PCA d_out."""
    need, why = 0, ""
    pca = _leading_pca(index)
    if pca is not None:
        if pca.d_out > pca.d_in:
            raise UserError(f"PCA{pca.d_out} reduces {pca.d_in}-d vectors to more dimensions than they have")
        need, why = pca.d_out, f"PCA to {pca.d_out} dimensions"
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None and IVF_POINTS_PER_LIST * ivf.nlist > need:
        need, why = IVF_POINTS_PER_LIST * ivf.nlist, f"{IVF_POINTS_PER_LIST} × {ivf.nlist} IVF lists"
    pq = getattr(faiss.downcast_index(inner), "pq", None)
    if pq is not None and pq.ksub > need:
        need, why = int(pq.ksub), f"{pq.ksub} PQ centroids per sub-quantizer"
    return need, why


def fit_pca(sample: np.ndarray, d_out: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of a sample (n, d): mean (d,), components (d_out, d), eigenvalues (d_out,), all float32.

    faiss.PCAMatrix.train is cubic in min(n, d) (hours for 20,860 × 32,768); an SVD of the centred
    sample gives the same components, exactly for small samples and with torch.svd_lowrank (randomized,
    4 power iterations, its random start drawn from `seed` and not from torch's global generator)
    when min(n, d) > EXACT_SVD_LIMIT.
    """
    n, d = sample.shape
    assert 1 <= d_out <= min(n, d), (d_out, sample.shape)
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    mean = x.mean(dim=0)
    centred = x - mean
    if min(n, d) <= EXACT_SVD_LIMIT:
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    else:
        with torch.random.fork_rng():  # the caller's generator is left as it was
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(centred, q=min(d_out + 16, n, d), niter=4)
        vh = v.T
    return mean.numpy(), np.ascontiguousarray(vh[:d_out].numpy()), (s[:d_out] ** 2 / n).numpy()


def train_index(index: faiss.Index, sample: np.ndarray, seed: int = 0) -> None:
    """Train an index on a sample (n, d), fitting a leading PCA ourselves (see fit_pca) and the rest with FAISS."""
    pca = _leading_pca(index)
    if pca is not None and not pca.is_trained:
        mean, components, eigenvalues = fit_pca(sample, pca.d_out, seed)
        faiss.copy_array_to_vector(mean.astype(np.float32), pca.mean)
        faiss.copy_array_to_vector(eigenvalues.astype(np.float32), pca.eigenvalues)
        faiss.copy_array_to_vector(components.astype(np.float32).ravel(), pca.PCAMat)
        pca.is_trained = True
        pca.prepare_Ab()
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))


def training_sample_size(config: IndexConfig, dimension: int, count: int) -> int:
    """How many vectors train the index: the gallery, capped by train_size and train_memory."""
    return int(min(count, config.train_size, max(1, config.train_memory // (4 * dimension))))


def plan_training(index: faiss.Index, config: IndexConfig, count: int) -> int:
    """How many of `count` vectors will train this index (0: it needs no training), or a UserError if too few."""
    if index.is_trained:
        return 0
    need, why = training_requirement(index)
    train_count = training_sample_size(config, index.d, count)
    if train_count < need:
        cap = "" if train_count == count else f" (capped from {count} by train_size={config.train_size}, train_memory={config.train_memory} bytes)"
        raise UserError(
            f"index factory '{config.factory}' needs ≥ {need} training vectors ({why}); "
            f"the gallery gives {train_count}{cap}: use a smaller factory (e.g. 'Flat') or a larger gallery"
        )
    return train_count


def trained_index(config: IndexConfig, dimension: int, count: int,
                  take: Callable[[np.ndarray], np.ndarray]) -> tuple[faiss.Index, int]:
    """An empty index for the config (an HNSW one built at config.ef_construction), trained on its seeded
    sample of the `count` vectors, and the sample's size.

    The sample: training_sample_size() positions drawn at random (seeded by config.seed), read through
    `take`; every build of the same vectors and config trains the same index.
    """
    index = new_index(config.factory, dimension)
    hnsw = getattr(faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index), "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = int(config.ef_construction)  # before any vector goes in
    train_count = plan_training(index, config, count)
    if train_count:
        positions = np.sort(np.random.default_rng(config.seed).choice(count, size=train_count, replace=False))
        train_index(index, take(positions), config.seed)
    return index, train_count


def fill_index(
    config: IndexConfig, dimension: int, count: int,
    take: Callable[[np.ndarray], np.ndarray], chunks: Callable[[], Iterator[np.ndarray]], progress: bool = False,
) -> tuple[faiss.Index, int]:
    """A trained index holding all `count` vectors, and how many trained it.

    Memory stays bounded: a trained factory first trains on a sample of at most
    training_sample_size() vectors, drawn at random positions (seeded) through `take`; then the
    vectors are added one chunk at a time from `chunks()`.
    """
    index, train_count = trained_index(config, dimension, count, take)
    add_chunks(index, chunks, count, f"add to {config.factory}", progress)
    return index, train_count


def add_chunks(index: faiss.Index, chunks: Callable[[], Iterator[np.ndarray]], count: int, desc: str,
               progress: bool = False, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Add the `count` vectors of `chunks()` to a trained index one chunk at a time, each through `transform` if given."""
    bar = tqdm(total=count, desc=desc, unit="vec", disable=not progress)
    for chunk in chunks():
        vectors = np.ascontiguousarray(chunk, dtype=np.float32)
        index.add(vectors if transform is None else transform(vectors))
        bar.update(len(chunk))
    bar.close()
    assert index.ntotal == count, (index.ntotal, count)


def set_search_parameters(index: faiss.Index, config: IndexConfig) -> None:
    """Apply the config's search depth: nprobe for IVF lists, efSearch for HNSW."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        ivf.nprobe = min(int(config.nprobe), ivf.nlist)
    hnsw = getattr(faiss.downcast_index(inner), "hnsw", None)
    if hnsw is not None:
        hnsw.efSearch = int(config.ef_search)
