"""Image files in, grayscale uint8 arrays out: loading, fixed crops, landmark alignment and resizing,
shared by every real-set reader.

Crops and alignments all work the same way: a square region of the source image (given by a
similarity transform from the unit square to image pixels) is sampled at about its own resolution,
then resized with Lanczos filtering to the output size, so that a 640×480 frame reduced to 32×32
is low-pass filtered rather than aliased. Coordinates are continuous pixel coordinates, x to the
right and y down, (0, 0) at the top-left corner of the image.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facedata.atomic import atomic_file
from facedata.errors import DataError, UserError

Size = int | tuple[int, int]
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".gif", ".webp")
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # what an image --out may end with
MIN_SIDE = 8  # a side shorter than this (or than the model's own) cannot hold a face worth editing or searching for


class ImageConversionWarning(UserWarning):
    """An input image was converted to grayscale or 8 bits, or resized to the model's size."""


def size_hw(size: Size | str) -> tuple[int, int]:
    """An output size as (H, W) from 32, (32, 32), "32" or "60x64" (H×W); both sides positive."""
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", size)
        if not match:
            raise UserError(f"size '{size}': expected N or HxW, e.g. 32 or 60x64")
        h = int(match.group(1))
        w = int(match.group(2)) if match.group(2) else h
    elif isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise UserError(f"size {size!r}: both sides must be at least 1 pixel")
    return h, w


def load_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to grayscale: (H, W) uint8; a missing or corrupt file is a DataError naming it."""
    return decode_image(Path(path))[0]


def decode_image(source: Path | bytes, label: str | None = None) -> tuple[np.ndarray, str]:
    """(H, W) uint8 luma, upright by its EXIF orientation, and the PIL mode of an image file or its bytes.

    Only regular files are opened (a FIFO would block); every failure is a DataError naming `label`.
    """
    label = label or ("image bytes" if isinstance(source, bytes) else str(source))
    if not isinstance(source, bytes) and not Path(source).is_file():
        if Path(source).exists():
            raise DataError(f"{label}: not a regular file (a folder, FIFO or device); give an image file")
        raise DataError(f"{label}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. damaged EXIF: the pixels decode, or we raise below
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                image.load()  # decode now, so that a truncated file fails here
                return pil_to_gray(ImageOps.exif_transpose(image)), image.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{label}: unreadable or corrupt image ({reason})") from None



def load_face(path: str | os.PathLike, size: tuple[int, int], label: str | None = None) -> np.ndarray:
    """An image file as one (H, W) uint8 face of `size`: the loader of every command that reads a face file.

    Refused (DataError naming `label`, default the path): anything but a regular, decodable image file,
    and images with a side under MIN_SIDE (or the model's own side). Colour is converted to luma and
    16-bit images are scaled to 0..255; each conversion (warn_conversion) and a resize (Lanczos) give
    one ImageConversionWarning.
    """
    path = Path(path)
    label = label or str(path)
    image, mode = decode_image(path, label)
    warn_conversion(mode, label)
    return conform_face(image, size, label)


def check_face_size(image: np.ndarray, size: tuple[int, int], label: str) -> None:
    """Refuse a decoded image with a side under MIN_SIDE (or the model's own side): a DataError naming `label`."""
    least = min(MIN_SIDE, *size)
    if min(image.shape) < least:
        raise DataError(f"{label}: a {image.shape[0]}×{image.shape[1]} image is too small to hold a face "
                        f"(need sides ≥ {least}; the model reads {size[0]}×{size[1]} grayscale faces)")


def warn_conversion(mode: str, label: str) -> None:
    """One ImageConversionWarning naming `label` when pil_to_gray changed a `mode` image: to luma, or to 8 bits."""
    if mode.startswith("I;16"):
        message = "16-bit image scaled to 8 bits (0–65535 to 0–255, not clipped)"
    elif mode in ("I", "F"):
        message = f"{'integer' if mode == 'I' else 'floating-point'} image ({mode}) scaled to 8 bits (0–255)"
    elif mode not in ("L", "1"):
        message = f"{mode} image converted to grayscale"
    else:
        return
    warnings.warn(f"{label}: {message}", ImageConversionWarning, stacklevel=3)


def conform_face(image: np.ndarray, size: tuple[int, int], label: str) -> np.ndarray:
    """A decoded, unaligned gray face at the model's `size`: too small refused, a resize warned."""
    check_face_size(image, size, label)
    if image.shape != tuple(size):
        warnings.warn(f"{label}: {image.shape[0]}×{image.shape[1]} image resized to the model's {size[0]}×{size[1]}",
                      ImageConversionWarning, stacklevel=3)
        image = resize(image, size)
    return image


def image_format(path: str | os.PathLike, option: str | None = "--out") -> str:
    """The PIL format an image output's suffix asks for (PNG or JPEG); any other suffix is a UserError."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        named = f"{option} {path}" if option else str(path)
        raise UserError(f"{named}: writes PNG or JPEG images; give a file name ending in .png, .jpg or .jpeg")
    return fmt


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PIL image atomically in the format its suffix names (image_format); returns the path."""
    path = Path(path)
    fmt = image_format(path, option=None)
    if fmt == "JPEG" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    with atomic_file(path) as tmp:
        image.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def pil_to_gray(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode as (H, W) uint8 luma; 16-bit and float images are scaled to 0..255."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def gray_array(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3|4) uint8 images as (N, H, W) uint8 luma (ITU-R 601-2, as PIL)."""
    if images.ndim == 3:
        return images
    assert images.ndim == 4 and images.shape[-1] in (3, 4), images.shape
    rgb = images[..., :3].astype(np.uint32)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000
    return luma.astype(np.uint8)


def resize(image: np.ndarray, size: Size) -> np.ndarray:
    """Resize (H, W) uint8 to `size` with Lanczos filtering (antialiased when shrinking)."""
    h, w = size_hw(size)
    if image.shape == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


# -- square crops ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SquareCrop:
    """A fixed square crop as fractions of the frame: centre (cx of width, cy of height), side of height."""

    cx: float
    cy: float
    side: float

    def transform(self, frame_hw: tuple[int, int]) -> np.ndarray:
        """The (2, 3) similarity from unit-square coordinates to this frame's pixels."""
        h, w = frame_hw
        side = self.side * h
        return np.array([[side, 0.0, self.cx * w - side / 2], [0.0, side, self.cy * h - side / 2]])


def crop_square(image: np.ndarray, transform: np.ndarray, size: Size) -> np.ndarray:
    """Sample the square that `transform` maps the unit square onto, then resize: (H, W) uint8.

    `transform` is (2, 3): [x, y] = transform @ [u, v, 1] for unit coordinates (u, v) in [0, 1]².
    Pixels outside the frame are black.
    """
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    assert transform.shape == (2, 3), transform.shape
    h, w = size_hw(size)
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))  # source pixels per unit
    side = int(max(h, w, round(scale)))
    # PIL maps each output pixel (x, y) of the side×side intermediate to the input (a x + b y + c, d x + e y + f).
    matrix = transform.copy()
    matrix[:, :2] /= side
    coefficients = tuple(float(c) for c in matrix.reshape(-1))
    square = Image.fromarray(image).transform((side, side), Image.Transform.AFFINE, coefficients,
                                              resample=Image.Resampling.BILINEAR, fillcolor=0)
    return resize(np.asarray(square, dtype=np.uint8), (h, w))


# -- landmark alignment ------------------------------------------------------------------------
def similarity_from_points(unit_points: np.ndarray, image_points: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift) taking unit points to image points: (2, 3).

    Two point pairs determine it exactly; more are fitted in the least-squares sense.
    """
    unit_points = np.asarray(unit_points, dtype=np.float64)
    image_points = np.asarray(image_points, dtype=np.float64)
    assert unit_points.shape == image_points.shape and unit_points.shape[1] == 2 and len(unit_points) >= 2
    u, v = unit_points[:, 0], unit_points[:, 1]
    ones, zeros = np.ones_like(u), np.zeros_like(u)
    # x = a u - b v + tx ;  y = b u + a v + ty
    design = np.concatenate([np.stack([u, -v, ones, zeros], 1), np.stack([v, u, zeros, ones], 1)])
    target = np.concatenate([image_points[:, 0], image_points[:, 1]])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target, rcond=None)
    if np.hypot(a, b) < 1e-9:
        raise DataError(f"landmarks {image_points.tolist()}: coincide, cannot align")
    return np.array([[a, -b, tx], [b, a, ty]])


@dataclass(frozen=True)
class EyesTemplate:
    """Where the two eyes land in the aligned square (unit coordinates, image-left eye first)."""

    left: tuple[float, float] = (0.35, 0.48)
    right: tuple[float, float] = (0.65, 0.48)


@dataclass(frozen=True)
class EyesChinTemplate:
    """Where the eyes' midpoint and the chin land in the aligned square (unit coordinates).

    Aligning on the eye midpoint and the chin rather than on both eyes keeps the scale steady across
    yaw: the eyes close up as the head turns, the eye-to-chin distance hardly changes.
    """

    eyes_mid: tuple[float, float] = (0.5, 0.38)
    chin: tuple[float, float] = (0.5, 0.86)


def align_on_eyes(image: np.ndarray, eye_a: Sequence[float], eye_b: Sequence[float], size: Size,
                  template: EyesTemplate = EyesTemplate()) -> np.ndarray:
    """Crop (H, W) uint8 so the eyes sit at the template's positions; either eye may come first."""
    eyes = sorted([tuple(map(float, eye_a)), tuple(map(float, eye_b))])  # image-left eye first
    transform = similarity_from_points(np.array([template.left, template.right]), np.array(eyes))
    return crop_square(image, transform, size)


def align_on_eyes_chin(image: np.ndarray, eye_a: Sequence[float], eye_b: Sequence[float], chin: Sequence[float],
                       size: Size, template: EyesChinTemplate = EyesChinTemplate()) -> np.ndarray:
    """Crop (H, W) uint8 so the eyes' midpoint and the chin sit at the template's positions (§4.1)."""
    mid = (np.asarray(eye_a, dtype=np.float64) + np.asarray(eye_b, dtype=np.float64)) / 2
    transform = similarity_from_points(np.array([template.eyes_mid, template.chin]),
                                       np.array([mid, np.asarray(chin, dtype=np.float64)]))
    return crop_square(image, transform, size)


def is_image_file(path: Path) -> bool:
    """Whether the file name has one of the image suffixes the readers decode."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
