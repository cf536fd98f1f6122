"""The editing tasks of §4: which factor a network edits, which pairs teach it, and which loss it uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facedata.combined import combined_name, edited_factors
from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.pairs import make_pairs


@dataclass(frozen=True)
class Task:
    """One editing task: the edited factor, the loss, and the values allowed on each side of a pair."""

    name: str
    edit_factor: str
    loss: str  # "mse" (§3.4) or "mae" (§4.3)
    source_values: tuple[str, ...] | None = None
    target_values: tuple[str, ...] | None = None
    description: str = ""


TASKS: dict[str, Task] = {
    "pose": Task("pose", "pose", "mse", description="§4.1: rotate the face to another yaw"),
    "accessory": Task("accessory", "accessory", "mse", description="§4.2: put on, take off or swap glasses and hats"),
    "completion": Task(
        "completion", "occluded", "mae", ("yes",), ("no",),
        description="§4.3: fill in the eyes hidden by a black bar (MAE against the uncertainty behind it)",
    ),
    "illumination": Task("illumination", "illumination", "mse",
                         description="the authors' third task: the same face under another light"),
}


COMBINABLE = ("pose", "accessory", "illumination")  # tasks whose factor any value may be edited to and from


def get_task(name: str) -> Task:
    """The task called `name`, or several combinable tasks joined by "+" ("pose+accessory": both edited at once).

    An unknown name is a UserError listing the known ones.
    """
    parts = edited_factors(name)
    if len(parts) > 1:
        bad = [p for p in parts if p not in COMBINABLE]
        if bad or len(set(parts)) != len(parts):
            what = f"'{bad[0]}' cannot be combined" if bad else "a factor appears twice"
            raise UserError(f"unknown task '{name}': {what} (combine {', '.join(COMBINABLE)} with '+', e.g. pose+accessory)")
        return Task(name, combined_name(parts), "mse",
                    description=f"edit {' and '.join(parts)} at once: one one-hot block per factor")
    if name not in TASKS:
        raise UserError(f"unknown task '{name}' (valid: {', '.join(TASKS)}, or several of "
                        f"{', '.join(COMBINABLE)} joined by '+')")
    return TASKS[name]


def task_pairs(task: Task, faces: FaceSet, match: tuple[str, ...] | None = None) -> np.ndarray:
    """(source, target) positions within `faces` that teach `task`: (P, 2) int64, sorted.

    `match`: the factors a pair must share (default: all but the edited one; see make_pairs).
    """
    return make_pairs(faces, task.edit_factor, source_values=task.source_values, target_values=task.target_values,
                      match=match)


def pixel_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's loss, averaged over pixels and batch (see train.py for how that maps to eq. (1)-(2))."""
    if task.loss == "mae":
        return torch.nn.functional.l1_loss(output, target)
    return torch.nn.functional.mse_loss(output, target)
