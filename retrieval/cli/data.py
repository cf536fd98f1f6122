"""`rbg data ...`: render, import and inspect FaceSets."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Make and inspect FaceSets (the built-in SynthPIE renderer, real-set importers)."""
