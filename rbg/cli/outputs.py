"""The `--force` flag and the up-front `--out` check every folder-writing command shares."""

from __future__ import annotations

import click

from facedata.outputs import ArtifactKind, check_output_folder


def force_option(kind: str):
    """`--force`: replace an existing --out folder even when it is not a `kind` (never a file, never the input)."""
    return click.option("--force", is_flag=True,
                        help=f"Replace --out even if it is an existing folder that is not a {kind}.")


def check_out(out, kind: ArtifactKind, force: bool, *inputs) -> None:
    """Refuse --out before any work: another kind of folder or one holding more (without --force), a file, an input."""
    check_output_folder(out, kind, force=force, inputs=inputs)


def check_faceset_out(out, force: bool, *inputs) -> None:
    """check_out for a command that writes a FaceSet (data synth, data import)."""
    from facedata.faceset import KIND

    check_out(out, KIND, force, *inputs)
