"""The pose classifiers: the linear one predicts as sklearn's pipeline does, the CNN learns mirrored poses,
and both save to safetensors and back."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import tiny_gallery

from facedata.errors import UserError
from index.pose_classifier import PoseClassifier, PoseClassifierConfig, standardized_pixels


def test_numpy_prediction_matches_the_fitted_logistic_regression():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    gallery = tiny_gallery(identities=4, lights=2)
    labels = gallery.faces["pose"].to_numpy()
    ours = PoseClassifier(PoseClassifierConfig(pca_components=8)).fit(gallery.images, labels)
    x = standardized_pixels(gallery.images)
    pca = PCA(n_components=8, random_state=0).fit(x)
    reference = LogisticRegression(max_iter=1000, random_state=0).fit(pca.transform(x), labels)
    np.testing.assert_array_equal(ours.predict(gallery.images), reference.predict(pca.transform(x)))


def test_a_saved_classifier_predicts_as_the_fitted_one(tmp_path):
    gallery = tiny_gallery(identities=3, lights=2)
    fitted = PoseClassifier(PoseClassifierConfig(pca_components=8)).fit(gallery.images, gallery.faces["pose"])
    fitted.save(tmp_path / "c.safetensors")
    loaded = PoseClassifier.load(tmp_path / "c.safetensors")
    assert loaded.classes == fitted.classes and loaded.fingerprint == fitted.fingerprint
    np.testing.assert_array_equal(loaded.predict(gallery.images), fitted.predict(gallery.images))


def test_two_classes_predict_through_one_decision_function():
    gallery = tiny_gallery(identities=3, lights=2)
    two = gallery.where(gallery.faces["pose"].isin(["-45", "+45"]).to_numpy(), "two poses")
    classifier = PoseClassifier(PoseClassifierConfig(pca_components=4)).fit(two.images, two.faces["pose"])
    assert classifier.accuracy(two.images, two.faces["pose"]) == 1.0


def test_a_damaged_classifier_file_is_a_user_error(tmp_path):
    (tmp_path / "c.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable pose classifier"):
        PoseClassifier.load(tmp_path / "c.safetensors")


def mirrored_pose_faces(identities: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16×16 faces whose bright bar sits left of centre for −45, centred for 0, right for +45: poses that mirror."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(identities):
        texture = rng.integers(0, 60, size=(16, 16))
        for pose, column in (("-45", 3), ("0", 7), ("+45", 11)):
            for _ in range(4):
                image = texture + rng.integers(0, 30, size=(16, 16))
                image[3:13, column : column + 2] += 150
                images.append(image.clip(0, 255).astype(np.uint8))
                labels.append(pose)
    return np.stack(images), np.asarray(labels)


def test_the_cnn_learns_poses_that_mirror_and_saves_to_predict_exactly_alike(tmp_path):
    import torch

    images, labels = mirrored_pose_faces(identities=3, seed=0)
    before = torch.random.get_rng_state()
    config = PoseClassifierConfig(model="cnn", cnn_members=2, cnn_steps=150)
    fitted = PoseClassifier(config).fit(images, labels)
    assert torch.equal(before, torch.random.get_rng_state()), "fitting must leave the global RNG alone"
    unseen, truth = mirrored_pose_faces(identities=2, seed=1)
    assert fitted.accuracy(unseen, truth) >= 0.9
    fitted.save(tmp_path / "cnn.safetensors")
    loaded = PoseClassifier.load(tmp_path / "cnn.safetensors")
    assert loaded.classes == fitted.classes and loaded.fingerprint == fitted.fingerprint
    np.testing.assert_array_equal(loaded.predict(unseen), fitted.predict(unseen))
    np.testing.assert_allclose(loaded._cnn.probabilities(unseen), fitted._cnn.probabilities(unseen), atol=1e-6)


def test_the_cnn_trains_quietly_when_asked(capsys):
    images, labels = mirrored_pose_faces(identities=2, seed=0)
    config = PoseClassifierConfig(model="cnn", cnn_members=1, cnn_steps=3)
    PoseClassifier(config).fit(images, labels, progress=False)
    assert "pose classifier" not in capsys.readouterr().err
    PoseClassifier(config).fit(images, labels)
    assert "pose classifier (cnn)" in capsys.readouterr().err


def test_the_cnn_flips_only_where_every_class_has_its_mirror():
    from index.pose_cnn import mirror_map

    np.testing.assert_array_equal(mirror_map(("+45", "-45", "0")), [1, 0, 2])
    np.testing.assert_array_equal(mirror_map(("forward", "left", "right", "up")), [0, 2, 1, 3])
    np.testing.assert_array_equal(mirror_map(("none", "sunglasses")), [0, 1])  # a flip keeps an accessory
    assert mirror_map(("0", "+45")) is None  # no −45 to carry a flipped +45 face


def test_a_file_of_other_arrays_is_not_a_logistic_regression(tmp_path):
    from safetensors.numpy import save_file
    import json

    record = {"config": {"model": "logreg"}, "classes": ["a", "b"]}
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "c.safetensors"), metadata={"pose_classifier": json.dumps(record)})
    with pytest.raises(UserError, match="not a readable pose classifier"):
        PoseClassifier.load(tmp_path / "c.safetensors")


def test_a_cached_fit_is_read_back_and_predicts_alike(tmp_path):
    from index.pose_classifier import PoseClassifierConfig, fit_cached

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 8, 8), dtype=np.uint8)
    labels = np.array(["a", "b"] * 20)
    first = fit_cached(PoseClassifierConfig(model="logreg"), images, labels, tmp_path)
    (saved,) = tmp_path.glob("pose-classifier-logreg-*.safetensors")
    again = fit_cached(PoseClassifierConfig(model="logreg"), images, labels, tmp_path)
    assert again.fingerprint == first.fingerprint and list(tmp_path.iterdir()) == [saved]
    np.testing.assert_array_equal(again.predict(images), first.predict(images))
    fit_cached(PoseClassifierConfig(model="logreg"), images, labels[::-1], tmp_path)  # other labels: another fit
    assert len(list(tmp_path.glob("pose-classifier-*"))) == 2


def test_a_test_gallery_s_classifier_can_learn_from_the_train_and_val_people(tmp_path):
    from test_training import tiny_faceset

    from facedata.faceset import FaceSet
    from index.pose_classifier import fit_on_train_split

    faces = FaceSet.open(tiny_faceset(identities=6, test_identities=2, val_identities=2).write(tmp_path / "faces"))
    config = PoseClassifierConfig(model="logreg")
    _, train_only = fit_on_train_split(faces, "pose", config, progress=False)
    _, both = fit_on_train_split(faces, "pose", config, progress=False, splits=("train", "val"))
    assert train_only["splits"] == ["train"] and train_only["faces"] == len(faces.split("train"))
    assert both["splits"] == ["train", "val"] and both["faces"] == len(faces.split("train")) + len(faces.split("val"))
    assert both["identities"] == 4
