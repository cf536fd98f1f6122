"""The networks whose weights ship in facedata/models (BlazeFace, the face check, ONet), loaded one way."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from facedata.errors import UserError


def load_shipped(model: nn.Module, path: Path, what: str, made_by: str) -> nn.Module:
    """`model` with the safetensors file at `path` loaded as float32, in eval mode. A missing file is one
    UserError naming it, `what` it holds and the command that `made_by` makes it."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: {what} weights are missing ({made_by} makes them)")
    model.load_state_dict({key: value.float() for key, value in load_file(str(path)).items()})
    return model.eval()
