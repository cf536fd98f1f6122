"""Pose normalization of gallery images (§4.1.2): regenerate each image in every target value, keep the
closest, and index the features of that generated image so gallery and queries share one distribution.

Beyond the paper, two cheaper modes (NORMALIZE_MODES) take the kept value from a pose classifier on
the pixels instead of 7 generations: "classifier" then generates the face once, in that value;
"none" generates nothing and reads the refiner's features of the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from facedata.errors import UserError

NORMALIZE_MODES = ("full", "classifier", "none")


@dataclass(frozen=True)
class PoseNormalized:
    """The kept target value per image and the pixel distances that chose it."""

    kept: np.ndarray  # (n,) int64: position of the kept value in generator.vocabulary
    distances: np.ndarray  # (n, V) float32: squared pixel L2 of each generated value to the original
    kept_images: np.ndarray  # (n, H, W) float32: the stage-2 image generated in the kept value, 0–255

    def kept_values(self, vocabulary: Sequence[str]) -> np.ndarray:
        """The kept values as labels, (n,) str: a free estimate of each image's pose (or accessory)."""
        return np.asarray(vocabulary, dtype=object)[self.kept].astype(str)


def check_images(generator, images: np.ndarray, what: str = "images") -> np.ndarray:
    """The images as (n, H, W) uint8 of the generator's size, or a UserError saying what was expected."""
    images = np.asarray(images)
    expected = tuple(generator.image_size)
    if images.ndim != 3 or images.dtype != np.uint8 or tuple(images.shape[1:]) != expected:
        raise UserError(
            f"{what}: expected uint8 grayscale images of {expected[0]}×{expected[1]} (the model's size), "
            f"got {images.dtype} {images.shape}"
        )
    return images


def normalize_batch(generator, images: np.ndarray, batch_size: int = 256) -> PoseNormalized:
    """Generate all V target values of one batch of images (n × V generations) and keep the closest.

    §4.1.2: "we generate the 7 possible poses for each original face and keep the one that is closest
    to the original one (using pixel level Euclidean distance)"; the stage-2 output is compared with
    the original on the 0–255 scale. Ties keep the first value in vocabulary order.
    """
    images = check_images(generator, images)
    vocabulary = tuple(generator.vocabulary)
    n, v = len(images), len(vocabulary)
    if n == 0:
        return PoseNormalized(np.zeros(0, np.int64), np.zeros((0, v), np.float32), np.zeros((0, *images.shape[1:]), np.float32))
    repeated = np.repeat(images, v, axis=0)  # (n·V, H, W): image i's V copies are rows i·V … i·V+V−1
    targets = list(vocabulary) * n  # (n·V,) value j for copy j of every image
    _, stage2 = generator.generate(repeated, targets, batch_size=batch_size)  # (n·V, H, W) float32
    generated = np.asarray(stage2, dtype=np.float32).reshape(n, v, -1)
    original = images.reshape(n, 1, -1).astype(np.float32)
    distances = np.square(generated - original).sum(axis=2)  # (n, V)
    kept = np.argmin(distances, axis=1).astype(np.int64)
    kept_images = generated[np.arange(n), kept].reshape(images.shape)
    return PoseNormalized(kept=kept, distances=distances.astype(np.float32), kept_images=kept_images)


def pose_normalize(generator, images: np.ndarray, batch_size: int = 256, progress: bool = False) -> PoseNormalized:
    """Pose-normalize any number of images, `batch_size` images (× V generations) at a time."""
    images = check_images(generator, images)
    parts = [
        normalize_batch(generator, images[start : start + batch_size], batch_size)
        for start in tqdm(range(0, len(images), batch_size), desc="pose-normalize", unit="batch", disable=not progress)
    ]
    if not parts:
        return normalize_batch(generator, images, batch_size)
    return PoseNormalized(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("kept", "distances", "kept_images")))


def kept_accuracy(kept_values: Sequence[str], true_values: Sequence[str]) -> float:
    """Share of images whose kept value is their true one: how good the free pose estimate is."""
    kept_values, true_values = np.asarray(kept_values).astype(str), np.asarray(true_values).astype(str)
    assert kept_values.shape == true_values.shape and kept_values.ndim == 1, (kept_values.shape, true_values.shape)
    return float(np.mean(kept_values == true_values)) if len(kept_values) else float("nan")


def check_normalize(mode: str, classifier) -> None:
    """A known mode, and a pose classifier for the modes that read the kept value from one."""
    if mode not in NORMALIZE_MODES:
        raise UserError(f"unknown normalization '{mode}' (valid: {', '.join(NORMALIZE_MODES)})")
    if mode != "full" and classifier is None:
        raise UserError(f"normalization '{mode}' takes each face's pose from a pose classifier, and none was given")


def classified_kept(generator, classifier, images: np.ndarray) -> np.ndarray:
    """The classifier's value for each image as a code of the generator's vocabulary, (n,) int64."""
    unknown = sorted(set(classifier.classes) - set(generator.vocabulary))
    if unknown:
        raise UserError(f"the pose classifier predicts {unknown}, which the model's vocabulary "
                        f"{list(generator.vocabulary)} lacks")
    return generator.target_codes(list(classifier.predict(images)), len(images)) if len(images) else np.zeros(0, np.int64)


@dataclass(frozen=True)
class NormalizedBatch:
    """One batch of gallery images under a normalization mode: what is indexed and what is kept."""

    features: np.ndarray  # (n, d) float32, not yet L2-normalized
    kept: np.ndarray  # (n,) int64 kept value codes
    pixels: np.ndarray | None  # (n, H·W) float32, 0–255 clipped: the image indexed for pixel search (if asked)


def normalize_features(generator, images: np.ndarray, layer: str | None = None, mode: str = "full", classifier=None,
                       batch_size: int = 256, pixels: bool = False, classifier_images: np.ndarray | None = None) -> NormalizedBatch:
    """Features of one batch of gallery images under `mode` (NORMALIZE_MODES), with their kept values.

    full: V generations choose the kept value (§4.1.2), then the features of the face generated in it;
    classifier: the classifier's value, then one generation in it; none: the classifier's value and the
    features of the image itself (Generator.source_features), no generation. `classifier_images`: the
    same faces as the classifier reads them (at source resolution), row for row; default `images`.
    """
    check_normalize(mode, classifier)
    images = check_images(generator, images)
    if mode == "full":
        normalized = normalize_batch(generator, images, batch_size)
        kept, kept_images = normalized.kept, normalized.kept_images
    else:
        read = images if classifier_images is None else classifier_images
        kept, kept_images = classified_kept(generator, classifier, read), None
    values = list(np.asarray(generator.vocabulary, dtype=object)[kept]) if len(kept) else []
    if mode == "none":
        features = generator.source_features(images, values, layer=layer, batch_size=batch_size)
        kept_images = images  # nothing generated: the face is indexed as it is
    else:
        features = generator.features(images, values, layer=layer, batch_size=batch_size)
    flat = None
    if pixels:
        if kept_images is None:
            kept_images = generator.generate(images, values, batch_size=batch_size)[1]
        flat = np.clip(kept_images, 0, 255).reshape(len(images), -1).astype(np.float32)
    return NormalizedBatch(np.asarray(features, dtype=np.float32), kept, flat)
