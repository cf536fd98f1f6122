"""dlib's ResNet face descriptor (128-d) of small aligned face crops, cached on disk: the "Deep" 2-step baseline.

Needs the optional `deep` extra (dlib-bin, face-recognition-models); without it every call that has
to compute descriptors raises a UserError saying how to install it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from facedata.atomic import atomic_file
from facedata.dlib_models import import_dlib, model_file

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150  # dlib's descriptor reads aligned 150×150 RGB chips
DESCRIPTOR_DIM = 128


def model_path() -> Path:
    """The ResNet model file shipped in the face_recognition_models package; UserError if it is not installed."""
    return model_file(MODEL_FILE)


def load_model():
    """dlib's face_recognition_model_v1 loaded from the installed model file; UserError without the deep extra."""
    return import_dlib("the Deep baseline").face_recognition_model_v1(str(model_path()))


def face_chips(images: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Grayscale crops (n, H, W) uint8 as RGB chips (n, size, size, 3) uint8: bicubic resize, gray copied to 3 channels."""
    assert images.ndim == 3 and images.dtype == np.uint8, (images.shape, images.dtype)
    chips = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        chips[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))[:, :, None]
    return chips


def compute_descriptors(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's descriptor of every crop, (n, 128) float32, computed in batches of aligned chips.

    The crops are already aligned faces, so they go to the chip overload of compute_face_descriptor
    (no detection, no landmarks), which expects dlib's get_face_chip framing; ours is the crop's own.
    """
    out = np.zeros((len(images), DESCRIPTOR_DIM), dtype=np.float32)
    with tqdm(total=len(images), desc="dlib face descriptors", unit="img") as bar:
        for start in range(0, len(images), batch_size):
            chips = face_chips(images[start : start + batch_size])
            vectors = model.compute_face_descriptor(list(chips))
            out[start : start + len(chips)] = np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)
            bar.update(len(chips))
    return out


def cache_key(images: np.ndarray) -> str:
    """sha256 of the images' shape and bytes, with the model file's name: equal keys mean equal descriptors."""
    digest = hashlib.sha256(f"{MODEL_FILE}|{images.shape}|{images.dtype}|".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def deep_descriptors(images: np.ndarray, cache: Path | None = None, batch_size: int = 64) -> np.ndarray:
    """dlib descriptors of face crops (n, H, W) uint8 → (n, 128) float32, read from `cache` when computed before."""
    images = np.asarray(images)
    assert images.ndim == 3 and images.dtype == np.uint8, (images.shape, images.dtype)
    path = Path(cache) / f"deep-{cache_key(images)[:24]}-{Path(MODEL_FILE).stem}.npz" if cache else None
    if path and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            return stored["descriptors"]
    descriptors = compute_descriptors(load_model(), images, batch_size)
    if path:
        with atomic_file(path) as tmp:
            np.savez(tmp, descriptors=descriptors)
    return descriptors
