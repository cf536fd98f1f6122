"""A PCA per view for an index of all views: each view's d columns projected to p, before FAISS.

An all-views vector (index.features.all_value_features) is V unit views side by side over √V. One PCA
over the whole V·d width reads a (P, V·d) matrix for every query, and its P components are shared by
all V views. A PCA per view keeps V·p components, p for each view, and a query reads only V·p·d floats:
on KDEF val a PCA of 128 per view (640 dimensions) agrees with exact search on 93.6 % of top hits,
against 84.5 % for a joint PCA of 128 whose projection reads the same bytes (benchmarks/bench_compact.py).
FAISS has no block-diagonal transform (a dense LinearTransform would read V times more), so the
projection runs here, in torch, and the FAISS index holds the projected V·p-d vectors. Its factory
string reads "VIEWPCA{p},{faiss factory}"; the projection is saved beside the index as safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import faiss
import numpy as np
import torch

from facedata.atomic import atomic_file
from facedata.errors import UserError
from index.faiss_factory import IndexConfig, add_chunks, fit_pca, new_index, plan_training, trained_index, training_sample_size

PREFIX = "VIEWPCA"
PROJECTION_FILE = "view_pca.safetensors"


def split_factory(factory: str) -> tuple[int | None, str]:
    """("VIEWPCA64,SQ8" → (64, "SQ8")); a factory without the prefix → (None, factory)."""
    head, _, rest = factory.partition(",")
    if not head.startswith(PREFIX):
        return None, factory
    width = head[len(PREFIX):]
    if not width.isdigit() or int(width) < 1 or not rest:
        raise UserError(f"index factory '{factory}': write {PREFIX}p,FACTORY, e.g. '{PREFIX}64,SQ8' "
                        "(a PCA to p dimensions per view, then a FAISS factory over the V·p)")
    return int(width), rest


@dataclass(frozen=True)
class ViewPCA:
    """V per-view projections: x (n, V·d) → ((x_v − mean_v) · components_vᵀ)_v, (n, V·p) float32."""

    mean: np.ndarray  # (V, d) float32
    components: np.ndarray  # (V, p, d) float32, each view's leading principal axes

    def __post_init__(self):
        assert self.mean.ndim == 2 and self.components.ndim == 3, (self.mean.shape, self.components.shape)
        assert self.components.shape[0] == self.mean.shape[0] and self.components.shape[2] == self.mean.shape[1]

    @property
    def views(self) -> int:
        return int(self.mean.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.mean.shape[0] * self.mean.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.components.shape[0] * self.components.shape[1])

    @classmethod
    def fit(cls, sample: np.ndarray, views: int, width: int, seed: int = 0) -> "ViewPCA":
        """Each view's PCA (faiss_factory.fit_pca) of a training sample (n, V·d) to `width` dimensions."""
        n, total = sample.shape
        if views < 1 or total % views:
            raise UserError(f"{PREFIX}{width}: {total}-d vectors do not split into {views} views")
        d = total // views
        if not 1 <= width <= min(n, d):
            raise UserError(f"{PREFIX}{width}: each view's PCA needs 1 ≤ p ≤ min(training vectors {n}, view width {d})")
        fits = [fit_pca(sample[:, v * d : (v + 1) * d], width, seed) for v in range(views)]
        return cls(np.stack([mean for mean, _, _ in fits]), np.stack([components for _, components, _ in fits]))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """The projected vectors (n, V·p) of all-views vectors (n, V·d)."""
        vectors = np.require(vectors, np.float32, ["C", "W"])  # torch takes writable arrays; a copy only if not
        assert vectors.ndim == 2 and vectors.shape[1] == self.d_in, (vectors.shape, self.d_in)
        v, d = self.mean.shape
        x = torch.from_numpy(vectors).view(len(vectors), v, d).transpose(0, 1)  # (V, n, d)
        centred = x - torch.from_numpy(self.mean)[:, None, :]
        projected = torch.bmm(centred, torch.from_numpy(self.components).transpose(1, 2))  # (V, n, p)
        return np.ascontiguousarray(projected.transpose(0, 1).reshape(len(vectors), self.d_out).numpy())

    def save(self, path: str | Path) -> None:
        """One safetensors file (no pickle), written atomically."""
        from safetensors.numpy import save_file

        with atomic_file(Path(path)) as tmp:
            save_file({"mean": np.ascontiguousarray(self.mean), "components": np.ascontiguousarray(self.components)},
                      str(tmp), metadata={"format": PREFIX})

    @classmethod
    def load(cls, path: str | Path) -> "ViewPCA":
        """The projection save() wrote, or a UserError naming the file."""
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: missing (a {PREFIX} index keeps its per-view projection there)")
        try:
            arrays = load_file(str(path))
            return cls(arrays["mean"].astype(np.float32), arrays["components"].astype(np.float32))
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise UserError(f"{path}: unreadable per-view projection ({str(exc)[:120] or type(exc).__name__})") from None


def faiss_dimension(factory: str, dimension: int, views: int) -> int:
    """The width of the vectors the FAISS index holds: V·p after a per-view PCA, else `dimension`."""
    width, _ = split_factory(factory)
    return dimension if width is None else views * width


def plan_build(config: IndexConfig, dimension: int, count: int, views: int) -> int:
    """How many of `count` vectors will train the index (faiss_factory.plan_training), refusing before any work
    a per-view PCA wider than a view or than its training sample."""
    width, inner = split_factory(config.factory)
    if width is None:
        return plan_training(new_index(config.factory, dimension), config, count)
    sample = training_sample_size(config, dimension, count)
    if views < 1 or dimension % views:
        raise UserError(f"index factory '{config.factory}': {dimension}-d vectors do not split into {views} views")
    if width > min(sample, dimension // views):
        raise UserError(f"index factory '{config.factory}': a PCA to {width} dimensions per view needs ≥ {width} "
                        f"training vectors and views of ≥ {width} dimensions; it has {sample} vectors of "
                        f"{views} × {dimension // views}: use a smaller p")
    plan_training(new_index(inner, views * width), replace(config, factory=inner), sample)
    return sample


def trained_index_for(config: IndexConfig, dimension: int, count: int, views: int,
                      take: Callable[[np.ndarray], np.ndarray]) -> tuple[ViewPCA | None, faiss.Index, int]:
    """faiss_factory.trained_index for any factory: with a "VIEWPCA{p}," prefix, a per-view PCA fitted on the
    config's seeded sample of the `count` vectors and an empty FAISS index of the factory's rest trained on the
    projected sample; otherwise no projection. Then the sample's size."""
    width, inner = split_factory(config.factory)
    if width is None:
        return (None, *trained_index(config, dimension, count, take))
    train_count = plan_build(config, dimension, count, views)
    positions = np.sort(np.random.default_rng(config.seed).choice(count, size=train_count, replace=False))
    sample = np.asarray(take(positions), dtype=np.float32)
    projection = ViewPCA.fit(sample, views, width, config.seed)
    projected = projection.apply(sample)
    index, _ = trained_index(replace(config, factory=inner), projection.d_out, len(projected),
                             lambda rows: projected[rows])
    return projection, index, train_count


def fill_projected_index(
    config: IndexConfig, dimension: int, count: int, views: int,
    take: Callable[[np.ndarray], np.ndarray], chunks: Callable[[], Iterator[np.ndarray]], progress: bool = False,
) -> tuple[ViewPCA | None, faiss.Index, int]:
    """faiss_factory.fill_index for any factory: the per-view PCA if the factory has one (trained_index_for),
    and the index holding every vector, projected by it."""
    projection, index, train_count = trained_index_for(config, dimension, count, views, take)
    add_chunks(index, chunks, count, f"add to {config.factory}", progress,
               None if projection is None else projection.apply)
    return projection, index, train_count
