"""The bytes a FAISS factory must store, a floor for the index sizes the benchmarks report."""

from __future__ import annotations

import re

HEADERS = 4096  # what an index file holds beyond stored_bytes: headers, small fields, HNSW's upper levels


def stored_bytes(factory: str, n: int, d: int) -> int:
    """The arrays that `factory` writes for n vectors of d dimensions (FAISS's layouts, headers aside)."""
    total = 0
    for part in factory.split(","):
        if match := re.fullmatch(r"PCA(\d+)", part):  # A and its PCA matrix (p × d each), the mean; then p wide
            p = int(match[1])
            total, d = total + 2 * p * d * 4 + d * 4, p
        elif part == "Flat":
            total += n * d * 4
        elif match := re.fullmatch(r"IVF(\d+)", part):  # the coarse centroids, and an id per vector
            total += int(match[1]) * d * 4 + n * 8
        elif match := re.fullmatch(r"PQ(\d+)(?:x(\d+))?", part):  # codebooks and codes
            m, bits = int(match[1]), int(match[2] or 8)
            total += m * 2**bits * (d // m) * 4 + n * -(-m * bits // 8)
        elif match := re.fullmatch(r"HNSW(\d+)", part):  # the vectors, the level-0 links (2·M each), offsets, levels
            total += n * d * 4 + n * (2 * int(match[1]) * 4 + 8 + 4)
        else:
            raise ValueError(f"stored_bytes: no layout for '{part}' of '{factory}'")
    return total
