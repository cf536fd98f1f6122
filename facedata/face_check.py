"""A second opinion on BlazeFace's boxes: a small CNN that tells a face from a face-like texture.

BlazeFace scores some textures (fractal noise, a microscopy cell, a star field) as high as the small,
turned faces of a 64×60 webcam frame, so no one score threshold keeps all of those faces and drops all
of those textures. The check reads each box with some context around it at 32×32 and says how likely
a face it is. It was trained (facedata.face_check_train) on SynthPIE renders, scikit-image's LFW faces
and the webcam photos of cmu_faces' train people against procedural textures and wallpapers, none of
them from the pictures the detector is chosen or measured on (cmu_faces' val and test people, KDEF,
the face-free sets). Its weights ship beside BlazeFace's as safetensors. The detector blends its
probability with ONet's, MTCNN's output network tuned on the check's own examples
(facedata.onet, facedata.detect.check_probability).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facedata.blazeface import Window, window_crops

WEIGHTS = Path(__file__).resolve().parent / "models" / "face_check.safetensors"
SIDE = 32  # the check's input side in pixels
CONTEXT = 1.6  # the crop's side in box widths, centred on the box


class FaceCheck(nn.Module):
    """(B, 1, 32, 32) crops, each standardized → (B,) logits of "a face"."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers, cin = [], 1
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                       nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x).mean((2, 3)))[:, 0]


def box_windows(boxes: np.ndarray, context: float = CONTEXT) -> list[Window]:
    """(n, 4) boxes (left, top, right, bottom) → square windows `context` box sides wide, centred on each box."""
    out = []
    for left, top, right, bottom in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        side = context * max(right - left, bottom - top)
        out.append(Window((left + right - side) / 2, (top + bottom - side) / 2, side))
    return out


def standardize(crops: torch.Tensor) -> torch.Tensor:
    """Each crop to zero mean and unit spread, so that exposure and contrast say nothing."""
    mean = crops.mean((1, 2, 3), keepdim=True)
    spread = crops.std((1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (crops - mean) / spread


def window_crops_of(image: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """(n, 1, 32, 32) crops of (H, W) uint8 around each box in [−1, 1], before standardize."""
    return window_crops(image, box_windows(boxes), SIDE)


def check_crops(image: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """(n, 1, 32, 32) standardized crops of (H, W) uint8 around each box, as the check reads them."""
    return standardize(window_crops_of(image, boxes))


@functools.lru_cache(maxsize=1)
def load_check() -> FaceCheck:
    """The shipped check in eval mode, loaded once per process (safetensors)."""
    from facedata.shipped_weights import load_shipped

    return load_shipped(FaceCheck(), WEIGHTS, "the face check's", "python -m facedata.face_check_train")


def face_probability(image: np.ndarray, boxes: np.ndarray, model: FaceCheck | None = None) -> np.ndarray:
    """(n,) probability that each box of (H, W) uint8 holds a face; the mean over the crop and its mirror."""
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0)
    model = model or load_check()
    crops = check_crops(image, boxes)
    with torch.inference_mode():
        logits = model(torch.cat([crops, crops.flip(-1)]))
    return torch.sigmoid(logits).view(2, -1).mean(0).numpy().astype(np.float64)
