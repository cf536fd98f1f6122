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
# how the window sizes below the whole photo are read: "image", the photo resized so that a window of that size is
# the network's input, read whole (its maps are the same as every window's at a stride of 8 and 16 px, with the
# photo's own pixels around every face); or "tiles", half-overlapping windows cut out and read one by one, whose
# edges (zeros outside the photo, a cut through the scene) are one more chance of a false face
SEARCHES = ("image", "tiles")
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


def level_sides(hw: tuple[int, int], smallest_face: float, face_share: float = FACE_SHARE,
                levels: int = WINDOW_LEVELS) -> list[float]:
    """The window sides searched below the whole photo: its short side halving down to smallest_face / face_share,
    at most `levels` sizes (each size is more chances of a false face: a face narrower than about a tenth of the
    short side is left to the larger windows)."""
    side = min(hw) * 1.0
    floor = max(smallest_face / face_share, side / 2 ** (levels - 1))
    out = []
    while side >= floor * 0.999 and side > 0:
        out.append(side)
        side /= 2
    return out


def whole_photo(hw: tuple[int, int]) -> Window:
    """The whole photo as one window, letterboxed into a square (the first window of every search)."""
    h, w = hw
    return Window((w - max(h, w)) / 2, (h - max(h, w)) / 2, float(max(h, w)))


def windows(hw: tuple[int, int], smallest_face: float, face_share: float = FACE_SHARE, overlap: float = 0.5,
            levels: int = WINDOW_LEVELS) -> list[Window]:
    """Square windows that show every face at least `smallest_face` px wide at about `face_share` of a
    window or more: the whole photo (letterboxed) first, then tiles of every side of `level_sides`, each
    size tiling the photo with `overlap` between neighbours (the "tiles" search)."""
    h, w = hw
    out = [whole_photo(hw)]
    for side in level_sides(hw, smallest_face, face_share, levels):
        step = side * (1 - overlap)
        for top in _starts(h, side, step):
            for left in _starts(w, side, step):
                out.append(Window(left, top, side))
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


def _decode(raw: np.ndarray, rows: np.ndarray, mirrored: bool, centres: np.ndarray | None = None,
            order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) and keypoints (n, 6, 2) of anchors `rows`, in the units of the anchor `centres` (a window's
    anchors() and `raw` (896, 16) / INPUT by default); `raw` of the flipped image when `mirrored` (then read at
    each anchor's mirror anchor, `order`, and flipped back)."""
    centres = anchors() if centres is None else centres
    if mirrored:
        r = raw[(mirror_order() if order is None else order)[rows]]
        cx, kx = centres[rows, 0] - r[:, 0], centres[rows, 0, None] - r[:, 4::2]
    else:
        r = raw[rows]
        cx, kx = r[:, 0] + centres[rows, 0], r[:, 4::2] + centres[rows, 0, None]
    cy, ky = r[:, 1] + centres[rows, 1], r[:, 5::2] + centres[rows, 1, None]
    box = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2], 1)
    points = np.stack([kx, ky], -1)
    return box, (points[:, KEYPOINT_MIRROR] if mirrored else points)


def _sigmoid(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits.clamp(-100, 100).double()).numpy()


def _anchor_faces(logits: torch.Tensor, raw: np.ndarray, threshold: float, mirror: str, flipped_logits=None,
                  flipped_raw=None, centres=None, order=None):
    """One reading's anchors scoring at least `threshold`: (boxes (n, 4), keypoints (n, 6, 2), scores (n,)) in the
    units of `centres` (as _decode), or None. With the mirror image's reading (flipped_logits, flipped_raw), an
    anchor scores the mean of the two logits ("mean") or the larger probability ("max"), and its box is the two
    readings' score-weighted mean."""
    p = combined = _sigmoid(logits)
    if flipped_logits is not None:
        flipped = flipped_logits[torch.from_numpy(np.array(mirror_order() if order is None else order))]
        pm = _sigmoid(flipped)
        combined = _sigmoid((logits + flipped) / 2) if mirror == "mean" else np.maximum(p, pm)
    keep = np.flatnonzero(combined >= threshold)
    if not len(keep):
        return None
    box, kp = _decode(raw, keep, False, centres, order)
    if flipped_logits is not None:
        box_m, kp_m = _decode(flipped_raw, keep, True, centres, order)
        w = (p[keep] / np.maximum(p[keep] + pm[keep], 1e-9))[:, None]
        box, kp = w * box + (1 - w) * box_m, w[:, :, None] * kp + (1 - w[:, :, None]) * kp_m
    return box, kp, combined[keep]


@functools.lru_cache(maxsize=16)
def image_anchors(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For BlazeFace run on a whole (height, width) image (multiples of 16): its anchors' centres (n, 2) in pixels
    (2 per cell of the stride-8 map, then 6 per cell of the stride-16 map, in the network's output order) and each
    anchor's mirror anchor (x → width − x) in the flipped image."""
    centres, order, offset = [], [], 0
    for stride, per_cell in ((8, 2), (16, 6)):
        rows, cols = height // stride, width // stride
        y, x, k = np.meshgrid(np.arange(rows), np.arange(cols), np.arange(per_cell), indexing="ij")
        centres.append(np.stack([(x + 0.5) * stride, (y + 0.5) * stride], -1).reshape(-1, 2))
        order.append(((y * cols + (cols - 1 - x)) * per_cell + k).reshape(-1) + offset)
        offset += rows * cols * per_cell
    out = np.concatenate(centres).astype(np.float32), np.concatenate(order)
    for array in out:
        array.flags.writeable = False
    return out


def level_image(source: torch.Tensor, side: float) -> tuple[torch.Tensor, float, float]:
    """The photo (1, 1, H, W) in [−1, 1] resized so that a window of `side` px becomes INPUT px (averaged first
    where it shrinks more than 2×, as window_crops does), padded with zeros (mid-gray) at the bottom and right to
    multiples of 16; and the factors (sx, sy) from its pixels back to the photo's."""
    h, w = source.shape[-2:]
    factor = max(1, int(side // INPUT))
    pooled = F.avg_pool2d(source, factor, ceil_mode=True) if factor > 1 else source
    hh, ww = max(1, round(h * INPUT / side)), max(1, round(w * INPUT / side))
    resized = F.interpolate(pooled, size=(hh, ww), mode="bilinear", align_corners=False, antialias=False)
    padded = F.pad(resized, (0, -ww % 16, 0, -hh % 16))
    return padded.contiguous(memory_format=torch.channels_last), w / ww, h / hh


def detect(image: np.ndarray, smallest_face: float = 16.0, threshold: float = 0.5, iou: float = 0.3,
           face_share: float = FACE_SHARE, batch: int = 64, mirror: str = "none", search: str = "tiles") -> list[Detection]:
    """Faces in a (H, W) uint8 grayscale photo, best score first, in photo pixels.

    mirror: "none"; "mean" reads the windows' mirror images too and scores each anchor by the mean of the
    two logits (the network is not quite symmetric); "max" by the larger probability. Either way an
    anchor's box is the two readings' score-weighted mean. Only windows where some anchor reaches
    MIRROR_FLOOR are read twice, which keeps a photo's time near one reading. search: SEARCHES."""
    return detect_at(image, (threshold,), smallest_face, iou, face_share, batch, mirror, search)[0]


def detect_at(image: np.ndarray, thresholds: tuple[float, ...], smallest_face: float = 16.0, iou: float = 0.3,
              face_share: float = FACE_SHARE, batch: int = 64, mirror: str = "none", search: str = "tiles"
              ) -> list[list[Detection]]:
    """detect() at each of several thresholds from one reading of the photo: per threshold, the faces its
    anchors alone make (a lower threshold's weaker anchors are not blended into a stronger face's box)."""
    candidates = _candidates(image, smallest_face, min(thresholds), face_share, batch, mirror, search)
    if candidates is None:
        return [[] for _ in thresholds]
    boxes, points, scores = candidates
    return [weighted_nms(boxes[scores >= t], points[scores >= t], scores[scores >= t], iou) if (scores >= t).any() else []
            for t in thresholds]


def _candidates(image: np.ndarray, smallest_face: float, threshold: float, face_share: float, batch: int,
                mirror: str, search: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every anchor scoring ≥ `threshold`, from the whole photo letterboxed into one window and then every size
    of level_sides: as one resized image each ("image") or as tiles of that size ("tiles"). Boxes (n, 4),
    keypoints (n, 6, 2) in photo pixels and scores (n,); None when there is none."""
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    assert mirror in ("none", "mean", "max"), mirror
    if search not in SEARCHES:
        raise ValueError(f"unknown BlazeFace search '{search}' (valid: {', '.join(SEARCHES)})")
    frames = windows(image.shape, smallest_face, face_share) if search == "tiles" else [whole_photo(image.shape)]
    model = load_model()
    found = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            part = frames[start : start + batch]
            crops = window_crops(image, part).contiguous(memory_format=torch.channels_last)
            logits, raw = model(crops)
            raw = raw.numpy() / INPUT
            # the mirror images of the windows where anything reaches MIRROR_FLOOR (most windows hold nothing)
            second = (np.flatnonzero(_sigmoid(logits).max(1) >= MIRROR_FLOOR) if mirror != "none"
                      else np.zeros(0, int))
            if len(second):
                flipped_logits, flipped_raw = model(crops[second].flip(-1).contiguous(memory_format=torch.channels_last))
                flipped_raw = flipped_raw.numpy() / INPUT
            for i, f in enumerate(part):
                j = int(np.searchsorted(second, i))
                twice = j < len(second) and second[j] == i
                faces = _anchor_faces(logits[i], raw[i], threshold, mirror, flipped_logits[j] if twice else None,
                                      flipped_raw[j] if twice else None)
                if faces is not None:
                    box, kp, score = faces
                    found.append((box * f.side + [f.left, f.top, f.left, f.top], kp * f.side + [f.left, f.top], score))
        if search == "image":
            source = torch.tensor(image, dtype=torch.float32).div(127.5).sub(1.0)[None, None]
            for side in level_sides(image.shape, smallest_face, face_share):
                x, sx, sy = level_image(source, side)
                logits, raw = model(x)
                centres, order = image_anchors(*x.shape[-2:])
                twice = mirror != "none" and _sigmoid(logits[0]).max() >= MIRROR_FLOOR
                if twice:
                    flipped_logits, flipped_raw = model(x.flip(-1).contiguous(memory_format=torch.channels_last))
                faces = _anchor_faces(logits[0], raw[0].numpy(), threshold, mirror,
                                      flipped_logits[0] if twice else None, flipped_raw[0].numpy() if twice else None,
                                      centres, order)
                if faces is not None:
                    box, kp, score = faces
                    found.append((box * [sx, sy, sx, sy], kp * [sx, sy], score))
    if not found:
        return None
    return tuple(np.concatenate(parts) for parts in zip(*found))
