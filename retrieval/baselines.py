"""The paper's 2-step retrieval baselines (§4.1.2).

(1) a pose classifier keeps the gallery images predicted to be in the target pose; (2) those are
ranked by squared L2 distance between L2-normalized vectors — raw pixels (pixel_vectors) or the
generator's features (reconstruction_features). Ours is retrieval.search.search_by_generation.
"""

from __future__ import annotations

import numpy as np

from facedata.errors import UserError
from index.features import l2_normalize
from index.pose_classifier import PoseClassifier, PoseClassifierConfig, standardized_pixels  # noqa: F401 (step 1)


def pixel_vectors(images: np.ndarray) -> np.ndarray:
    """Raw pixels as L2-normalized vectors, (n, H·W) float32 (baseline (a))."""
    images = np.asarray(images)
    assert images.ndim == 3, images.shape
    return l2_normalize(images.reshape(len(images), -1))


def reconstruction_features(generator, images: np.ndarray, poses, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
    """The generator's features of images asked to keep their pose, (n, d) float32 (baseline (b)).

    The network needs a target; for an unedited image the natural one is its own pose, which the
    baseline does not know, so it passes the pose classifier's prediction — for gallery and query
    images alike — and no ground truth enters the baseline.
    """
    return np.asarray(generator.features(images, poses, layer=layer, batch_size=batch_size), dtype=np.float32)


def two_step_search(
    query_vectors: np.ndarray, gallery_vectors: np.ndarray, gallery_pred: np.ndarray, targets: np.ndarray,
    k: int, batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """2-step retrieval: keep gallery rows predicted as the query's target, rank them by distance.

    Returns distances (q, k) float32 and gallery rows (q, k) int64, both L2-normalized sides compared
    by squared L2; when fewer than k rows survive the filter the rest is row -1, distance inf. Equal
    distances rank the lower gallery row first (a stable sort over rows in gallery order).
    """
    query_vectors = l2_normalize(query_vectors)
    gallery_vectors = l2_normalize(gallery_vectors)
    gallery_pred, targets = np.asarray(gallery_pred).astype(str), np.asarray(targets).astype(str)
    q, g = len(query_vectors), len(gallery_vectors)
    assert query_vectors.shape[1] == gallery_vectors.shape[1], (query_vectors.shape, gallery_vectors.shape)
    assert gallery_pred.shape == (g,) and targets.shape == (q,), (gallery_pred.shape, targets.shape)
    if g == 0:
        raise UserError("the gallery is empty: nothing to search")
    if not 1 <= int(k) <= g:
        raise UserError(f"k={k} is out of range: the gallery holds {g} images (use 1 ≤ k ≤ {g})")
    rows = np.full((q, k), -1, dtype=np.int64)
    distances = np.full((q, k), np.inf, dtype=np.float32)
    gallery_sq = np.square(gallery_vectors).sum(axis=1)
    for target in np.unique(targets):
        candidates = np.flatnonzero(gallery_pred == target)  # ascending rows: the stable sort's tie order
        if len(candidates) == 0:
            continue
        keep = min(k, len(candidates))
        cand_vectors, cand_sq = gallery_vectors[candidates], gallery_sq[candidates]
        queries = np.flatnonzero(targets == target)
        for start in range(0, len(queries), batch_size):
            chosen = queries[start : start + batch_size]
            qv = query_vectors[chosen]
            d2 = np.square(qv).sum(axis=1)[:, None] + cand_sq[None, :] - 2.0 * (qv @ cand_vectors.T)  # (b, c)
            d2 = np.maximum(d2, 0.0)
            order = np.argsort(d2, axis=1, kind="stable")[:, :keep]
            rows[chosen, :keep] = candidates[order]
            distances[chosen, :keep] = np.take_along_axis(d2, order, axis=1)
    return distances, rows


def two_step_rank(query_vectors: np.ndarray, gallery_vectors: np.ndarray, gallery_pred: np.ndarray,
                  targets: np.ndarray, k: int) -> np.ndarray:
    """The gallery rows of two_step_search, (q, k) int64, -1 where fewer than k survive the pose filter."""
    return two_step_search(query_vectors, gallery_vectors, gallery_pred, targets, k)[1]
