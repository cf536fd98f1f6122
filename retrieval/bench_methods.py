"""The benchmark's rows as a table of methods: each row one declaration of its name, the gallery faces
it ranks among (its filter), its ranking and how it reads pixels.

`rbg bench` (retrieval.benchmark.run_benchmark) runs every row of METHODS that applies, in order, on
the same seeded queries. A row's ranking reads what the run shares (retrieval.benchmark.BenchRun: the
pose classifier's filter, the pose-normalized gallery, the searches by generation, the all-poses
distances, dlib's descriptors, the choice made on val), each computed once when a row first needs
it. A new method is one declaration here and its ranking function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from retrieval.baselines import two_step_rank
from retrieval.fusion import fused_ranking
from retrieval.multi_view import rank_among
from retrieval.two_step import rank_by_generator_features, rank_by_pixels

TWO_STEP, TWO_STEP_TRUE, OURS, OURS_POSE_AWARE = "2-step retrieval", "2-step, true pose", "ours", "ours, pose-aware"
OURS_CLASSIFIER, OURS_TRUE, OURS_ALL_VALUES = "ours, classifier pose", "ours, true pose", "ours, all poses"
OURS_ALL_CLASSIFIER = "ours, all poses, classifier pose"
OURS_ALL_INDEX = "ours, all poses, --index"
OURS_FUSED = "ours + Deep, all poses, classifier pose"
OURS_CHOSEN = "ours, chosen on val"
IMAGE, SECOND_NET, DEEP, SECOND_NET_DEEP = "image", "our 2nd network", "Deep", "our 2nd network + Deep"
CHOSEN = "our 2nd network, views and Deep weight chosen on val"
DISTILLED = "distilled descriptor"  # a model trained with --distill-images: its head's 128-d prediction

# The gallery faces a row ranks among (its filter), by the edited factor's value per gallery face:
CLASSIFIER = "classifier"  # the 2-step pose classifier's prediction
TRUE = "true"  # the true label (an upper bound for any classifier)
KEPT = "kept"  # the value pose normalization kept (the generator's own pose evidence)
EVERY = "every"  # no filter: the whole gallery, as the index searches it


@dataclass(frozen=True)
class Method:
    """One row of Tables 2–3."""

    name: str  # the method column, e.g. "2-step retrieval"
    features: str  # the features column, e.g. "image"
    among: str  # its filter: CLASSIFIER, TRUE, KEPT or EVERY
    rank: Callable  # (run, among: (g,) values or None) → (q, k) gallery rows, -1 past the survivors
    pixels: str  # how it reads pixels, said beside the tables in report.md
    stage: str  # the timing it is counted in
    applies: Callable = lambda run: True  # whether the run has what the row needs (--deep, --all-values, …)

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.features)


# -- rankings ---------------------------------------------------------------------------------------
def pixels_among(run, among: np.ndarray) -> np.ndarray:
    """2-step (a): the survivors ranked by L2-normalized raw pixels."""
    return rank_by_pixels(run.gallery, run.queries, among, run.k)


def reconstruction_among(run, among: np.ndarray) -> np.ndarray:
    """2-step (b): the survivors ranked by the 2nd network's features of each face regenerated in its predicted pose."""
    return rank_by_generator_features(run.generator, run.gallery, run.queries, among, run.k, layer=run.config.layer,
                                      batch_size=run.config.batch_size)


def descriptor_among(run, among: np.ndarray) -> np.ndarray:
    """2-step Deep: the survivors ranked by dlib's face descriptor."""
    descriptors, _ = run.descriptors
    return two_step_rank(descriptors[run.queries.positions], descriptors, among, run.queries.targets, run.k)


def searched_by_image(run, among: None) -> np.ndarray:
    """Ours: the query generated in its target, its image searched among the regenerated gallery images."""
    return run.by_image.rows


def searched_by_features(run, among: None) -> np.ndarray:
    """Ours: the query generated in its target, its mid-layer features searched in the normalized gallery."""
    return run.by_features.rows


def searched_in_index(run, among: None) -> np.ndarray:
    """Ours, all poses: the query in every pose, searched in the --index of all views (its own kept poses)."""
    return run.by_index


def generated_image_among(run, among: np.ndarray) -> np.ndarray:
    """Ours' generated image, ranked among the filter's survivors only."""
    return two_step_rank(run.by_image.vectors, run.normalized.pixels, among, run.queries.targets, run.k)


def generated_features_among(run, among: np.ndarray) -> np.ndarray:
    """Ours' generated features, ranked among the filter's survivors only."""
    return two_step_rank(run.by_features.vectors, run.normalized.features, among, run.queries.targets, run.k)


def views_among(views: str) -> Callable:
    """A ranking by one of the run's generation distances (retrieval.benchmark.generation_distances) among the survivors."""
    def rank(run, among: np.ndarray) -> np.ndarray:
        return run.in_query_chunks(lambda part: rank_among(run.generation[views][part], among,
                                                           run.queries.targets[part], run.k))
    return rank


def fused_among(setting: Callable) -> Callable:
    """A ranking by the generation distance of views `setting(run)[0]`, fused with dlib's descriptor distance
    at weight `setting(run)[1]` (the generation distance alone without the Deep row)."""
    def rank(run, among: np.ndarray) -> np.ndarray:
        views, weight = setting(run)
        if run.descriptors is None:
            return views_among(views)(run, among)
        descriptors, found = run.descriptors
        positions, targets = run.queries.positions, run.queries.targets
        return run.in_query_chunks(lambda part: fused_ranking(
            run.generation[views][part], descriptors[positions[part]], descriptors, found[positions[part]], found,
            weight, among, targets[part], run.k))
    return rank


# -- the rows, in report order ---------------------------------------------------------------------
def _deep(run) -> bool:
    return run.config.deep


def _all_values(run) -> bool:
    return run.config.all_values


def _all_views_index(run) -> bool:
    return run.index is not None and run.index.views == "all"


def _distilled(run) -> bool:
    return run.config.all_values and "distilled all" in run.generation


METHODS: tuple[Method, ...] = (
    Method(TWO_STEP, IMAGE, CLASSIFIER, pixels_among, stage="2-step image", pixels=(
        "the gallery's uint8 pixels as one vector per image, L2-normalized; the pose classifier reads each image "
        "standardized to zero mean and unit variance")),
    Method(TWO_STEP_TRUE, IMAGE, TRUE, pixels_among, stage="2-step image", pixels=(
        "as 2-step / image; the filter is the true pose label")),
    Method(TWO_STEP, SECOND_NET, CLASSIFIER, reconstruction_among, stage="2-step 2nd network", pixels=(
        "the generator's input standardization (train-split pixel mean and std), features of each image "
        "regenerated in its predicted pose, L2-normalized")),
    Method(TWO_STEP, DEEP, CLASSIFIER, descriptor_among, stage="2-step deep", applies=_deep, pixels=(
        "dlib's own 150-px chip: HOG detection and 5-landmark alignment on each face at the resolution given by "
        "--deep-images (else the 32-px crop), the whole face resized where none is detected; dlib's own "
        "normalization, 128-d descriptor")),
    Method(OURS, IMAGE, EVERY, searched_by_image, stage="ours: generate + search", pixels=(
        "the stage-2 output on the 0-255 scale, clipped, L2-normalized; gallery: each face regenerated in its kept "
        "pose")),
    Method(OURS, SECOND_NET, EVERY, searched_by_features, stage="ours: generate + search", pixels=(
        "the refiner's mid-layer activations for standardized inputs, L2-normalized")),
    Method(OURS_POSE_AWARE, IMAGE, KEPT, generated_image_among, stage="ours, pose-aware: search",
           pixels="as ours / image"),
    Method(OURS_POSE_AWARE, SECOND_NET, KEPT, generated_features_among, stage="ours, pose-aware: search",
           pixels="as ours / our 2nd network"),
    Method(OURS_CLASSIFIER, SECOND_NET, CLASSIFIER, generated_features_among, stage="ours, pose-aware: search",
           pixels="as ours / our 2nd network; the filter is the 2-step pose classifier"),
    Method(OURS_TRUE, SECOND_NET, TRUE, generated_features_among, stage="ours, pose-aware: search",
           pixels="as ours / our 2nd network; the filter is the true pose label"),
    Method(OURS_CLASSIFIER, DISTILLED, CLASSIFIER, views_among("distilled target"),
           stage="ours, all poses: features + search", applies=_distilled, pixels=(
               "the descriptor head's prediction (stage2.descriptor, trained to give dlib's descriptor of the "
               "target) for query and gallery face both generated in the target pose, L2-normalized; the filter is "
               "the 2-step pose classifier")),
    Method(OURS_ALL_CLASSIFIER, DISTILLED, CLASSIFIER, views_among("distilled all"),
           stage="ours, all poses: features + search", applies=_distilled, pixels=(
               "as ours, classifier pose / distilled descriptor, for every generated pose, squared distances averaged")),
    Method(OURS_ALL_VALUES, SECOND_NET, KEPT, views_among("all"), stage="ours, all poses: features + search",
           applies=_all_values, pixels=(
               "as ours / our 2nd network, for query and gallery face generated in every value, each view "
               "L2-normalized, squared distances averaged; the filter is the kept pose")),
    Method(OURS_ALL_CLASSIFIER, SECOND_NET, CLASSIFIER, views_among("all"), stage="ours, all poses: features + search",
           applies=_all_values, pixels="as ours, all poses; the filter is the 2-step pose classifier"),
    Method(OURS_ALL_INDEX, SECOND_NET, EVERY, searched_in_index, stage="ours, all poses: index search",
           applies=_all_views_index, pixels=(
               "as ours, all poses, classifier pose, searched in the --index of all views: through its factory (e.g. "
               "VIEWPCA256,SQ8) and among the faces the index's own pose classifier kept in the target")),
    Method(OURS_FUSED, SECOND_NET_DEEP, CLASSIFIER, fused_among(lambda run: ("all", run.choice["fusion"]["weight"])),
           stage="ours, chosen on val: val runs + search", applies=lambda run: _all_values(run) and _deep(run), pixels=(
               "ours, all poses, classifier pose, and the Deep row's descriptors: each query's two distance rows "
               "divided by their medians and mixed with the weight chosen on the val people, where dlib found both "
               "faces; the generation distance alone elsewhere")),
    Method(OURS_CHOSEN, CHOSEN, CLASSIFIER,
           fused_among(lambda run: (run.choice["chosen"]["views"], run.choice["chosen"]["weight"])),
           stage="ours, chosen on val: val runs + search", applies=_all_values, pixels=(
               "the setting that ranks best on the val people: the all-poses distance, the target pose's view "
               "alone (query and gallery face both generated in the target) or the paper's single view (the "
               "gallery face in its kept pose, as ours, classifier pose), fused with the Deep descriptor "
               "distance at the chosen weight (0: the generation distance alone; no Deep row: 0); the filter is the "
               "2-step pose classifier")),
)
