"""Faces found in a grayscale photo, offline: dlib's HOG frontal detector and its 5-point landmarks.

dlib's frontal detector slides an 80×80 window over an image pyramid (each level 5/6 of the last), so
the narrowest face box it reports is 73 px (measured). Every photo is therefore first resized so that
the smallest face we accept (`min_face` pixels wide in the photo) becomes that wide, within a
work-size budget: small photos (a 64×60 webcam
frame) are enlarged, large ones (a 12-megapixel phone photo) are reduced. The landmarks are read on
the same work image and mapped back to the photo's own pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from facedata.dlib_models import import_dlib, model_file
from facedata.imageio import resize

SMALLEST_BOX = 73  # px: the narrowest face box dlib's frontal detector reports (its window is 80×80)
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"


@dataclass(frozen=True)
class DetectConfig:
    """How faces are searched for: the smallest face accepted, the work-size budget, the detector threshold."""

    min_face: int = 16  # px in the photo: a narrower face is refused (a 32-px crop of it would be mostly made up)
    max_work_pixels: int = 2048 * 2048  # the work image (photo resized for the detector) holds at most this many
    threshold: float = 0.0  # dlib's score threshold (0 is dlib's own default; lower finds more, and more false faces)

    def work_scale(self, hw: tuple[int, int]) -> float:
        """The factor the photo is resized by before detection: min_face → SMALLEST_BOX px, capped by the budget."""
        h, w = hw
        return min(SMALLEST_BOX / self.min_face, math.sqrt(self.max_work_pixels / (h * w)))

    def smallest_findable(self, hw: tuple[int, int]) -> float:
        """The narrowest face (px in the photo) the detector can find in a photo of this size."""
        return max(float(self.min_face), SMALLEST_BOX / self.work_scale(hw))


@dataclass(frozen=True)
class DetectedFace:
    """One face in photo pixel coordinates (x right, y down, (0, 0) the top-left corner)."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    eyes: tuple[tuple[float, float], tuple[float, float]]  # each eye's centre, the image-left eye first
    nose: tuple[float, float]  # the base of the nose
    score: float  # dlib's detection score

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return self.width * (self.box[3] - self.box[1])


@functools.lru_cache(maxsize=1)
def dlib_face_models():
    """dlib, its HOG frontal detector and its 5-point landmark predictor, loaded once per process."""
    dlib = import_dlib("face detection and alignment")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file(LANDMARKS_FILE)))


def detect_faces(image: np.ndarray, config: DetectConfig = DetectConfig()) -> list[DetectedFace]:
    """Every face dlib finds in (H, W) uint8, largest box first (ties: left to right)."""
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    dlib, detector, predictor = dlib_face_models()
    h, w = image.shape
    scale = config.work_scale((h, w))
    work_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    work = np.ascontiguousarray(resize(image, work_hw))
    sy, sx = work_hw[0] / h, work_hw[1] / w
    rects, scores, _ = detector.run(work, 0, config.threshold)
    faces = []
    for rect, score in zip(rects, scores):
        shape = predictor(work, rect)
        # dlib numbers pixel centres 0, 1, …; continuous coordinates put pixel i's centre at i + 0.5.
        points = np.array([[(shape.part(i).x + 0.5) / sx, (shape.part(i).y + 0.5) / sy] for i in range(5)])
        eyes = sorted([tuple(points[0:2].mean(0)), tuple(points[2:4].mean(0))])  # image-left eye first
        box = (rect.left() / sx, rect.top() / sy, (rect.right() + 1) / sx, (rect.bottom() + 1) / sy)
        faces.append(DetectedFace(box=tuple(map(float, box)), eyes=(tuple(map(float, eyes[0])), tuple(map(float, eyes[1]))),
                                  nose=(float(points[4, 0]), float(points[4, 1])), score=float(score)))
    return sorted(faces, key=lambda face: (-face.area, face.box[0]))
