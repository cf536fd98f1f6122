"""Pose normalization (§4.1.2): regenerate every pose, keep the one closest to the original."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import POSES, SIZE, FakeGenerator, tiny_gallery

from facedata.errors import UserError
from index.pose_normalize import (
    kept_accuracy,
    normalize_batch,
    normalize_features,
    pose_normalize,
)
from index.pose_classifier import PoseClassifier, PoseClassifierConfig


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
    batch = normalize_features(generator, gallery.images, layer="pixels")
    features, kept = batch.features, batch.kept
    expected = generator.features(gallery.images, [POSES[k] for k in kept], layer="pixels")
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(features, gallery.images.reshape(len(gallery), -1).astype(np.float32))


def test_kept_accuracy_is_the_share_of_true_poses_recovered():
    assert kept_accuracy(["0", "+15", "-30", "0"], ["0", "+15", "-15", "+45"]) == 0.5


def test_images_of_another_size_are_refused_with_the_expected_size():
    with pytest.raises(UserError, match="6×16"):
        pose_normalize(FakeGenerator(), np.zeros((2, 8, 8), np.uint8))


def _classifier(gallery):
    return PoseClassifier(PoseClassifierConfig(pca_components=8)).fit(gallery.images, gallery.faces["pose"])


def test_classifier_normalization_generates_each_face_once_in_the_classified_pose():
    gallery = tiny_gallery(identities=3, lights=1)
    classifier = _classifier(gallery)
    generator = FakeGenerator()
    batch = normalize_features(generator, gallery.images, "pixels", "classifier", classifier)
    assert generator.generated == len(gallery)  # one generation per face, not 7
    np.testing.assert_array_equal(np.asarray(POSES)[batch.kept], classifier.predict(gallery.images))
    with_pixels = normalize_features(generator, gallery.images, "pixels", "classifier", classifier, pixels=True)
    np.testing.assert_array_equal(with_pixels.features, with_pixels.pixels)  # layer "pixels" is the generated image


def test_no_normalization_reads_the_image_itself_and_generates_nothing():
    gallery = tiny_gallery(identities=3, lights=1)
    generator = FakeGenerator()
    batch = normalize_features(generator, gallery.images, "mid", "none", _classifier(gallery), pixels=True)
    assert generator.generated == 0
    flat = gallery.images.reshape(len(gallery), -1).astype(np.float32)
    np.testing.assert_array_equal(batch.pixels, flat)
    np.testing.assert_array_equal(batch.features[:, : flat.shape[1]], flat)


def test_the_cheap_modes_need_a_classifier_and_a_known_mode():
    images = tiny_gallery(identities=1, lights=1).images
    with pytest.raises(UserError, match="pose classifier"):
        normalize_features(FakeGenerator(), images, mode="classifier")
    with pytest.raises(UserError, match="valid: full, classifier, none"):
        normalize_features(FakeGenerator(), images, mode="fast")
