"""Write-to-temporary-then-rename, so that a crash never leaves a half-written artifact in place.

Every OSError of these writers (no permission, disk full, a path under a regular file) becomes one
OutputError naming the target, here and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from facedata.outputs import ArtifactKind, OutputError, check_output_file, check_output_folder


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def default_file_mode() -> int:
    """The mode a plain new file gets under the current umask (0o644 under the usual 022)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def _as_output_error(target: Path) -> Iterator[None]:
    """Turn an OSError of writing `target` into an OutputError naming it (the one place that does)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != target else ""
        raise OutputError(f"{target}: cannot write: {reason}{where}") from None


def _written_here(exc: BaseException, tmp: Path) -> bool:
    """Whether an error in a writer's body came from writing its temporary output (no other file named)."""
    if not isinstance(exc, OSError):
        return False
    return exc.filename is None or Path(exc.filename) == tmp or tmp in Path(exc.filename).parents


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = True, kind: ArtifactKind | None = None,
               force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; on success it replaces `target` whole.

    A regular file at `target` is never replaced. With `kind`, an existing folder is replaced only when
    it is an artifact of that kind holding nothing else, or with `force` (check_output_folder).
    """
    target = Path(target)
    if kind is not None:
        check_output_folder(target, kind, force=force, option=None)
    elif target.exists() and not target.is_dir():
        raise OutputError(f"{target}: is a regular file, never replaced by a folder")
    with _as_output_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the artifact should not be
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _written_here(exc, tmp):
            raise OutputError(f"{target}: cannot write: {exc.strerror or exc}") from None
        raise
    try:
        with _as_output_error(target):
            if target.exists():
                if not overwrite:
                    raise FileExistsError(target)
                if not target.is_dir():
                    raise OutputError(f"{target}: became a regular file while writing; never replaced by a folder")
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`.

    An existing folder (or FIFO, device) at `target` is refused before anything is written.
    """
    target = Path(target)
    check_output_file(target, option=None)
    with _as_output_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent, suffix=target.suffix)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(default_file_mode())
    try:
        yield tmp
        with _as_output_error(target):
            os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _written_here(exc, tmp):
            raise OutputError(f"{target}: cannot write: {exc.strerror or exc}") from None
        raise


def write_json(target: str | os.PathLike, record, **dumps_options) -> None:
    """Write one JSON document (indented, newline-terminated) atomically onto `target`."""
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(record, indent=2, **dumps_options) + "\n")
