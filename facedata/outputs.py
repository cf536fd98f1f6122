"""Where an output may go: an `--out` never destroys what its command did not make, nor its own input.

A folder artifact is known by its kind (ArtifactKind): its manifest (`faceset.json`, `index.json`,
`report.json`, …) and the names it writes. An existing folder is replaced only when it holds the manifest
of the kind being written and nothing else than that kind's own files (an index or a note of the user's
inside a FaceSet folder keeps it), or when the caller forces it. A regular file is never replaced by a
folder, nor a folder by a file, and an output is never the input (or a folder holding the input) of the
same command.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, Iterator

from facedata.errors import UserError


class OutputError(UserError):
    """An output path that cannot or must not be written: the message names it and why."""


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of folder artifact: its manifest and every name it writes, the only entries replaced without force."""

    what: str  # how a message names it: "FaceSet", "index", …
    manifest: str  # the file that marks a folder as one (faceset.json, index.json, …)
    files: tuple[str, ...]  # the regular files it writes, as fnmatch patterns (the manifest among them)
    folders: tuple[tuple[str, "ArtifactKind"], ...] = ()  # the subfolders it writes, each an artifact of its own

    def foreign_entry(self, folder: Path) -> str | None:
        """The first entry under `folder` (relative, sorted) that this kind does not write, or None."""
        inner = dict(self.folders)
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink():
                return entry.name
            if entry.is_dir() and entry.name in inner:
                deeper = inner[entry.name].foreign_entry(entry)
                if deeper is not None:
                    return f"{entry.name}/{deeper}"
            elif not (entry.is_file() and any(fnmatchcase(entry.name, pattern) for pattern in self.files)):
                return entry.name + ("/" if entry.is_dir() else "")
        return None


def _named(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a folder (so nothing can be made under it)."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def _same_or_inside(inner: Path, outer: Path) -> bool:
    inner, outer = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    return inner == outer or outer in inner.parents


def check_output_folder(out: str | os.PathLike, kind: ArtifactKind, force: bool = False,
                        inputs: Iterable[str | os.PathLike | None] = (), option: str | None = "--out") -> Path:
    """Refuse `out` unless it is new, empty, a `kind` folder holding only its own files, or any folder with `force`.

    Never allowed, even with `force`: `out` a regular file (or under one), or `out` the same folder
    as one of `inputs` or a folder holding one of them (replacing it would delete the input).
    """
    out = Path(out)
    above = _file_above(out)
    if above is not None:
        raise OutputError(f"{_named(out, option)}: {above} is a regular file, not a folder to write into")
    for given in inputs:
        if given is not None and Path(given).exists() and _same_or_inside(Path(given), out):
            what = "is" if _same_or_inside(out, Path(given)) else "holds"
            raise OutputError(f"{_named(out, option)}: {what} the input {given}; write the output to another folder")
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{_named(out, option)}: a dangling symbolic link; remove it or give another folder")
    if not out.exists():
        return out
    if not out.is_dir():
        raise OutputError(f"{_named(out, option)}: is a regular file, never replaced by a folder; give a folder name")
    if force or not any(out.iterdir()):
        return out
    if not (out / kind.manifest).is_file():
        raise OutputError(f"{_named(out, option)}: an existing folder without {kind.manifest}, so not an output of this "
                          f"command; give a new folder, or add --force to replace it")
    foreign = kind.foreign_entry(out)
    if foreign is not None:
        raise OutputError(f"{_named(out, option)}: holds {foreign}, which is not part of {_article(kind.what)} {kind.what} "
                          f"and would be deleted with it; give a new folder, or add --force to replace it and all it holds")
    return out


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def check_output_file(out: str | os.PathLike, option: str | None = "--out") -> Path:
    """Refuse a file output that is an existing folder (or another non-regular file) or lies under a regular file."""
    out = Path(out)
    above = _file_above(out)
    if above is not None:
        raise OutputError(f"{_named(out, option)}: {above} is a regular file, not a folder to write into")
    if out.is_dir():
        raise OutputError(f"{_named(out, option)}: is a folder; give a file name")
    if out.exists() and not out.is_file():
        raise OutputError(f"{_named(out, option)}: is not a regular file (a FIFO, socket or device); give a file name")
    return out


@contextmanager
def exclusive_lock(lock_file: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive fcntl.flock on `lock_file` (created if needed) while the block runs.

    A second holder is refused at once rather than left waiting: two writers of one output would
    otherwise mix their pieces. The lock dies with its process; the file is removed on the way out
    (before unlocking, so a newcomer locks a fresh file only once this holder is done).
    """
    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_file, "a+")
    except OSError as exc:
        raise OutputError(f"{lock_file}: cannot create the lock file ({exc.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{what}: another run is writing it now (it holds {lock_file}); "
                                  "wait for it to finish, or write to another --out") from None
            raise
        try:
            yield
        finally:
            lock_file.unlink(missing_ok=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
