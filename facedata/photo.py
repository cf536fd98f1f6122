"""Ordinary photos in, aligned grayscale faces out: the library call behind `--align` everywhere.

`load_face(path_or_bytes, size)` decodes a photo (EXIF orientation applied, CMYK converted, 16-bit
scaled), finds its faces, picks one and returns the eye-aligned crop of facedata.align. Every way it
can fail is a DataError naming the photo: unreadable, no face, fewer faces than the one asked for,
or a face too small to align.

Choices: several faces → the largest (face=1), face=N the N-th largest by detection box; 16-bit
pixels are scaled by the full 16-bit range (65535 → 255), not stretched or clipped; CMYK is
converted with Pillow's plain formula (no colour profile); the grayscale is ITU-R 601-2 luma.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from facedata.align import FaceCrop, align_face
from facedata.detect import DetectConfig, DetectedFace, detect_faces
from facedata.errors import DataError
from facedata.imageio import ImageConversionWarning, check_face_size, conform_face, decode_image, warn_conversion

Photo = str | os.PathLike | bytes


class NoFaceError(DataError):
    """No usable face in a photo: none found, not the one asked for, or too small."""


@dataclass(frozen=True)
class AlignedFace:
    """The aligned crop and what detection saw: how many faces, which one was used."""

    image: np.ndarray  # (size, size) uint8
    face: DetectedFace
    found: int  # faces detected in the photo
    chosen: int  # 1-based rank (by size) of the face used


def read_photo(photo: Photo, label: str | None = None) -> np.ndarray:
    """Decode a photo file or its bytes to (H, W) uint8 grayscale, upright by its EXIF orientation."""
    return decode_image(photo if isinstance(photo, bytes) else Path(photo), label)[0]


def choose_face(faces: list[DetectedFace], face: int, label: str, image_hw: tuple[int, int],
                detect: DetectConfig = DetectConfig()) -> DetectedFace:
    """The face-th largest face (1 = the largest), refused when absent or narrower than detect.min_face."""
    if face < 1:
        raise DataError(f"{label}: face {face} is not a face number (1 is the largest, 2 the next, …)")
    if not faces:
        raise NoFaceError(f"{label}: no face found ({detect.describe()} finds faces at least "
                          f"{detect.smallest_findable(image_hw):.0f} px wide{detect.turn_limit()})")
    if face > len(faces):
        raise NoFaceError(f"{label}: face {face} asked for, but {len(faces)} found (valid: 1..{len(faces)}, largest first)")
    chosen = faces[face - 1]
    if chosen.width < detect.min_face:
        raise NoFaceError(f"{label}: the face is {chosen.width:.0f} px wide, below the {detect.min_face} px "
                          "minimum for an aligned crop")
    return chosen


def align_photo(image: np.ndarray, label: str, crop: FaceCrop = FaceCrop(), face: int = 1,
                detect: DetectConfig = DetectConfig()) -> AlignedFace:
    """Detect the faces of a decoded (H, W) uint8 photo and crop the chosen one."""
    faces = detect_faces(image, detect)
    chosen = choose_face(faces, face, label, image.shape, detect)
    return AlignedFace(image=align_face(image, chosen, crop), face=chosen, found=len(faces), chosen=face)


def load_face(photo: Photo, size: int = 32, align: bool = True, face: int = 1, crop: FaceCrop = FaceCrop(),
              detect: DetectConfig = DetectConfig(), label: str | None = None) -> np.ndarray:
    """A photo (path or bytes) as a (size, size) uint8 face: aligned on its eyes, or with align=False
    the whole picture resized (for photos that are already face crops)."""
    label = label or ("image bytes" if isinstance(photo, bytes) else str(photo))
    image, mode = decode_image(photo if isinstance(photo, bytes) else Path(photo), label)
    return photo_face(label, image, mode, (size, size), align, face, replace(crop, size=size), detect)


def wants_alignment(align: bool | None, image_hw: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether a photo is detected and aligned: as asked, else (None) unless it already has the model's size."""
    return bool(align) if align is not None else tuple(image_hw) != tuple(size)


def photo_face(label: str, image: np.ndarray, mode: str, size: tuple[int, int], align: bool | None = None,
               face: int = 1, crop: FaceCrop | None = None, detect: DetectConfig = DetectConfig()) -> np.ndarray:
    """A decoded photo (H', W') uint8 as the model's (H, W) face: eye-aligned (see wants_alignment) or resized.

    The one path from pixels to a face, for `rbg query`, `rbg generate`, load_face and the server alike;
    `mode` is the file's PIL mode: a colour or 16-bit photo gives an ImageConversionWarning, and so does a
    photo with several faces, naming the one used.
    """
    warn_conversion(mode, label)
    if not wants_alignment(align, image.shape, size):
        return conform_face(image, size, label)
    check_face_size(image, size, label)
    crop = crop or aligned_at(AlignConfig(), size, label).crop
    aligned = align_photo(image, label, crop, face, detect)
    if aligned.found > 1:
        warnings.warn(f"{label}: {aligned.found} faces found; used face {face} by size (1 = largest; --face N picks another)",
                      ImageConversionWarning, stacklevel=3)
    return aligned.image


@dataclass(frozen=True)
class AlignConfig:
    """How a set of photos is aligned on import: the crop, which face, detection, and what a face-less row does."""

    crop: FaceCrop = FaceCrop()
    face: int = 1  # the face-th largest face of each photo
    detect: DetectConfig = DetectConfig()
    skip_no_face: bool = False  # True: leave out rows without a usable face (listed); False: stop at the first

    def describe(self) -> str:
        """One line for reports: what was aligned how."""
        c = self.crop
        which = "the largest face" if self.face == 1 else f"face {self.face} by size"
        return (f"found by {self.detect.describe()}, eye-aligned where dlib's 5 landmarks were read, else framed "
                f"from the box, "
                f"{which}: eye distance {c.eye_distance}, eye line {c.eye_line}, eye to nose {c.eye_to_nose} of the "
                f"{c.size}-px side")


def align_rows(photos, labels: list[str], config: AlignConfig = AlignConfig(),
               progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Align many photos (files, bytes or decoded (H, W) uint8 arrays): (images (n, S, S) uint8, kept (N,) bool, left out).

    Without skip_no_face the first photo without a usable face raises its NoFaceError; with it, that
    row is left out and listed as {"row", "source", "reason"}.
    """
    from tqdm import tqdm

    assert len(photos) == len(labels), (len(photos), len(labels))
    crops, kept, left_out = [], np.zeros(len(labels), dtype=bool), []
    for row, (photo, label) in enumerate(tqdm(list(zip(photos, labels)), desc="align faces", unit="img", disable=not progress)):
        image = photo if isinstance(photo, np.ndarray) else read_photo(photo, label)
        try:
            crops.append(align_photo(image, label, config.crop, config.face, config.detect).image)
        except NoFaceError as exc:
            if not config.skip_no_face:
                raise NoFaceError(f"{exc} (row {row}; --skip-no-face leaves such rows out)") from None
            left_out.append({"row": row, "source": label, "reason": str(exc)})
            continue
        kept[row] = True
    if not crops:
        raise NoFaceError(f"no usable face in any of the {len(labels)} photos (first: {left_out[0]['reason']})")
    return np.stack(crops), kept, left_out


def aligned_at(config: AlignConfig, hw: tuple[int, int] | None, where) -> AlignConfig:
    """The config with its crop at output size `hw` (None: the crop's own); aligned crops are square."""
    if hw is None:
        return config
    if hw[0] != hw[1]:
        raise DataError(f"{where}: aligned faces are square; size {hw[0]}x{hw[1]} is not (align to a square size, e.g. 32)")
    return replace(config, crop=replace(config.crop, size=hw[0]))


def alignment_record(config: AlignConfig, left_out: list[dict]) -> dict:
    """What a FaceSet's info records about its alignment: the line, the config, the rows left out."""
    return {"alignment": config.describe(), "align_config": asdict(config), "unaligned": left_out}
