"""The kept-value filter of an all-views index: FAISS ID selectors, and the widening search they replace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from index.faiss_factory import IndexConfig
from index.faiss_index import GalleryIndex
from index.features import l2_normalize
from index.kept_filter import KeptFilter, supports_selectors, widening_search

VALUES = ("left", "front", "right")


def all_views_index(factory: str, n: int = 600, d: int = 24, seed: int = 0, kept: np.ndarray | None = None) -> GalleryIndex:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    if kept is None:
        kept = np.asarray(VALUES)[rng.integers(0, len(VALUES), size=n)]
    faces = pd.DataFrame({"identity": np.arange(n).astype(str), "kept_pose": kept})
    return GalleryIndex.from_vectors(vectors, faces, IndexConfig(factory=factory, views="all", nprobe=64, ef_search=256),
                                     edit_factor="pose", vocabulary=VALUES)


def brute_force(index: GalleryIndex, queries: np.ndarray, k: int, targets: np.ndarray) -> np.ndarray:
    """The exact answer: squared L2 to every row of the target, lowest first, ties by row."""
    vectors = index.index.reconstruct_n(0, index.info.count)
    kept = index.faces["kept_pose"].to_numpy()
    out = np.full((len(queries), k), -1)
    for i, (q, t) in enumerate(zip(l2_normalize(queries), targets)):
        rows = np.flatnonzero(kept == t)
        order = np.lexsort((rows, ((vectors[rows] - q) ** 2).sum(1)))[:k]
        out[i, : len(order)] = rows[order]
    return out


def test_an_exact_index_returns_only_rows_of_each_query_target_in_exact_order():
    index = all_views_index("Flat")
    queries = np.random.default_rng(1).standard_normal((40, 24)).astype(np.float32)
    targets = np.asarray(VALUES)[np.arange(40) % 3]
    _, rows = index.search_among(queries, 10, targets)
    assert index._kept_filter, "a Flat index filters with selectors"
    np.testing.assert_array_equal(rows, brute_force(index, queries, 10, targets))


@pytest.mark.parametrize("factory", ["PCA16,Flat", "SQ8", "IVF4,Flat", "HNSW16"])
def test_compressed_and_approximate_indexes_filter_by_target_and_find_a_gallery_vector_first(factory):
    index = all_views_index(factory)
    assert supports_selectors(index.index)
    vectors = index.index.reconstruct_n(0, 30) if factory in ("IVF4,Flat", "HNSW16") else None
    rows_asked = np.arange(30)
    if vectors is None:  # a transform: query with the gallery's original vectors
        vectors = np.random.default_rng(0).standard_normal((600, 24)).astype(np.float32)[:30]
    targets = index.faces["kept_pose"].to_numpy()[:30]
    _, rows = index.search_among(vectors, 5, targets)
    kept = index.faces["kept_pose"].to_numpy()
    assert np.all(kept[rows] == targets[:, None])
    assert np.mean(rows[:, 0] == rows_asked) >= 0.9


def test_an_index_without_selectors_falls_back_to_the_widening_search_with_the_same_answer():
    exact = all_views_index("Flat")
    coded = all_views_index("PQ4")  # IndexPQ takes no search parameters
    assert not supports_selectors(coded.index)
    queries = np.random.default_rng(2).standard_normal((20, 24)).astype(np.float32)
    targets = np.asarray(VALUES)[np.arange(20) % 3]
    _, rows = coded.search_among(queries, 5, targets)
    assert coded._kept_filter is False
    kept = coded.faces["kept_pose"].to_numpy()
    assert np.all(kept[rows] == targets[:, None])
    widened = widening_search(exact.search, queries, 5, exact.faces["kept_pose"].to_numpy(), targets, len(exact), 5)[1]
    np.testing.assert_array_equal(widened, exact.search_among(queries, 5, targets)[1])


def test_a_rare_target_gets_its_few_rows_and_missing_places_after_them():
    kept = np.asarray(["front"] * 597 + ["left"] * 3)
    index = all_views_index("Flat", kept=kept)
    distances, rows = index.search_among(np.ones((2, 24), np.float32), 5, np.asarray(["left", "right"]))
    assert sorted(rows[0, :3]) == [597, 598, 599] and list(rows[0, 3:]) == [-1, -1]
    assert np.all(np.isinf(distances[0, 3:])) and np.all(rows[1] == -1)


def test_each_value_selector_is_made_once_and_counts_its_rows():
    kept_filter = KeptFilter(np.asarray(["a", "b", "a"]))
    assert kept_filter.rows_of("a") == 2 and kept_filter.rows_of("c") == 0
    assert kept_filter._selector("a") is kept_filter._selector("a")
