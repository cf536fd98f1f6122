"""A gallery index from a FaceSet, as `rbg index build` asks for one: which rows form the gallery, the
default factory for its views, and the pose classifier a cheap normalization takes the kept value from.

index.faiss_index.build_index does the long work (streaming, resumable, locked); this puts the
choices around it in one library call, so the command line only parses options.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from facedata.combined import with_factor
from facedata.errors import UserError
from facedata.faceset import FaceSet, same_faces_at_resolution
from index.faiss_factory import IndexConfig, default_factory
from index.faiss_index import GalleryIndex, build_cache, build_index, check_build
from index.pose_classifier import PoseClassifierConfig, fit_on_train_split

SPLITS = ("test", "val", "train", "all")  # "all": every row of the FaceSet


@dataclass(frozen=True)
class GalleryBuild:
    """What a build made and how long its parts took."""

    index: GalleryIndex
    gallery: FaceSet
    split: str
    resumed: bool  # an interrupted build's cached features were there to reuse
    classifier_seconds: float | None  # fitting the pose classifier (None: full normalization fits none)


def gallery_rows(faces: FaceSet, split: str) -> FaceSet:
    """The FaceSet's rows that form the gallery: one split, or every row for "all"."""
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' for the gallery (valid: {', '.join(SPLITS)})")
    return faces if split == "all" else faces.split(split)


def gallery_settings(views: str | None = None, normalize: str | None = None, pose_classifier: str | None = None,
                     paper: bool = False) -> tuple[str, str, str]:
    """The build's views, normalization and pose classifier: those given, the rest the defaults that won on
    the val people of the real sets (every view, the CNN classifier's pose), or the paper's with `paper`.

    IndexConfig's own field defaults stay the paper's (kept views, full normalization): they are what an
    index.json written before those fields existed was built with, so they cannot move.
    """
    views = views or ("kept" if paper else "all")
    normalize = normalize or ("full" if paper else "classifier")
    if pose_classifier is None:  # unused by full normalization, which check_classifier_options holds to logreg
        pose_classifier = "logreg" if paper or normalize == "full" else "cnn"
    return views, normalize, pose_classifier


def check_classifier_options(normalize: str, classifier_data: FaceSet | Path | None, pose_classifier: str,
                             pose_images: str | Path | None = None) -> None:
    """Full normalization fits no pose classifier: options of one are a mistake, said before any work."""
    if normalize == "full" and pose_images is not None:
        raise UserError("--pose-images goes with --normalize classifier or none (full normalization uses no classifier)")
    if normalize == "full" and classifier_data is not None:
        raise UserError("--classifier-data goes with --normalize classifier or none (full normalization uses no classifier)")
    if normalize == "full" and pose_classifier != "logreg":
        raise UserError("--pose-classifier goes with --normalize classifier or none (full normalization uses no classifier)")


def build_gallery(generator, faces: FaceSet, out: str | Path, config: IndexConfig | None = None,
                  split: str = "test", factory: str | None = None, classifier_data: FaceSet | None = None,
                  pose_classifier: str | None = None, progress: bool = True, force: bool = False,
                  distributor=None, paper: bool = False, pose_images: str | Path | None = None) -> GalleryBuild:
    """Index the `split` rows of `faces` at `out` (build_index), choosing what the options left open.

    `config` None builds as `rbg index build` does by default (gallery_settings: every view, the CNN
    classifier's pose; the paper's kept view and full normalization with `paper`). `pose_classifier`
    None: cnn where a classifier is fitted (logreg with `paper`). `factory` None takes
    index.faiss_factory.default_factory for the views and the gallery's size. With normalization
    "classifier" or "none" the pose classifier (logreg or cnn) is fitted on the train split of
    `classifier_data`, else of `faces` (train and val for a test gallery, except with `paper`), and saved
    with the index. `pose_images`: a FaceSet of `faces`' faces
    at source resolution, row for row, which the classifier is fitted on (without `classifier_data`) and
    reads the gallery's pose from: on cmu_faces 98 % of unseen people's poses from the 64×60 frames
    against 95 % from the 32-px crops.
    """
    given = (config.views, config.normalize) if config is not None else (None, None)
    views, normalize, pose_classifier = gallery_settings(*given, pose_classifier, paper)
    config = replace(config or IndexConfig(), views=views, normalize=normalize)
    check_classifier_options(config.normalize, classifier_data, pose_classifier, pose_images)
    pose_source = (with_factor(same_faces_at_resolution(faces, pose_images, "--pose-images", str(faces.root or faces.info.name)),
                               generator.edit_factor) if pose_images is not None else None)
    faces = with_factor(faces, generator.edit_factor)  # a model of several factors: their combined column
    gallery = gallery_rows(faces, split)
    config = replace(config, factory=factory or default_factory(config.views, len(gallery)))
    check_build(generator, gallery, Path(out), config, force)  # refusals before the classifier's minutes
    classifier, classifier_info, classifier_seconds = None, None, None
    if config.normalize != "full":
        t = time.perf_counter()
        fitted_on = next(f for f in (classifier_data, pose_source, faces) if f is not None)
        # a test gallery's classifier learns from every person outside it (train and val), as rbg bench's does
        people = ("train", "val") if split == "test" and not paper else ("train",)
        classifier, classifier_info = fit_on_train_split(fitted_on,
                                                         generator.edit_factor, PoseClassifierConfig(model=pose_classifier),
                                                         progress, people)
        classifier_seconds = time.perf_counter() - t
    resumed = build_cache(Path(out)).is_dir()
    built = build_index(generator, gallery, out, config, progress=progress, force=force, classifier=classifier,
                        classifier_info=classifier_info, distributor=distributor, pose_images=pose_images)
    return GalleryBuild(built, gallery, split, resumed, classifier_seconds)
