"""Framing jitter: training sources cropped a little off the dataset's framing, targets left as they are.

A face found in a photo is never cropped exactly as the training faces were: the photo path's crops
sit a few hundredths of a side off the dataset's, and its size a few percent off. Measured on KDEF
(benchmarks/framing_sensitivity.py) an offset of 0.03 sides and a log-scale of 0.07 (standard
deviations) take "ours, all poses" from 74.7 to 56.2 R@1. Trained on sources moved and scaled at random
toward the same target, the generator learns to put the face back where the dataset frames it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def jitter_sources(x: torch.Tensor, jitter: tuple[float, float], rng: np.random.Generator) -> torch.Tensor:
    """(b, 1, H, W) standardized sources, each re-cropped about its centre moved by N(0, jitter[0]) sides
    (right and down) and scaled by exp(N(0, jitter[1])); the edge pixels fill what lies outside."""
    offset, log_scale = jitter
    if not (offset or log_scale) or not len(x):
        return x
    b = len(x)
    shift = rng.normal(0.0, offset, (b, 2)) if offset else np.zeros((b, 2))
    scale = np.exp(rng.normal(0.0, log_scale, b)) if log_scale else np.ones(b)
    theta = np.zeros((b, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = scale  # a crop `scale` times the side: the grid reaches `scale` times as far
    theta[:, :, 2] = 2.0 * shift  # grid units: 2 per side
    grid = F.affine_grid(torch.from_numpy(theta).to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
