"""The `--force` flag and the up-front `--out` check every folder-writing command shares."""

from __future__ import annotations

import click

from facedata.outputs import check_output_folder


def force_option(kind: str):
    """`--force`: replace an existing --out folder even when it is not a `kind` (never a file, never the input)."""
    return click.option("--force", is_flag=True,
                        help=f"Replace --out even if it is an existing folder that is not a {kind}.")


def check_out(out, manifest: str, force: bool, *inputs) -> None:
    """Refuse --out before any work: another kind of folder (without --force), a file, or one of the inputs."""
    check_output_folder(out, manifest, force=force, inputs=inputs)
