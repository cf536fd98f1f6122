"""The paper's 2-step baselines run end to end on a FaceSet: fit the pose classifier on the train
identities, filter the test gallery by predicted pose, rank the survivors (§4.1.2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facedata.combined import edited_factors
from facedata.faceset import FaceSet
from retrieval.baselines import (
    PoseClassifier,
    PoseClassifierConfig,
    pixel_vectors,
    reconstruction_features,
    two_step_rank,
)
from index.factor_classifiers import FactorClassifiers
from index.pose_classifier import fit_cached
from retrieval.deep_descriptor import DEEP_DETECTOR, deep_descriptors
from retrieval.protocol import QuerySet


@dataclass(frozen=True)
class PoseFilter:
    """Step 1 fitted and applied: the classifier, its predictions on the gallery, and its test accuracy."""

    classifier: PoseClassifier | None  # None: the true labels (true_pose_filter)
    gallery_pred: np.ndarray  # (g,) str predicted value of the edited factor per gallery row
    query_pred: np.ndarray  # (q,) str predicted own value per query image
    accuracy: float  # on the gallery (= all test images), in [0, 1]


def fit_pose_classifier(train: FaceSet, edit: str, config: PoseClassifierConfig = PoseClassifierConfig(),
                        cache: Path | None = None, images: np.ndarray | None = None):
    """Step 1's classifier of `edit`, trained on the train identities (or read from `cache`).

    `images`: the train faces at another resolution, row for row (default: the FaceSet's own crops).
    Several edited factors ("pose+accessory") take one classifier per factor (index.factor_classifiers).
    """
    images = train.images if images is None else images
    assert len(images) == len(train), (len(images), len(train))
    parts = edited_factors(edit)
    if len(parts) > 1:  # several edited factors: one classifier per factor, their predictions joined
        return FactorClassifiers(parts, [fit_cached(config, images, train.faces[p].to_numpy(), cache) for p in parts])
    return fit_cached(config, images, train.faces[edit].to_numpy(), cache)


def fit_pose_filter(train: FaceSet, gallery: FaceSet, queries: QuerySet,
                    config: PoseClassifierConfig = PoseClassifierConfig(), cache: Path | None = None,
                    train_images: np.ndarray | None = None, gallery_images: np.ndarray | None = None) -> PoseFilter:
    """Train the pose classifier on the train identities (or read it from `cache`) and predict every gallery image's pose.

    `train_images` and `gallery_images`: both sets' faces at another resolution (source resolution, which
    the pose reads better from), row for row; by default their own crops.
    """
    edit = queries.edit
    classifier = fit_pose_classifier(train, edit, config, cache, train_images)
    gallery_pred = classifier.predict(gallery.images if gallery_images is None else gallery_images)
    accuracy = float(np.mean(gallery_pred == gallery.faces[edit].to_numpy().astype(str)))
    return PoseFilter(classifier, gallery_pred, gallery_pred[queries.positions], accuracy)


def true_pose_filter(gallery: FaceSet, queries: QuerySet) -> PoseFilter:
    """Step 1 with the true labels: a perfect pose classifier, the upper bound of every 2-step row."""
    truth = gallery.faces[queries.edit].to_numpy().astype(str)
    return PoseFilter(classifier=None, gallery_pred=truth, query_pred=truth[queries.positions], accuracy=1.0)


def rank_by_pixels(gallery: FaceSet, queries: QuerySet, among: np.ndarray, k: int) -> np.ndarray:
    """Baseline (a): the gallery rows whose value in `among` (a filter's gallery_pred) is the query's target,
    ranked by L2-normalized raw pixels; (q, k) rows."""
    vectors = pixel_vectors(gallery.images)
    return two_step_rank(vectors[queries.positions], vectors, among, queries.targets, k)


def rank_by_generator_features(generator, gallery: FaceSet, queries: QuerySet, among: np.ndarray, k: int,
                               layer: str | None = None, batch_size: int = 256) -> np.ndarray:
    """Baseline (b): the survivors of `among` ranked by the 2nd network's features of each image regenerated
    in its value there (its predicted pose)."""
    vectors = reconstruction_features(generator, gallery.images, among, layer=layer, batch_size=batch_size)
    return two_step_rank(vectors[queries.positions], vectors, among, queries.targets, k)


def gallery_descriptors(gallery: FaceSet, cache: Path | None = None, batch_size: int = 64,
                        images: np.ndarray | None = None,
                        detector: str = DEEP_DETECTOR) -> tuple[np.ndarray, np.ndarray]:
    """dlib's descriptor of every gallery face, (g, 128) float32, and whether `detector` found the face, (g,) bool.

    `images` are the gallery's faces at their source resolution, row for row (default: its own crops).
    """
    images = gallery.images if images is None else images
    assert len(images) == len(gallery), (len(images), len(gallery))
    return deep_descriptors(images, cache=cache, batch_size=batch_size, detector=detector)


def rank_by_deep_descriptor(gallery: FaceSet, queries: QuerySet, among: np.ndarray, k: int,
                            cache: Path | None = None, batch_size: int = 64,
                            images: np.ndarray | None = None,
                            detector: str = DEEP_DETECTOR) -> tuple[np.ndarray, float]:
    """Baseline "Deep" (Table 2): the survivors of `among` ranked by dlib's 128-d ResNet face descriptor;
    ((q, k) rows, detected share).

    `images` are the gallery's faces at their source resolution, (g, H', W') uint8 row for row (default:
    the gallery's own crops); dlib aligns them with its own landmarks. Needs the `deep` extra; the
    descriptors are cached in `cache` (keyed by the images).
    """
    vectors, found = gallery_descriptors(gallery, cache, batch_size, images, detector)
    return two_step_rank(vectors[queries.positions], vectors, among, queries.targets, k), float(np.mean(found))
