"""Ours + Deep (beyond the paper): the generation distance fused with a face descriptor's distance.

The generator's identity evidence is learned from a few dozen people; a descriptor such as dlib's
from millions of faces, but only where its detector finds the face. Each query's two distance rows
are put on one scale (divided by their median over the gallery row, so that no set-specific unit
enters the weight), then mixed: d = (1 − w)·generation + w·descriptor for pairs where the detector
found both faces, the generation distance alone elsewhere. The weight w is chosen on validation
people (`choose_weight`), never on the test people it is then used on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from retrieval.multi_view import rank_among

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))  # the grid `choose_weight` searches
DEFAULT_WEIGHT = 0.5  # used where a FaceSet has no validation people to choose on


def median_scaled(distances: np.ndarray) -> np.ndarray:
    """Each row divided by its median over finite entries: (q, g) float32 with median 1 per row."""
    distances = np.asarray(distances, dtype=np.float32)
    assert distances.ndim == 2, distances.shape
    median = np.nanmedian(np.where(np.isfinite(distances), distances, np.nan), axis=1, keepdims=True)
    return distances / np.maximum(median, np.float32(1e-12))


def descriptor_distances(query_descriptors: np.ndarray, gallery_descriptors: np.ndarray) -> np.ndarray:
    """Squared L2 between descriptors, (q, g) float32 (dlib's own metric: same person below ~0.36)."""
    q, g = np.asarray(query_descriptors, np.float32), np.asarray(gallery_descriptors, np.float32)
    assert q.ndim == 2 and g.ndim == 2 and q.shape[1] == g.shape[1], (q.shape, g.shape)
    d = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
    return np.maximum(d, 0.0)


def fuse(generation: np.ndarray, descriptor: np.ndarray, query_found: np.ndarray, gallery_found: np.ndarray,
         weight: float) -> np.ndarray:
    """(1 − w)·generation + w·descriptor on median-scaled rows where both faces were detected; generation elsewhere.

    `generation` and `descriptor` are (q, g) distances; `query_found` (q,) and `gallery_found` (g,) bool say
    where the descriptor's detector found the face (a descriptor of an undetected face is not trusted).
    """
    generation, descriptor = median_scaled(generation), median_scaled(descriptor)
    assert generation.shape == descriptor.shape, (generation.shape, descriptor.shape)
    both = np.asarray(query_found, bool)[:, None] & np.asarray(gallery_found, bool)[None, :]
    assert both.shape == generation.shape, (both.shape, generation.shape)
    return np.where(both, (1.0 - weight) * generation + weight * descriptor, generation).astype(np.float32)


def fused_ranking(generation: np.ndarray, query_descriptors: np.ndarray, gallery_descriptors: np.ndarray,
                  query_found: np.ndarray, gallery_found: np.ndarray, weight: float, gallery_values: np.ndarray,
                  targets: np.ndarray, k: int) -> np.ndarray:
    """Gallery rows (q, k) by the fused distance among rows whose value is the query's target (multi_view.rank_among)."""
    fused = fuse(generation, descriptor_distances(query_descriptors, gallery_descriptors), query_found, gallery_found,
                 weight)
    return rank_among(fused, gallery_values, targets, k)


@dataclass(frozen=True)
class WeightChoice:
    """The chosen weight and the validation score of every weight tried."""

    weight: float
    scores: dict[float, tuple[float, ...]]  # weight → validation scores, compared in order


def choose_weight(score: Callable[[float], tuple[float, ...]], weights=WEIGHTS) -> WeightChoice:
    """The weight with the best validation scores (compared in order: the first decides, the next break ties);
    remaining ties go to the lower weight, closer to ours alone."""
    scores = {float(w): tuple(float(v) for v in score(float(w))) for w in weights}
    return WeightChoice(weight=best_candidate(scores), scores=scores)


# The generation distances a setting may use: every value's view; the target's view of both faces; the query's
# target view against each gallery face in its kept value (the paper's pose-normalized gallery).
VIEWS = ("all", "target", "kept")
DISTILLED_VIEWS = ("distilled all", "distilled target")  # the same with a distilled model's descriptor head


@dataclass(frozen=True)
class Setting:
    """One way to rank for ours: which generation distance (VIEWS) and the descriptor's weight beside it."""

    views: str
    weight: float

    def label(self) -> str:
        return f"views {self.views}, Deep weight {self.weight:g}"


def settings(weights=WEIGHTS, views=VIEWS) -> list[Setting]:
    """Every setting in order of preference on ties: the lower weight, then the views in the order given
    (every view before the target's alone: averaging V views is the steadier evidence)."""
    return [Setting(v, float(w)) for w in weights for v in views]


def best_candidate(scores: dict):
    """The first key (in the dict's order of preference) whose scores are the best (compared in order)."""
    best = max(scores.values())
    return next(key for key, value in scores.items() if value == best)
