"""A third opinion on BlazeFace's boxes: MTCNN's output network (ONet), trained on real faces.

The face check (facedata.face_check) learned faces from renders and 100 LFW faces, so it keeps some
textures a real face detector would not. MTCNN's last stage (K. Zhang, Z. Zhang, Z. Li, Y. Qiao, "Joint
Face Detection and Alignment using Multi-task Cascaded Convolutional Networks", IEEE SPL 2016) was
trained on WIDER FACE and CelebA: it reads a box at 48×48 and says how likely a face it is. Here it
vets the faces BlazeFace scores too low for the first way (facedata.detect.two_way_faces). Its weights
were copied once out of the facenet-pytorch wheel (MIT) by facedata.onet_convert and ship as safetensors
(see facedata/models/NOTICE.md); only the face/non-face head is kept. A second version, tuned from those
weights on the face check's examples (facedata.onet_tune), ships beside it and is the detector's judge
by default (DetectConfig.onet): MTCNN's own scores most small webcam faces in sunglasses or looking up as
clutter.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facedata.blazeface import Window, window_crops

WEIGHTS = Path(__file__).resolve().parent / "models" / "mtcnn_onet.safetensors"
# ONet tuned on the face check's examples (facedata.onet_tune): the detector's judge by default
TUNED_WEIGHTS = Path(__file__).resolve().parent / "models" / "onet_tuned.safetensors"
VERSIONS = ("tuned", "mtcnn")  # DetectConfig.onet: which ONet weights judge BlazeFace's boxes
SIDE = 48  # ONet's input side in pixels


class ONet(nn.Module):
    """(B, 3, 48, 48) RGB in [−1, 1] → (B,) probability of "a face". Layer names follow the converted weights."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(3 * 3 * 128, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) log-odds of "a face" (the two-way softmax's face probability is their sigmoid)."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(len(x), -1)  # the original (Caffe) weights flatten width-major
        out = self.dense6_1(self.prelu5(self.dense5(x)))
        return out[:, 1] - out[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(x))


def square_windows(boxes: np.ndarray) -> list[Window]:
    """(n, 4) boxes → the square around each, as wide as its longer side (MTCNN squares its boxes the same way)."""
    out = []
    for left, top, right, bottom in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        side = max(right - left, bottom - top)
        out.append(Window((left + right - side) / 2, (top + bottom - side) / 2, side))
    return out


MADE_BY = {"mtcnn": ("MTCNN's ONet", "python -m facedata.onet_convert"),  # per version: what it is, what makes it
           "tuned": ("the tuned ONet's", "python -m facedata.onet_tune")}


def weights_of(version: str) -> Path:
    """The safetensors file of an ONet version (VERSIONS): MTCNN's own, or tuned here."""
    return {"mtcnn": WEIGHTS, "tuned": TUNED_WEIGHTS}[version]


@functools.lru_cache(maxsize=2)
def load_onet(version: str = "mtcnn") -> ONet:
    """A shipped ONet (VERSIONS) in eval mode, loaded once per process (safetensors)."""
    from facedata.shipped_weights import load_shipped

    return load_shipped(ONet(), weights_of(version), *MADE_BY[version])


def onet_crops(image: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """(n, 1, 48, 48) crops of (H, W) uint8 in [−1, 1]: the square around each box, as ONet reads it."""
    return window_crops(image, square_windows(boxes), SIDE)


def onet_probability(image: np.ndarray, boxes: np.ndarray, model: ONet | None = None, version: str = "mtcnn") -> np.ndarray:
    """(n,) ONet's probability that each box of (H, W) uint8 holds a face (the gray photo read as RGB): `model`,
    else the shipped `version` (VERSIONS)."""
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0)
    model = model or load_onet(version)
    crops = onet_crops(image, boxes).expand(-1, 3, -1, -1)
    with torch.inference_mode():
        return model(crops).numpy().astype(np.float64)
