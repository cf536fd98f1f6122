"""§3.4 preprocessing: subtract a mean and divide by a standard deviation, and undo it for output images.

Two variants, stored in the checkpoint:
- "dataset" (default): one scalar mean and std of all TRAIN-split pixels (0–255 scale), the same for
  every image; sources and targets go through the same affine map, so outputs invert exactly.
- "per_image" (the authors' released code): each source image's own mean and std. Targets are
  standardized with their SOURCE's statistics and outputs inverted with them, because at test time the
  target is unknown: only the source's statistics may be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

MODES = ("dataset", "per_image")
_MIN_STD = 1.0  # 0–255 units: a flat image (std 0) is not blown up


@dataclass(frozen=True)
class Normalization:
    """How images are standardized: the mode and, for "dataset", the train split's pixel mean/std."""

    mode: str = "dataset"
    mean: float = 127.5
    std: float = 64.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"normalization mode must be one of {MODES}, got {self.mode!r}")
        if not (np.isfinite(self.mean) and np.isfinite(self.std) and self.std > 0):
            raise ValueError(f"normalization needs a finite mean and a positive std, got {self.mean}, {self.std}")

    def stats(self, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,1,H,W) sources on the 0–255 scale → mean, std, each (n,1,1,1), to apply to the pair."""
        n = sources.shape[0]
        if self.mode == "dataset":
            mean = sources.new_full((n, 1, 1, 1), self.mean)
            std = sources.new_full((n, 1, 1, 1), self.std)
            return mean, std
        flat = sources.reshape(n, -1).to(torch.float64)
        mean = flat.mean(dim=1)
        std = flat.std(dim=1, unbiased=False).clamp_min(_MIN_STD)
        return mean.to(sources.dtype).view(n, 1, 1, 1), std.to(sources.dtype).view(n, 1, 1, 1)

    def apply(self, images: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """0–255 images → standardized, with the (mean, std) from `stats`."""
        mean, std = stats
        return (images - mean) / std

    def invert(self, standardized: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Standardized images → the 0–255 scale (unclipped): the exact inverse of `apply`."""
        mean, std = stats
        return standardized * std + mean

    def to_json(self) -> dict:
        return {"mode": self.mode, "mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, record: dict) -> "Normalization":
        return cls(mode=str(record["mode"]), mean=float(record["mean"]), std=float(record["std"]))


def fit_normalization(batches: Iterable[np.ndarray], mode: str = "dataset") -> Normalization:
    """Scalar mean and std of all pixels in the batches of (b, H, W) uint8 images (the train split)."""
    total, sum1, sum2 = 0, 0.0, 0.0
    for batch in batches:
        values = np.asarray(batch, dtype=np.float64)
        total += values.size
        sum1 += float(values.sum())
        sum2 += float(np.square(values).sum())
    if total == 0:
        raise ValueError("no pixels to fit the normalization on")
    mean = sum1 / total
    std = max(float(np.sqrt(max(sum2 / total - mean * mean, 0.0))), _MIN_STD)
    return Normalization(mode=mode, mean=mean, std=std)
