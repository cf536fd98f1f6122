"""Photos made from dataset faces: each face pasted at a random size and place into a 640×480 background.

The photo path's framings and reframing regressor (retrieval.photo_framing) are fitted on such photos
of the train people, and the photo benchmarks measure on them. Backgrounds are scikit-image's bundled
pictures without a face (no download); a scene's `truth` is the pasted square, in scene pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SCENE_HW = (480, 640)


def gray(picture: np.ndarray) -> np.ndarray:
    """Any skimage picture (bool, float, RGB(A)) as (H, W) uint8 grayscale."""
    if picture.dtype == bool:
        picture = picture.astype(np.uint8) * 255
    elif picture.dtype != np.uint8:
        picture = np.clip(255 * (picture - picture.min()) / max(float(np.ptp(picture)), 1e-9), 0, 255).astype(np.uint8)
    if picture.ndim == 3:
        picture = np.asarray(Image.fromarray(picture[..., :3]).convert("L"))
    return picture


def backgrounds() -> list[np.ndarray]:
    """The face-free scikit-image pictures that can be backgrounds (textured, at least 300 px), at 640×480."""
    import skimage.data

    names = ("brick", "grass", "gravel", "coffee", "rocket", "coins", "clock", "moon", "hubble_deep_field",
             "immunohistochemistry", "retina", "cell")
    return [np.asarray(Image.fromarray(gray(getattr(skimage.data, n)())).resize(SCENE_HW[::-1], Image.Resampling.BICUBIC))
            for n in names]


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (480, 640) uint8
    truth: tuple[float, float, float, float]  # the pasted face crop: left, top, right, bottom


def paste(face: np.ndarray, background: np.ndarray, rng: np.random.Generator, sides: tuple[int, int] = (64, 200)) -> Scene:
    """`face` (h, w) uint8 resized to a random side in `sides` and pasted at a random place in a copy of `background`."""
    h, w = face.shape
    side = int(rng.integers(sides[0], sides[1] + 1))
    size = (side, max(1, round(side * h / w)))  # PIL: (width, height)
    resized = np.asarray(Image.fromarray(face).resize(size, Image.Resampling.BICUBIC))
    top = int(rng.integers(0, background.shape[0] - size[1] + 1))
    left = int(rng.integers(0, background.shape[1] - size[0] + 1))
    image = background.copy()
    image[top : top + size[1], left : left + size[0]] = resized
    return Scene(image, (float(left), float(top), float(left + size[0]), float(top + size[1])))


def scenes(faces: np.ndarray, seed: int = 0, sides: tuple[int, int] = (64, 200)) -> list[Scene]:
    """One scene per face of (n, h, w) uint8, each on a background drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    grounds = backgrounds()
    return [paste(face, grounds[int(rng.integers(len(grounds)))], rng, sides) for face in faces]
