"""Exact k-nearest search and raw float32 vector files, both streamed block by block with bounded memory."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import faiss
import numpy as np


def merge_top(distances: np.ndarray, rows: np.ndarray, more_d: np.ndarray, more_r: np.ndarray, k: int):
    """The k smallest of two candidate lists per query (q, ·), by distance then row."""
    d = np.concatenate([distances, more_d], axis=1)
    r = np.concatenate([rows, more_r], axis=1)
    order = np.lexsort((r, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(r, order, axis=1)


def empty_top(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """No candidates yet: distances inf, rows -1, (q, k)."""
    return np.full((q, k), np.inf, np.float32), np.full((q, k), -1, np.int64)


def block_top(queries: np.ndarray, block: np.ndarray, start: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared-L2 top k of each query (q, d) among a block (m, d) whose first row is `start`."""
    distances, rows = faiss.knn(np.ascontiguousarray(queries), np.ascontiguousarray(block), min(k, len(block)))
    return distances, rows + start


# -- the projected gallery on disk -----------------------------------------------------------------------
def iter_rows(path: Path, dimension: int, block: int) -> Iterator[np.ndarray]:
    """The (n, dimension) float32 rows of a raw file, `block` at a time, read (not mapped) to keep RSS honest."""
    with open(path, "rb") as f:
        while True:
            chunk = np.fromfile(f, dtype=np.float32, count=block * dimension)
            if not len(chunk):
                return
            yield chunk.reshape(-1, dimension)


def read_rows(path: Path, dimension: int, positions: np.ndarray, block: int) -> np.ndarray:
    """Rows at sorted `positions` of a raw float32 file, picked while streaming it."""
    out, start = [], 0
    for chunk in iter_rows(path, dimension, block):
        inside = positions[(positions >= start) & (positions < start + len(chunk))]
        out.append(chunk[inside - start])
        start += len(chunk)
    return np.concatenate(out)
