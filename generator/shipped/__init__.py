"""The checkpoints shipped inside the package, found by name wherever the package is installed.

Each subfolder (e.g. `synthpie-pose/`) is a checkpoint folder carried as package data, so that
`--model synthpie-pose` works from a wheel as well as from a checkout, in any working directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_root() -> Path:
    """The folder that holds the shipped checkpoints (the package is installed as plain files)."""
    return Path(str(resources.files(__name__)))


def shipped_names() -> tuple[str, ...]:
    """The names of the shipped checkpoints, sorted: each one a subfolder of this package."""
    return tuple(sorted(p.name for p in shipped_root().iterdir() if p.is_dir() and not p.name.startswith(("_", "."))))


def shipped_model(name: str) -> Path | None:
    """The folder of the shipped checkpoint called `name`, or None when none ships under that name."""
    return shipped_root() / name if name in shipped_names() else None


def shipped_name_of(path: str | Path | None) -> str | None:
    """The shipped name of a checkpoint folder inside this package, else None: what an index records for it,
    so that the reference survives a new environment (the package's location changes, its names do not)."""
    if path is None:
        return None
    try:
        relative = Path(path).resolve().relative_to(shipped_root().resolve())
    except ValueError:
        return None
    return relative.parts[0] if relative.parts and relative.parts[0] in shipped_names() else None
