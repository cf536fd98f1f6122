"""Ours over every value (beyond the paper): compare query and gallery faces generated in all V values.

The paper compares one generated view: the query generated in the target pose against each gallery
face regenerated in its kept pose. Here both faces are generated in every value of the edited factor
and their L2-normalized features are compared view by view; the mean squared distance over the V
views is the squared L2 distance of the concatenated views (divided by V), so it ranks as a FAISS
index of V·d-dimensional vectors would. The target value is enforced by the generator's own pose
evidence: only gallery faces whose pose normalization kept the target are ranked.

Averaging V views cancels much of what one generation gets wrong about a person, at V feature passes
per face. Query images drawn from the gallery share its features, so each view is computed once.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from index.features import value_views


def all_value_distances(generator, images: np.ndarray, query_rows: np.ndarray, layer: str | None = None,
                        batch_size: int = 256) -> np.ndarray:
    """Mean over the V values of squared L2 between normalized features: (len(query_rows), n) float32.

    `images` (n, H, W) uint8 are the gallery; each query is the gallery face at its row in `query_rows`.
    """
    return view_distances(generator, images, query_rows, None, layer, batch_size)[0]


def view_distances(generator, images: np.ndarray, query_rows: np.ndarray, targets: np.ndarray | None,
                   layer: str | None = None, batch_size: int = 256,
                   query_views: bool = False) -> tuple[np.ndarray, ...]:
    """From one pass over the V values: the all-values distances of `all_value_distances`, and with
    `targets` (one value per query row) the distance in the target's view alone, (len(query_rows), n)
    float32: the query and each gallery face both generated in the target value, the paper's single
    view with the gallery face generated in the query's target rather than in its own kept value.
    With `query_views` (and `targets`) also each query's own view in its target, (len(query_rows), d)
    L2-normalized: what a single-view search would generate for it, here at no extra pass.
    """
    images = np.asarray(images)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    assert images.ndim == 3 and query_rows.ndim == 1, (images.shape, query_rows.shape)
    unique, inverse = np.unique(query_rows, return_inverse=True)  # a face asked several times is computed once
    distances = np.zeros((len(unique), len(images)), dtype=np.float32)
    target, asked_views = None, None
    if targets is not None:
        targets = np.asarray(targets).astype(str)
        assert targets.shape == query_rows.shape, (targets.shape, query_rows.shape)
        target = np.full((len(query_rows), len(images)), np.inf, dtype=np.float32)
    views = value_views(generator, images, layer, batch_size)  # one view in memory at a time
    for value, view in tqdm(zip(generator.vocabulary, views), total=len(generator.vocabulary),
                            desc="all-value features", unit="value"):
        for start in range(0, len(unique), 1024):
            part = view[unique[start : start + 1024]]
            distances[start : start + len(part)] += 2.0 - 2.0 * (part @ view.T)
        if target is not None:
            asked = np.flatnonzero(targets == str(value))
            for start in range(0, len(asked), 1024):
                rows = asked[start : start + 1024]
                target[rows] = 2.0 - 2.0 * (view[query_rows[rows]] @ view.T)
            if query_views:
                if asked_views is None:
                    asked_views = np.zeros((len(query_rows), view.shape[1]), dtype=np.float32)
                asked_views[asked] = view[query_rows[asked]]
    found = ((distances / len(generator.vocabulary))[inverse], target)
    return (*found, asked_views) if query_views else found


def rank_among(distances: np.ndarray, gallery_values: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Gallery rows (q, k) by ascending distance among rows whose value is the query's target; -1 past them.

    Equal distances rank the lower gallery row first (a stable sort), as every other search here.
    """
    distances = np.asarray(distances, dtype=np.float32)
    gallery_values, targets = np.asarray(gallery_values).astype(str), np.asarray(targets).astype(str)
    q, g = distances.shape
    assert gallery_values.shape == (g,) and targets.shape == (q,), (gallery_values.shape, targets.shape)
    masked = np.where(gallery_values[None, :] == targets[:, None], distances, np.inf)
    order = np.argsort(masked, axis=1, kind="stable")[:, :k]
    rows = order.astype(np.int64)
    rows[~np.isfinite(np.take_along_axis(masked, order, axis=1))] = -1
    return rows
