"""The photo options `rbg generate` and `rbg query` share: whether to detect and align, and which face."""

from __future__ import annotations

import click

ALIGN_HELP = ("Detect the face (dlib, the deep extra) and crop it eye-aligned, or take the whole image as the face. "
              "Default: align image files unless they already have the model's size; FACESET:ROW faces as stored.")


def face_options(command):
    """Add --align/--no-align and --face N to a command."""
    command = click.option("--face", type=int, default=1, show_default=True,
                           help="With several faces in a photo: the N-th largest (1 = the largest).")(command)
    return click.option("--align/--no-align", default=None, help=ALIGN_HELP)(command)
