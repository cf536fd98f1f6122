"""The one eye-aligned crop of a detected face that every photo entry point makes (import, generate,
query, a server): the face upright, the eyes level and centred, framed as SynthPIE frames its faces.

The fractions were measured with dlib's own landmarks on 160 frontal SynthPIE renders (128×128):
eye centres 0.281 of the side apart on a line 0.41 of the side from the top, the base of the nose
0.247 below that line. SynthPIE keeps the head's size as it turns, while the eyes close up (0.20
apart at ±45°) and the eye-to-nose distance stays put; a head tilted up shortens the eye-to-nose
distance instead. So the scale is set by whichever of the two says the face is larger, which keeps a
turned or raised head the size of a frontal one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facedata.detect import DetectedFace
from facedata.imageio import crop_square


@dataclass(frozen=True)
class FaceCrop:
    """The aligned crop's geometry, as fractions of its side, and its size in pixels (square)."""

    size: int = 32
    eye_distance: float = 0.28  # between the eye centres of a frontal face
    eye_line: float = 0.41  # from the top to the line through the eyes (centred left to right)
    eye_to_nose: float = 0.25  # from the eye line down to the base of the nose, in a frontal face

    def __post_init__(self):
        assert self.size >= 1 and 0 < self.eye_distance < 1 and 0 < self.eye_line < 1 and 0 < self.eye_to_nose < 1, self


@dataclass(frozen=True)
class BoxFraming:
    """The crop of a face without landmarks (a profile box), from its detection box alone: upright, its
    side `side` box widths, its centre `across` and `down` box widths from the box's centre.

    The defaults are the eye-aligned crop's relation to dlib's HOG box, measured on 75 cmu_faces
    frontal photos (median side 1.51, centre 0.00 across and 0.12 up; spread 0.14, 0.02, 0.04).
    `across` is mirrored for a face looking right.
    """

    side: float = 1.51
    across: float = 0.0
    down: float = -0.12


# Per detector where its box differs from HOG's: BlazeFace's, measured the same way on 104 frontal cmu_faces
# photos of the train people (median side 1.48, centre 0.03 across and 0.13 up; spread 0.12, 0.02, 0.03).
BOX_FRAMINGS = {"blaze": BoxFraming(side=1.48, across=0.0, down=-0.13)}
BOX_FRAMINGS["blaze-unchecked"] = BOX_FRAMINGS["blaze"]  # the same boxes, before the face check


def box_transform(face: DetectedFace, crop: FaceCrop = FaceCrop(), framing: BoxFraming | None = None,
                  aspect: float = 1.0) -> np.ndarray:
    """The (2, 3) transform from the crop's unit square to photo pixels, from the face's box alone; with
    `aspect` (height / width) for crops that are not square, such as a dataset's whole photos. Without a
    `framing`, the detector's own (BOX_FRAMINGS, else HOG's)."""
    framing = framing or BOX_FRAMINGS.get(face.source, BoxFraming())
    left, top, right, bottom = face.box
    width = right - left
    across = -framing.across if face.kind == "profile-right" else framing.across
    centre = np.array([(left + right) / 2 + across * width, (top + bottom) / 2 + framing.down * width])
    side = framing.side * width
    height = side * aspect
    return np.array([[side, 0.0, centre[0] - side / 2], [0.0, height, centre[1] - height / 2]])


def crop_transform(face: DetectedFace, crop: FaceCrop = FaceCrop()) -> np.ndarray:
    """The (2, 3) similarity from the crop's unit square to photo pixels for this face.

    Rotation: the eye line level. Scale: the larger of the eye distance and the eye-to-nose distance,
    each divided by its fraction. Position: the eyes' midpoint at (0.5, eye_line). A face without
    landmarks (a profile box) is framed from its box (box_transform).
    """
    if face.eyes is None or face.nose is None:
        return box_transform(face, crop)
    left, right = np.asarray(face.eyes[0], np.float64), np.asarray(face.eyes[1], np.float64)
    middle = (left + right) / 2
    across = right - left
    angle = float(np.arctan2(across[1], across[0]))
    down = np.array([-np.sin(angle), np.cos(angle)])  # the crop's downward direction in the photo
    nose_drop = float(np.dot(np.asarray(face.nose, np.float64) - middle, down))
    side = max(float(np.hypot(*across)) / crop.eye_distance, nose_drop / crop.eye_to_nose)  # photo px per crop side
    rotation = side * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = middle - rotation @ np.array([0.5, crop.eye_line])
    return np.concatenate([rotation, shift[:, None]], axis=1)


def align_face(image: np.ndarray, face: DetectedFace, crop: FaceCrop = FaceCrop()) -> np.ndarray:
    """The face of (H, W) uint8 `image` as a (size, size) uint8 aligned crop; outside the photo is black."""
    return crop_square(image, crop_transform(face, crop), crop.size)
