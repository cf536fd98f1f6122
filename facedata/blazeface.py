"""BlazeFace (MediaPipe's short-range face detector) in PyTorch: faces from frontal to full profile.

The network (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs")
reads a 128×128 image and scores 896 anchors, each with a box and 6 keypoints (eyes, nose tip, mouth,
ear tragions). Its weights are MediaPipe's (Apache-2.0), converted once to safetensors by
facedata.blazeface_convert and shipped in facedata/models, so nothing is downloaded or unpickled.

It is trained on faces that fill a good part of its input (selfie distance), so a large photo is
searched as a batch of square windows of several sizes (`windows`): a face is found in the window
where it is big enough. The whole photo is one of the windows; overlapping boxes are merged as
MediaPipe merges them (a score-weighted mean of each cluster, `weighted_nms`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "models" / "blazeface_short_range.safetensors"
INPUT = 128  # the network's input side in pixels
FACE_SHARE = 0.35  # the smallest windows are sized for faces filling this share of them
WINDOW_LEVELS = 3  # window sizes searched at most: the whole photo, then its short side halving
# (in, out, stride) of each block; after block 10 the 16×16 map feeds the 2-anchor head, after the last
# the 8×8 map feeds the 6-anchor head.
BLOCKS = ((24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1), (56, 64, 1),
          (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1), (96, 96, 1), (96, 96, 1))
FIRST_HEAD_AFTER = 10


class BlazeBlock(nn.Module):
    """Depthwise 3×3 then pointwise 1×1, added to the input (max-pooled when strided, zero channels appended)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.depthwise = nn.Conv2d(cin, cin, 3, stride=stride, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the padding inside the convolution and the skip added in place onto the channels it has (the appended
        # ones are zero): the same outputs as padded copies, 1.6× faster on 93 windows on 2 cores (measured)
        if self.stride == 2:  # TensorFlow's SAME padding: the odd pixel goes to the bottom and right
            h, skip = self.depthwise(F.pad(x, (0, 1, 0, 1))), F.max_pool2d(x, 2)
        else:
            h, skip = F.conv2d(x, self.depthwise.weight, self.depthwise.bias, padding=1, groups=self.cin), x
        out = self.pointwise(h)
        out[:, : self.cin] += skip
        return out.relu_()


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.classify8, self.classify16 = nn.Conv2d(88, 2, 1), nn.Conv2d(96, 6, 1)
        self.regress8, self.regress16 = nn.Conv2d(88, 32, 1), nn.Conv2d(96, 96, 1)


class BlazeFace(nn.Module):
    """(B, 3, 128, 128) in [−1, 1] → (scores logits (B, 896), regressions (B, 896, 16)) in MediaPipe's anchor order."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 5, stride=2)
        self.blocks = nn.ModuleList(BlazeBlock(*b) for b in BLOCKS)
        self.head = Heads()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, 128, 128), or (B, 1, 128, 128) for a gray image (the same as its 3 copies, a third of the stem's work)."""
        x = F.pad(x, (1, 2, 1, 2))
        if x.shape[1] == 1:  # conv over 3 equal channels = conv with the kernel summed over them
            x = F.relu(F.conv2d(x, self.stem.weight.sum(1, keepdim=True), self.stem.bias, stride=2))
        else:
            x = F.relu(self.stem(x))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == FIRST_HEAD_AFTER:
                fine = x
        b = x.shape[0]

        def flat(t: torch.Tensor, width: int) -> torch.Tensor:  # NHWC order: each cell's anchors together
            return t.permute(0, 2, 3, 1).reshape(b, -1, width)

        scores = torch.cat([flat(self.head.classify8(fine), 1), flat(self.head.classify16(x), 1)], 1)[..., 0]
        boxes = torch.cat([flat(self.head.regress8(fine), 16), flat(self.head.regress16(x), 16)], 1)
        return scores, boxes


@functools.lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] (x, y): 2 per cell of the 16×16 map, then 6 per cell of the 8×8 map."""
    out = []
    for cells, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[:cells, :cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    centres = np.concatenate(out).astype(np.float32)
    centres.flags.writeable = False  # computed once and shared
    return centres


@functools.lru_cache(maxsize=1)
def load_model() -> BlazeFace:
    """The shipped network in eval mode, loaded once per process (safetensors, float16 stored, float32 run),
    channels-last: its depthwise convolutions run 1.6× faster so on 2 cores (measured on 18 windows)."""
    from facedata.shipped_weights import load_shipped

    model = load_shipped(BlazeFace(), WEIGHTS, "BlazeFace's", "python -m facedata.blazeface_convert")
    return model.to(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Detection:
    """One face in the coordinates of the image searched: box (left, top, right, bottom), 6 keypoints (x, y)."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # (6, 2): the eye on the image's left, the other eye, nose tip, mouth, left ear, right ear
    score: float
    support: int = 1  # how many anchor boxes (over every window) were merged into this face


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression: the best remaining box and every box overlapping it by
    more than `iou` become one face, whose box and keypoints are their score-weighted mean and whose score
    is the best one's."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out, left = [], np.ones(len(scores), bool)
    while left.any():
        first = int(np.flatnonzero(left)[0])
        cluster = left & (_iou(boxes[first], boxes) > iou)
        cluster[first] = True
        weights = scores[cluster][:, None]
        box = (boxes[cluster] * weights).sum(0) / weights.sum()
        points = (keypoints[cluster] * weights[:, :, None]).sum(0) / weights.sum()
        out.append(Detection(tuple(float(v) for v in box), points.astype(np.float32), float(scores[first]),
                             int(cluster.sum())))
        left &= ~cluster
    return out


@dataclass(frozen=True)
class Window:
    """A square region of the photo (left, top, side in photo pixels); it may reach past the photo's edges."""

    left: float
    top: float
    side: float


def windows(hw: tuple[int, int], smallest_face: float, face_share: float = FACE_SHARE, overlap: float = 0.5,
            levels: int = WINDOW_LEVELS) -> list[Window]:
    """Square windows that show every face at least `smallest_face` px wide at about `face_share` of a
    window or more: the whole photo (letterboxed) first, then windows of the photo's short side halving
    down to smallest_face / face_share, at most `levels` sizes (each window is a chance of a false face:
    a face narrower than about a tenth of the short side is left to the larger windows), each size tiling
    the photo with `overlap` between neighbours."""
    h, w = hw
    out = [Window((w - max(h, w)) / 2, (h - max(h, w)) / 2, float(max(h, w)))]
    side = min(h, w) * 1.0
    floor = max(smallest_face / face_share, side / 2 ** (levels - 1))
    while side >= floor * 0.999 and side > 0:
        step = side * (1 - overlap)
        for top in _starts(h, side, step):
            for left in _starts(w, side, step):
                out.append(Window(left, top, side))
        side /= 2
    return out


def smallest_findable(hw: tuple[int, int], smallest_face: float) -> float:
    """The narrowest face (px) the windows are sized for in a photo of this size: `face_share` of the
    smallest window, whose side is at least a 2^(levels−1)th of the photo's short side."""
    floor = max(smallest_face / FACE_SHARE, min(hw) / 2 ** (WINDOW_LEVELS - 1))
    return max(float(smallest_face), FACE_SHARE * floor)


def _starts(length: int, side: float, step: float) -> list[float]:
    """Window starts along one axis: every `step`, the last one flush with the far edge."""
    if side >= length:
        return [(length - side) / 2]
    count = int(math.ceil((length - side) / step)) + 1
    return list(np.linspace(0.0, length - side, count))


def window_crops(image: np.ndarray, frames: list[Window], side: int = INPUT) -> torch.Tensor:
    """Each window resampled to side × side (bilinear, zero outside the photo) as (B, 1, side, side) in [−1, 1]."""
    h, w = image.shape
    src = torch.tensor(image, dtype=torch.float32).div(127.5).sub(1.0)[None, None]
    theta = []
    for f in frames:  # affine_grid maps the output's [−1, 1] square onto the window in normalized input coords
        cx, cy = f.left + f.side / 2, f.top + f.side / 2
        theta.append([[f.side / w, 0.0, 2 * cx / w - 1], [0.0, f.side / h, 2 * cy / h - 1]])
    theta = torch.tensor(theta, dtype=torch.float32)
    # Antialias big windows first: average-pool the photo so that one input pixel covers about one output pixel.
    factors = [max(1, int(f.side // side)) for f in frames]
    crops = []
    for factor in sorted(set(factors)):
        chosen = [i for i, each in enumerate(factors) if each == factor]
        pooled = F.avg_pool2d(src, factor, ceil_mode=True) if factor > 1 else src
        grid = F.affine_grid(theta[chosen], [len(chosen), 1, side, side], align_corners=False)
        crops.append((chosen, F.grid_sample(pooled.expand(len(chosen), -1, -1, -1), grid, mode="bilinear",
                                            padding_mode="zeros", align_corners=False)))
    out = torch.empty(len(frames), 1, side, side)
    for chosen, batch in crops:
        out[chosen] = batch
    return out  # one gray channel: BlazeFace reads it as its 3 equal copies


@functools.lru_cache(maxsize=1)
def mirror_order() -> np.ndarray:
    """(896,) for each anchor, the anchor at its mirror place (x → 1 − x) in the flipped window; anchors of
    one cell share a centre and a size, so the k-th of a cell maps onto the k-th of the mirrored cell."""
    out = []
    for cells, per_cell in ((16, 2), (8, 6)):
        y, x, k = np.meshgrid(np.arange(cells), np.arange(cells), np.arange(per_cell), indexing="ij")
        out.append((y * cells + (cells - 1 - x)) * per_cell + k + sum(o.size for o in out))
    order = np.concatenate([o.reshape(-1) for o in out])
    order.flags.writeable = False
    return order


MIRROR_FLOOR = 0.2  # a window is read again mirrored only where some anchor scores this much
KEYPOINT_MIRROR = (1, 0, 2, 3, 5, 4)  # a flipped face's image-left eye is the other eye, its left ear the right one


def _decode(raw: np.ndarray, rows: np.ndarray, mirrored: bool) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) and keypoints (n, 6, 2) of anchors `rows` in window units; `raw` (896, 16) of the window,
    or of the flipped window (then read at each anchor's mirror anchor and flipped back)."""
    centres = anchors()
    if mirrored:
        r = raw[mirror_order()[rows]]
        cx, kx = centres[rows, 0] - r[:, 0], centres[rows, 0, None] - r[:, 4::2]
    else:
        r = raw[rows]
        cx, kx = r[:, 0] + centres[rows, 0], r[:, 4::2] + centres[rows, 0, None]
    cy, ky = r[:, 1] + centres[rows, 1], r[:, 5::2] + centres[rows, 1, None]
    box = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2], 1)
    points = np.stack([kx, ky], -1)
    return box, (points[:, KEYPOINT_MIRROR] if mirrored else points)


def detect(image: np.ndarray, smallest_face: float = 16.0, threshold: float = 0.5, iou: float = 0.3,
           face_share: float = FACE_SHARE, batch: int = 64, mirror: str = "none") -> list[Detection]:
    """Faces in a (H, W) uint8 grayscale photo, best score first, in photo pixels.

    mirror: "none"; "mean" reads the windows' mirror images too and scores each anchor by the mean of the
    two logits (the network is not quite symmetric); "max" by the larger probability. Either way an
    anchor's box is the two readings' score-weighted mean. Only windows where some anchor reaches
    MIRROR_FLOOR are read twice, which keeps a photo's time near one reading."""
    return detect_at(image, (threshold,), smallest_face, iou, face_share, batch, mirror)[0]


def detect_at(image: np.ndarray, thresholds: tuple[float, ...], smallest_face: float = 16.0, iou: float = 0.3,
              face_share: float = FACE_SHARE, batch: int = 64, mirror: str = "none") -> list[list[Detection]]:
    """detect() at each of several thresholds from one reading of the photo: per threshold, the faces its
    anchors alone make (a lower threshold's weaker anchors are not blended into a stronger face's box)."""
    candidates = _candidates(image, smallest_face, min(thresholds), face_share, batch, mirror)
    if candidates is None:
        return [[] for _ in thresholds]
    boxes, points, scores = candidates
    return [weighted_nms(boxes[scores >= t], points[scores >= t], scores[scores >= t], iou) if (scores >= t).any() else []
            for t in thresholds]


def _candidates(image: np.ndarray, smallest_face: float, threshold: float, face_share: float, batch: int,
                mirror: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every anchor of every window scoring ≥ `threshold`: boxes (n, 4), keypoints (n, 6, 2) in photo pixels and
    scores (n,); None when there is none."""
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    assert mirror in ("none", "mean", "max"), mirror
    frames = windows(image.shape, smallest_face, face_share)
    model = load_model()
    boxes, points, scores = [], [], []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            part = frames[start : start + batch]
            crops = window_crops(image, part).contiguous(memory_format=torch.channels_last)
            logits, raw = model(crops)
            logits, raw = logits.clamp(-100, 100).double(), raw.numpy() / INPUT
            prob = torch.sigmoid(logits).numpy()
            # the mirror images of the windows where anything reaches MIRROR_FLOOR (most windows hold nothing)
            second = np.flatnonzero(prob.max(1) >= MIRROR_FLOOR) if mirror != "none" else np.zeros(0, int)
            if len(second):
                flipped_logits, flipped_raw = model(crops[second].flip(-1).contiguous(memory_format=torch.channels_last))
                flipped = flipped_logits.clamp(-100, 100).double()[:, torch.from_numpy(mirror_order().copy())]
                mirrored = torch.sigmoid(flipped).numpy()
                both = torch.sigmoid((logits[second] + flipped) / 2).numpy()
                flipped_raw = flipped_raw.numpy() / INPUT
            for i, f in enumerate(part):
                p = combined = prob[i]
                j = int(np.searchsorted(second, i))
                read_twice = j < len(second) and second[j] == i
                if read_twice:
                    pm = mirrored[j]
                    combined = both[j] if mirror == "mean" else np.maximum(p, pm)
                keep = np.flatnonzero(combined >= threshold)
                if not len(keep):
                    continue
                box, kp = _decode(raw[i], keep, False)
                if read_twice:
                    box_m, kp_m = _decode(flipped_raw[j], keep, True)
                    w = (p[keep] / np.maximum(p[keep] + pm[keep], 1e-9))[:, None]
                    box, kp = w * box + (1 - w) * box_m, w[:, :, None] * kp + (1 - w[:, :, None]) * kp_m
                boxes.append(box * f.side + [f.left, f.top, f.left, f.top])
                points.append(kp * f.side + [f.left, f.top])
                scores.append(combined[keep])
    if not scores:
        return None
    return np.concatenate(boxes), np.concatenate(points), np.concatenate(scores)
