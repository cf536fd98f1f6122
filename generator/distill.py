"""Distillation targets and loss: teach the refiner's DescriptorHead a strong face descriptor.

The descriptors (dlib's 128-d, or any other) are computed once, offline, on the training faces. A
face where the descriptor's detector found no face (profiles, for dlib's frontal detector) takes the
mean descriptor of its identity's found faces, so every pose still learns who it is; an identity with
no found face at all gives no target (NaN), and its pairs train on the pixel loss alone.
"""

from __future__ import annotations

import numpy as np
import torch


def descriptor_targets(descriptors: np.ndarray, found: np.ndarray, identities: np.ndarray) -> np.ndarray:
    """(n, d) float32 targets: each face's own descriptor where found, else its identity's mean, else NaN."""
    descriptors = np.asarray(descriptors, dtype=np.float32)
    found = np.asarray(found, dtype=bool)
    identities = np.asarray(identities)
    assert len(descriptors) == len(found) == len(identities), (descriptors.shape, found.shape, identities.shape)
    targets = np.full_like(descriptors, np.nan)
    targets[found] = descriptors[found]
    for person in np.unique(identities[~found]):
        own = identities == person
        seen = own & found
        if seen.any():
            targets[own & ~found] = descriptors[seen].mean(axis=0)
    return targets


def distill_loss(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """Mean squared Euclidean distance between predictions and the known targets (rows without NaN); None if none."""
    known = ~torch.isnan(targets).any(dim=1)
    if not bool(known.any()):
        return None
    return ((predicted[known] - targets[known]) ** 2).sum(dim=1).mean()
