"""Search among the gallery rows of one kept value, the filter applied inside the index's own scan.

An index of all views (index.features.all_value_features) holds vectors that carry no target: a query
must be compared only with gallery faces whose normalization kept its target value. FAISS's ID
selectors do that inside the search: a Flat, SQ or PQ-coded IVF index skips the other rows while it
scans, and an HNSW graph walk only returns selected rows. Unlike a search widened until k rows of the
target turn up, the work per query then does not grow as the target gets rarer
(benchmarks/bench_compact.py times the rarest and the most common target). An index type without
selector support (IndexPQ, IndexLSH, …) falls back to the widening search.
"""

from __future__ import annotations

from typing import Callable

import faiss
import numpy as np


def _inner(index: faiss.Index) -> faiss.Index:
    """The index under a leading transform (PCA), downcast to its own type."""
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else faiss.downcast_index(index)


def selector_parameters(index: faiss.Index, selector: faiss.IDSelector, nprobe: int, ef_search: int) -> faiss.SearchParameters:
    """Search parameters that restrict `index` to `selector`'s rows at the index's own depth (nprobe, efSearch).

    Parameters passed to a search replace the index's settings, so the depth is set here again.
    """
    inner = _inner(index)
    if faiss.try_extract_index_ivf(inner) is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = min(int(nprobe), faiss.try_extract_index_ivf(inner).nlist)
    elif hasattr(inner, "hnsw"):
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(ef_search)
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    if isinstance(index, faiss.IndexPreTransform):
        outer = faiss.SearchParametersPreTransform()
        outer.index_params = params
        outer.sel = selector
        outer.own = params  # keeps the inner parameters alive as long as the outer ones
        return outer
    return params


def supports_selectors(index: faiss.Index) -> bool:
    """Whether a search of `index` accepts an ID selector (IndexPQ and a few others refuse any parameters)."""
    if index.ntotal == 0:
        return False
    selector = faiss.IDSelectorRange(0, 1)
    try:
        index.search(np.zeros((1, index.d), dtype=np.float32), 1, params=selector_parameters(index, selector, 1, 16))
    except RuntimeError:
        return False
    return True


class KeptFilter:
    """The rows of each kept value as a FAISS selector, made once per value and kept with the index.

    A bitmap selector (one bit per gallery row) answers "is this row selected?" in constant time,
    whatever the number of rows selected.
    """

    def __init__(self, kept: np.ndarray):
        self.kept = np.asarray(kept).astype(str)
        self._selectors: dict[str, tuple[faiss.IDSelector, np.ndarray, int]] = {}

    def rows_of(self, value: str) -> int:
        """How many gallery rows kept `value`."""
        return self._selector(value)[2]

    def _selector(self, value: str) -> tuple[faiss.IDSelector, np.ndarray, int]:
        if value not in self._selectors:
            mask = self.kept == value
            bits = np.packbits(mask, bitorder="little")  # FAISS reads bit i of byte i // 8, least significant first
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            self._selectors[value] = (selector, bits, int(mask.sum()))  # the bitmap must outlive its selector
        return self._selectors[value]

    def search(self, index: faiss.Index, vectors: np.ndarray, k: int, targets: np.ndarray,
               nprobe: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's k nearest rows among those that kept its target: distances (q, k), rows (q, k), -1 past them.

        Queries are grouped by target, one selector search per group.
        """
        targets = np.asarray(targets).astype(str)
        distances = np.full((len(vectors), k), np.inf, dtype=np.float32)
        rows = np.full((len(vectors), k), -1, dtype=np.int64)
        for value in np.unique(targets):
            asked = np.flatnonzero(targets == value)
            selector, _, count = self._selector(str(value))
            if count == 0:
                continue
            d, r = index.search(vectors[asked], k, params=selector_parameters(index, selector, nprobe, ef_search))
            found = r >= 0
            distances[asked] = np.where(found, d, np.inf)
            rows[asked] = np.where(found, r, -1)
        return distances, rows


def widening_search(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], vectors: np.ndarray, k: int,
                    kept: np.ndarray, targets: np.ndarray, count: int, start_width: int) -> tuple[np.ndarray, np.ndarray]:
    """For an index without selectors: search ever wider (4× at a time, up to the whole gallery) until
    k rows of each query's target are found or none are left. Slower the rarer the target."""
    targets = np.asarray(targets).astype(str)
    distances = np.full((len(vectors), k), np.inf, dtype=np.float32)
    rows = np.full((len(vectors), k), -1, dtype=np.int64)
    pending, width = np.arange(len(vectors)), min(count, start_width)
    while len(pending):
        found_d, found_r = search(vectors[pending], width)
        still = []
        for j, i in enumerate(pending):
            ok = (found_r[j] >= 0) & (kept[np.maximum(found_r[j], 0)] == targets[i])
            take = np.flatnonzero(ok)[:k]
            if len(take) < k and width < count:
                still.append(i)
                continue
            rows[i, : len(take)], distances[i, : len(take)] = found_r[j, take], found_d[j, take]
        pending, width = np.asarray(still, dtype=np.int64), min(count, 4 * width)
    return distances, rows
