"""The 2-step baselines: a pose filter, then a ranking."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import POSES, FakeGenerator, face, tiny_gallery

from facedata.errors import UserError
from retrieval.baselines import (
    PoseClassifier,
    PoseClassifierConfig,
    pixel_vectors,
    reconstruction_features,
    two_step_rank,
    two_step_search,
)

GALLERY = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.8, 0.2], [1, 0.05]], np.float32)
PREDICTED = np.array(["0", "+15", "0", "+15", "0"])


def test_two_step_ranks_only_gallery_rows_predicted_in_the_target_pose():
    rows = two_step_rank(np.array([[1, 0], [1, 0]], np.float32), GALLERY, PREDICTED, np.array(["0", "+15"]), 2)
    assert rows.tolist() == [[0, 4], [1, 3]]


def test_two_step_pads_with_minus_one_when_fewer_than_k_rows_survive_the_filter():
    distances, rows = two_step_search(np.array([[1, 0], [0, 1]], np.float32), GALLERY, PREDICTED, np.array(["+15", "-45"]), 3)
    assert rows.tolist() == [[1, 3, -1], [-1, -1, -1]]
    assert np.isinf(distances[0, 2]) and np.all(np.isinf(distances[1]))


def test_two_step_distances_are_squared_l2_between_unit_vectors():
    distances, rows = two_step_search(np.array([[3, 0]], np.float32), GALLERY, PREDICTED, np.array(["0"]), 3)
    assert rows.tolist() == [[0, 4, 2]]
    assert distances[0].tolist() == pytest.approx([0.0, 2 - 2 / np.sqrt(1 + 0.05**2), 2.0], abs=1e-5)


def test_two_step_with_k_larger_than_the_gallery_is_a_user_error():
    with pytest.raises(UserError, match="k=6"):
        two_step_rank(GALLERY[:1], GALLERY, PREDICTED, np.array(["0"]), 6)


def test_pixel_vectors_are_unit_length_rows():
    vectors = pixel_vectors(np.full((3, 4, 5), 7, np.uint8))
    assert vectors.shape == (3, 20)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_pose_classifier_predicts_the_poses_of_identities_it_never_saw(model):
    faces = tiny_gallery(identities=8, lights=2, train_identities=6)
    train, test = faces.split("train"), faces.split("test")
    classifier = PoseClassifier(PoseClassifierConfig(model=model, pca_components=16)).fit(train.images, train.faces["pose"])
    assert set(classifier.classes) == set(faces.vocabulary("pose"))
    assert classifier.accuracy(test.images, test.faces["pose"]) >= 0.9


def test_an_unknown_classifier_model_is_a_user_error():
    with pytest.raises(UserError, match="valid: logreg, mlp"):
        PoseClassifier(PoseClassifierConfig(model="svm"))


def test_two_step_baseline_end_to_end_with_predicted_poses_finds_the_person():
    """Queries are test identities already in the target pose under a light the gallery lacks: rank 1 and 2
    must be that person's two gallery images in the target pose (nearest light first), then only others."""
    faces = tiny_gallery(identities=6, lights=2, train_identities=3)
    train, gallery = faces.split("train"), faces.split("test")
    classifier = PoseClassifier().fit(train.images, train.faces["pose"])
    predicted = classifier.predict(gallery.images)
    people, targets = [3, 4, 5, 3, 4, 5], np.array(["-30", "0", "+30", "-45", "-15", "+15"])
    query_images = np.stack([face(i, POSES.index(t), light=2) for i, t in zip(people, targets)])
    table = gallery.faces.reset_index(drop=True)
    identity, pose, light = (table[c].to_numpy().astype(str) for c in ("identity", "pose", "illumination"))
    wanted = np.array([f"id{i:02d}" for i in people])
    generator = FakeGenerator()
    for name, vectors in (
        ("pixels", lambda images, poses: pixel_vectors(images)),
        ("reconstruction", lambda images, poses: reconstruction_features(generator, images, poses, layer="pixels")),
    ):
        rows = two_step_rank(vectors(query_images, classifier.predict(query_images)),
                             vectors(gallery.images, predicted), predicted, targets, 5)
        assert (rows >= 0).all() and (pose[rows] == targets[:, None]).all(), name
        assert (identity[rows[:, :2]] == wanted[:, None]).all(), (name, identity[rows])
        assert (light[rows[:, :2]] == ["01", "00"]).all(), (name, light[rows])
        assert (identity[rows[:, 2:]] != wanted[:, None]).all(), (name, identity[rows])


