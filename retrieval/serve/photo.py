"""Uploaded photos in, query faces out: the one place the server turns bytes into a (H, W) uint8 face.

It reads pixels the way `rbg query` reads an image file (facedata.imageio: any mode to grayscale,
Lanczos resize to the model's size). Face detection and alignment, once the project has them, belong
here: `upload_face` is the single entry point the app calls.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from facedata.errors import DataError
from facedata.imageio import pil_to_gray, resize
from retrieval.query import MIN_SIDE


class NotAnImage(DataError):
    """The upload is not an image the decoder reads."""


class ImageTooLarge(DataError):
    """The upload decodes to more pixels than the server accepts."""


def upload_face(data: bytes, name: str, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]]:
    """The uploaded image as a (H, W) uint8 face of `size`, and notes on what was converted.

    The pixel count is checked from the header before anything is decoded, so a small file that
    would decompress to a huge image is refused without the memory it would take.
    """
    if not data:
        raise NotAnImage(f"upload '{name}': empty file (send a face photo: PNG, JPEG, …)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged EXIF and the like: the pixels decode, or we raise below
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLarge(f"upload '{name}': {width}×{height} = {width * height:,} pixels, "
                                        f"over the limit of {max_pixels:,}")
                mode = image.mode
                image.load()
                gray = pil_to_gray(image)
    except UnidentifiedImageError:
        raise NotAnImage(f"upload '{name}': not an image (no known image format; send PNG, JPEG, …)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise NotAnImage(f"upload '{name}': unreadable or corrupt image ({reason[:160]})") from None
    least = min(MIN_SIDE, *size)
    if min(gray.shape) < least:
        raise DataError(f"upload '{name}': a {gray.shape[0]}×{gray.shape[1]} image is too small to hold a face "
                        f"(need sides ≥ {least}; the model reads {size[0]}×{size[1]} grayscale faces)")
    notes = []
    if mode not in ("L", "1", "F") and not mode.startswith("I"):
        notes.append(f"{mode} image converted to grayscale")
    if gray.shape != tuple(size):
        notes.append(f"{gray.shape[0]}×{gray.shape[1]} image resized to the model's {size[0]}×{size[1]}")
        gray = resize(gray, size)
    return gray, notes
