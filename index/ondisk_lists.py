"""IVF inverted lists kept in a file beside index.faiss: merge shard indexes into it, write and read it.

A sharded IVF build (index.sharded) fills one copy of the trained index per shard and merges the
shards' lists into `index.ivfdata` (faiss.contrib.ondisk.merge_ondisk). index.faiss names that file;
reading with IO_FLAG_ONDISK_SAME_DIR looks for it beside index.faiss, so the folder loads from any
working directory and after a move. Searches never use IO_FLAG_MMAP (a search over an index read
with it segfaults in faiss-cpu 1.15); merge_ondisk only reads the shards' lists through it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator, Sequence

import faiss

LISTS_FILE = "index.ivfdata"
READ_FLAGS = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY  # a saved index is replaced whole, never edited


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1 for a moment: FAISS's on-disk lists printf each resize and each re-pointed path."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def ondisk_lists(index: faiss.Index) -> faiss.OnDiskInvertedLists | None:
    """The on-disk inverted lists an IVF index (or a transform over one) searches, if it has such lists."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


def can_merge_lists(index: faiss.Index) -> bool:
    """Whether shards of this index can be merged into on-disk lists: a plain IVF (PQ, SQ, Flat codes), maybe under PCA."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else faiss.downcast_index(index)
    if not isinstance(inner, faiss.IndexIVF) or isinstance(inner, faiss.IndexIVFPQR):
        return False
    return isinstance(faiss.downcast_InvertedLists(inner.invlists), faiss.ArrayInvertedLists)  # not fast-scan blocks


def merge_shards(trained: faiss.Index, shard_files: Sequence[Path], lists_file: Path) -> None:
    """Move the lists of shard indexes (in gallery order) into `trained` (empty), backed by `lists_file`.

    Each shard holds its vectors under their gallery positions (add_with_ids), so list entries keep
    those ids and, shard after shard, the order one index filled in gallery order would give them.
    """
    from faiss.contrib.ondisk import merge_ondisk

    assert trained.ntotal == 0 and can_merge_lists(trained), (trained.ntotal, type(trained))
    Path(lists_file).unlink(missing_ok=True)  # a file left by an interrupted merge
    with quiet_stdout():
        merge_ondisk(trained, [str(f) for f in shard_files], str(lists_file), shift_ids=False)


def write_index_file(index: faiss.Index, path: Path) -> None:
    """Write index.faiss at `path`, with its on-disk lists (if any) linked or copied beside it as LISTS_FILE."""
    lists = ondisk_lists(index)
    if lists is not None:
        source = Path(lists.filename)
        assert source.name == LISTS_FILE, source  # index.faiss names it; the reader looks for this name beside it
        target = path.with_name(LISTS_FILE)
        try:
            os.link(source, target)
        except OSError:  # another filesystem, or one without hard links
            shutil.copyfile(source, target)
    faiss.write_index(index, str(path))


def read_index_file(path: Path) -> faiss.Index:
    """Read index.faiss; an index with on-disk lists finds them beside it (read-only), wherever the folder is."""
    with quiet_stdout() if path.with_name(LISTS_FILE).is_file() else contextlib.nullcontext():
        return faiss.read_index(str(path), READ_FLAGS)
