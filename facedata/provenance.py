"""What made an artifact: command line, seed, library versions, time: recorded beside every output."""

from __future__ import annotations

import datetime as _dt
import platform
import shlex
import sys
from importlib import metadata

_TRACKED_PACKAGES = (
    "retrieval-by-generation",
    "numpy",
    "pandas",
    "pyarrow",
    "torch",
    "faiss-cpu",
    "scikit-learn",
    "pillow",
    "safetensors",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose behaviour shapes our outputs."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def command_line() -> str:
    """The command that is running now, as a shell would need it to run again."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("/rbg", "\\rbg")):
        argv[0] = "rbg"
    return shlex.join(argv)


def provenance(seed: int | None = None, **extra) -> dict:
    """A provenance record: command, seed, versions, UTC time, plus any extra fields given."""
    record = {
        "command": command_line(),
        "seed": seed,
        "versions": package_versions(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record
