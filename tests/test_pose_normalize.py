"""Pose normalization (§4.1.2): regenerate every pose, keep the one closest to the original."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facedata.errors import UserError
from facedata.faceset import FaceSet
from index.pose_normalize import kept_accuracy, normalize_batch, normalized_features, pose_normalize

POSES = ("-45", "-30", "-15", "0", "+15", "+30", "+45")
SIZE = (6, 16)


class FakeGenerator:
    """A generator with the real one's interface whose "generation" is exact on tiny marker images.

    A face is an identity pattern rolled right by its pose code, with a bright marker in row 0 at
    column = pose code; generating pose t rolls the image until the marker sits at column t, so the
    output for an image's own pose is the image itself. Features: "pixels" = the generated image
    flattened; "mid" = generated pixels and their squares (twice as wide).
    """

    FEATURE_LAYERS = ("mid", "pixels")
    default_feature_layer = "mid"

    def __init__(self, checkpoint_hash: str = "a" * 64, fail_after: int | None = None):
        self.task = "pose"
        self.edit_factor = "pose"
        self.vocabulary = POSES
        self.image_size = SIZE
        self.checkpoint_hash = checkpoint_hash
        self.fail_after = fail_after  # raise KeyboardInterrupt on this features() call (an interrupted build)
        self.generated = 0
        self.feature_calls = 0

    def target_codes(self, targets, n: int | None = None) -> np.ndarray:
        values = [targets] * (n or 1) if isinstance(targets, str) else list(targets)
        unknown = [v for v in values if str(v) not in self.vocabulary]
        if unknown:
            raise UserError(f"unknown pose '{unknown[0]}' (valid: {', '.join(self.vocabulary)})")
        return np.array([self.vocabulary.index(str(v)) for v in values], dtype=np.int64)

    def generate(self, images: np.ndarray, targets, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        codes = self.target_codes(targets, len(images))
        current = np.argmax(images[:, 0, :], axis=1)
        out = np.stack([np.roll(im, int(t - c), axis=1) for im, t, c in zip(images, codes, current)]).astype(np.float32)
        self.generated += len(images)
        return out, out

    def features(self, images: np.ndarray, targets, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
        self.feature_calls += 1
        if self.fail_after is not None and self.feature_calls >= self.fail_after:
            raise KeyboardInterrupt
        layer = layer or self.default_feature_layer
        assert layer in self.FEATURE_LAYERS, layer
        _, stage2 = self.generate(images, targets, batch_size)
        flat = stage2.reshape(len(images), -1)
        return flat if layer == "pixels" else np.concatenate([flat, flat**2 / 255.0], axis=1)


def face(identity: int, pose_code: int, light: int = 0) -> np.ndarray:
    """Identity `identity` in pose `pose_code` under light level `light`: (H, W) uint8."""
    rng = np.random.default_rng(1000 + identity)
    pattern = rng.integers(0, 150, size=SIZE).astype(np.int64) + 40 * light
    pattern[0] = 0
    pattern[0, 0] = 255
    return np.roll(pattern, pose_code, axis=1).clip(0, 255).astype(np.uint8)


def tiny_gallery(identities: int = 3, lights: int = 2, train_identities: int | None = None) -> FaceSet:
    """identities × 7 poses × lights marker faces as a FaceSet (pose, illumination, split)."""
    images, rows = [], []
    for i in range(identities):
        for p, pose in enumerate(POSES):
            for light in range(lights):
                images.append(face(i, p, light))
                split = "train" if train_identities is not None and i < train_identities else "test"
                rows.append({"identity": f"id{i:02d}", "pose": pose, "illumination": f"{light:02d}", "split": split})
    return FaceSet.from_arrays(np.stack(images), pd.DataFrame(rows), name="tiny", factors={"pose": POSES})


def test_pose_normalization_keeps_each_images_true_pose_when_generation_is_faithful():
    gallery = tiny_gallery()
    result = pose_normalize(FakeGenerator(), gallery.images, batch_size=5)
    assert result.distances.shape == (len(gallery), len(POSES))
    np.testing.assert_array_equal(result.kept_values(POSES), gallery.faces["pose"].to_numpy())
    assert np.all(result.distances[np.arange(len(gallery)), result.kept] == 0)


def test_normalizing_a_batch_generates_every_target_value_for_every_image():
    generator = FakeGenerator()
    images = tiny_gallery(identities=1, lights=1).images[:4]
    normalize_batch(generator, images)
    assert generator.generated == 4 * len(POSES)


def test_ties_in_pixel_distance_keep_the_first_value_in_vocabulary_order():
    blank = np.zeros((2, *SIZE), np.uint8)  # every roll of a blank image is the blank image
    assert normalize_batch(FakeGenerator(), blank).kept.tolist() == [0, 0]


def test_batched_normalization_equals_one_pass():
    images = tiny_gallery().images
    one = pose_normalize(FakeGenerator(), images, batch_size=len(images))
    many = pose_normalize(FakeGenerator(), images, batch_size=4)
    np.testing.assert_array_equal(one.kept, many.kept)
    np.testing.assert_allclose(one.distances, many.distances)


def test_indexed_features_are_those_of_the_image_regenerated_in_its_kept_pose():
    generator = FakeGenerator()
    gallery = tiny_gallery(identities=2, lights=1)
    features, kept = normalized_features(generator, gallery.images, layer="pixels")
    expected = generator.features(gallery.images, [POSES[k] for k in kept], layer="pixels")
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(features, gallery.images.reshape(len(gallery), -1).astype(np.float32))


def test_kept_accuracy_is_the_share_of_true_poses_recovered():
    assert kept_accuracy(["0", "+15", "-30", "0"], ["0", "+15", "-15", "+45"]) == 0.5


def test_images_of_another_size_are_refused_with_the_expected_size():
    with pytest.raises(UserError, match="6×16"):
        pose_normalize(FakeGenerator(), np.zeros((2, 8, 8), np.uint8))
