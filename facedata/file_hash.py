"""sha256 of files: what a checkpoint records of its weights and what cache keys record of shipped models."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _sha256_of_version(path: str, modified_ns: int, size: int) -> str:
    return sha256_file(Path(path))


def sha256_file_cached(path: Path) -> str:
    """sha256_file(), read again only when the file's time or size changes; "missing" where there is no file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "missing"
    return _sha256_of_version(str(path), stat.st_mtime_ns, stat.st_size)
