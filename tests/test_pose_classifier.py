"""The pixel pose classifier: predicts as sklearn's pipeline does, and saves to safetensors and back."""

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
