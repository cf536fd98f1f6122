"""Uploaded photos in, query faces out: the one place the server turns bytes into a (H, W) uint8 face.

It reads pixels the way `rbg query` reads an image file (facedata.imageio: EXIF orientation, any mode
to grayscale) and makes the face the same way (facedata.photo.photo_face: the photo path's detector and its
one crop, or a resize for images already of the model's size). `upload_face` is the single
entry point the app calls.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from facedata.detect import DetectConfig
from facedata.errors import DataError
from facedata.imageio import decode_image
from facedata.photo import photo_face, wants_alignment
from retrieval.query import framed_crops


class NotAnImage(DataError):
    """The upload is not an image the decoder reads."""


class ImageTooLarge(DataError):
    """The upload decodes to more pixels than the server accepts."""


def upload_face(data: bytes, name: str, size: tuple[int, int], max_pixels: int, align: bool | None = None,
                face_number: int = 1, detect: DetectConfig = DetectConfig(),
                framing=None) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """The uploaded image as a (H, W) uint8 face of `size`, notes on what was converted, and with a photo
    `framing` (retrieval.photo_framing) the face's crops (m, H, W) (the face is the first), else None.

    It takes the path of `rbg query` (facedata.photo.photo_face, or retrieval.query.framed_crops with a
    framing): a photo not already of the model's size has its face detected (by `detect`, or the
    framing's own detector) and cropped (the largest, or the `face_number`-th by size).

    The pixel count is checked from the header before anything is decoded, so a small file that
    would decompress to a huge image is refused (ImageTooLarge) without the memory it would take;
    so is one whose header Pillow itself calls a decompression bomb.
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
    except UnidentifiedImageError:
        raise NotAnImage(f"upload '{name}': not an image (no known image format; send PNG, JPEG, …)") from None
    except Image.DecompressionBombError as exc:  # Pillow's own header check, for sizes far over any limit
        reason = " ".join(str(exc).split())
        raise ImageTooLarge(f"upload '{name}': too many pixels ({reason[:160]}); "
                            f"the server's limit is {max_pixels:,}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise NotAnImage(f"upload '{name}': unreadable or corrupt image ({reason[:160]})") from None
    try:
        gray, mode = decode_image(data, f"upload '{name}'")  # upright by EXIF, any mode to luma
    except DataError as exc:  # a header that opens but pixels that do not decode
        raise NotAnImage(str(exc)) from None
    label, crops = f"upload '{name}'", None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if framing is not None and wants_alignment(align, gray.shape, size):
            crops = framed_crops(framing, label, gray, mode, size, face_number)
            face = crops[0]
        else:
            face = photo_face(label, gray, mode, size, align, face_number, detect=detect)
    return face, [str(w.message).removeprefix(f"{label}: ") for w in caught], crops
