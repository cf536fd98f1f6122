"""`rbg bench`: the paper's retrieval benchmark (§4.1.2, Tables 1–3, Figure 6) for one model on one FaceSet.

Every method answers the same seeded queries over the same gallery (the whole test split):
  2-step retrieval / image            pose classifier filter, then raw pixels
  2-step retrieval / our 2nd network  pose classifier filter, then the refiner's mid-layer features
  2-step retrieval / Deep             pose classifier filter, then dlib's face descriptor (optional: `deep`)
  2-step, true pose / image           the true pose labels as the filter (an upper bound for any classifier)
  ours / image                        generate the target, search pose-normalized generated images
  ours / our 2nd network              generate the target, search pose-normalized mid-layer features
  ours, pose-aware / …                the same search among gallery faces whose pose normalization kept
                                      the target pose: the generator's own pose evidence as the filter
  ours, classifier pose / …           the same search among faces the 2-step pose classifier puts there
  ours, true pose / …                 the same search among faces truly in the target pose (upper bound)
  ours, all poses / our 2nd network   query and gallery compared in every generated pose, among faces whose
                                      pose normalization kept the target (retrieval/multi_view.py; --all-values)
  ours, all poses, classifier pose    the same, among faces the 2-step pose classifier puts in the target
  ours + Deep, all poses, classifier  the same distance fused with dlib's descriptor distance of the gallery
                                      originals (retrieval/fusion.py; --all-values with --deep), its weight
                                      chosen on the FaceSet's val people
  ours, chosen on val                 the setting ranking best on the val people (--all-values): every pose's
                                      view or the target's alone (of the mid-layer features, or of a distilled
                                      model's descriptor head), and the Deep weight (0 without --deep)
  … / distilled descriptor            with a model trained with --distill-images (--all-values): the classifier-
                                      pose rows on its descriptor head's output instead of the mid layer

The pose classifier of the 2-step rows (and of the rows named "classifier pose") is BenchConfig's
`pose_classifier`: the paper-style linear model on pixels by default, a small CNN on request.
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

import faiss

from facedata.atomic import atomic_dir
from facedata.combined import edited_factors, with_factor
from facedata.errors import UserError
from facedata.faceset import FaceSet, pose_degrees
from facedata.outputs import ArtifactKind, exclusive_lock
from facedata.provenance import provenance
from generator.evaluate import KIND as GENERATION_KIND
from index.faiss_index import GalleryIndex, IndexConfig
from index.features import compute_feature_chunks
from index.pose_classifier import SAVABLE_MODELS, PoseClassifierConfig
from index.pose_normalize import NORMALIZE_MODES, kept_accuracy
from retrieval.bench_methods import CLASSIFIER, EVERY, KEPT, METHODS, OURS_FUSED, SECOND_NET_DEEP, TRUE
from facedata.faceset import same_faces_at_resolution
from retrieval.deep_descriptor import DEEP_DETECTOR
from retrieval.fusion import DEFAULT_WEIGHT as DEFAULT_FUSION_WEIGHT
from retrieval.fusion import DISTILLED_VIEWS, VIEWS, WEIGHTS, best_candidate, fused_ranking, settings
from retrieval.metrics import (PAPER_KS, criterion2_factors, criterion2_label, default_criterion2, pose_change,
                               recall_by_group)
from retrieval.multi_view import rank_among, view_distances
from retrieval.protocol import QuerySet, mean_average_precision, sample_queries, score
from retrieval.report_tables import report_markdown
from retrieval.search import Found, search_by_generation
from retrieval.two_step import fit_pose_classifier, fit_pose_filter, gallery_descriptors, true_pose_filter

REPORT_FILE = "report.json"  # the manifest that marks a report folder
KIND = ArtifactKind("report", REPORT_FILE, (REPORT_FILE, "report.md", "recall.png", "figure*.png"),  # what run_benchmark writes
                    folders=(("generation", GENERATION_KIND),))
DISTILLED_LAYER = "stage2.descriptor"


@dataclass(frozen=True)
class BenchConfig:
    """What `rbg bench` runs: query count and seed, K values, the feature layer, the FAISS factory."""

    queries: int = 10_000
    seed: int = 0
    ks: tuple[int, ...] = PAPER_KS
    layer: str | None = None  # the generator's feature layer for "our 2nd network" (None: its default)
    factory: str = "Flat"
    generation_pairs: int = 10_000  # Table 1 (0: not computed)
    criterion2_factor: str | None = None  # one factor or "a,b" (all must match); None: illumination, else expression
    batch_size: int = 256
    grid_queries: int = 8  # rows of the Figure-7 grid
    gallery_identities: int | None = None  # keep only the first N test identities (quick runs, the demo)
    deep: bool = False  # also the 2-step baseline on dlib's face descriptor (needs the `deep` extra)
    deep_images: str | None = None  # a FaceSet of the same faces at source resolution, for the Deep row
    deep_detector: str = DEEP_DETECTOR  # finds the faces dlib describes (facedata.detect.DETECTORS)
    pose_images: str | None = None  # a FaceSet of the same faces at source resolution, for the pose classifier
    all_values: bool = False  # also ours over every generated value (V more feature passes per gallery face)
    normalize: str = "full"  # how gallery faces are pose-normalized for ours (index.pose_normalize.NORMALIZE_MODES)
    pose_classifier: str = "logreg"  # the 2-step's step 1 (index.pose_classifier.CLASSIFIER_MODELS)
    fusion_weight: float | None = None  # ours + Deep's descriptor weight; None: chosen on the val people
    split: str = "test"  # the people who form gallery and queries: test (report once) or val (choose settings on)
    pose_fit: str = "train+val"  # who the pose classifier learns from on a test run: train, or train+val (every person
    # outside the test gallery; settings are still chosen on val with a classifier fitted on the train people alone)


@dataclass(frozen=True)
class GalleryFeatures:
    """The pose-normalized gallery: kept value per image and the two kinds of vectors indexed for ours."""

    kept: np.ndarray  # (g,) str kept value of the edited factor
    pixels: np.ndarray  # (g, H·W) float32 stage-2 image generated in the kept value (0–255, clipped)
    features: np.ndarray  # (g, d) float32 mid-layer features of that generation, L2-normalized


def check_compatible(generator, faces: FaceSet) -> None:
    """The FaceSet must carry the generator's edited factor with the same vocabulary (one-hot order)."""
    factor = generator.edit_factor
    if factor not in faces.factors:
        raise UserError(f"{faces.info.name}: has no '{factor}' factor, which model task '{generator.task}' edits")
    if tuple(faces.vocabulary(factor)) != tuple(generator.vocabulary):
        raise UserError(f"{faces.info.name}: {factor} values {list(faces.vocabulary(factor))} differ from the model's "
                        f"{list(generator.vocabulary)}")
    if tuple(faces.image_size) != tuple(generator.image_size):
        raise UserError(f"{faces.info.name}: images are {faces.image_size}, the model expects {generator.image_size}")


def gallery_features(generator, gallery: FaceSet, layer: str | None, batch_size: int, cache: Path | None,
                     normalize: str = "full", classifier=None, progress: bool = True) -> GalleryFeatures:
    """§4.1.2: the pose-normalized gallery's kept values, images and features, through index.features.

    The benchmark's most expensive step (V + 1 network passes per image under full normalization), so
    it is computed chunk by chunk into `cache` (a folder per model and gallery, locked while in use)
    and a rerun resumes; the same code builds `rbg index build`'s indexes.
    """
    layer = layer or generator.default_feature_layer
    folder = None
    if cache is not None:
        folder = Path(cache) / f"gallery-{generator.checkpoint_hash[:16]}-{gallery.fingerprint()[:16]}"
    with tempfile.TemporaryDirectory(prefix="rbg-bench-") as scratch:
        target = folder or Path(scratch) / "features"
        target.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(target.with_name(target.name + ".lock"), what=str(target)):
            chunks = compute_feature_chunks(generator, gallery, target, layer, batch_size, progress,
                                            normalize=normalize, classifier=classifier, pixels=True)
            kept = np.asarray(generator.vocabulary, dtype=object)[chunks.kept()].astype(str)
            pixels = np.concatenate([np.asarray(chunks.pixels(i)) for i in range(chunks.num_chunks)])
            features = np.concatenate(list(chunks.iter_vectors()))
    return GalleryFeatures(kept, pixels, features)


def check_bench_index(generator, index: GalleryIndex, gallery: FaceSet) -> None:
    """Refuse an `rbg bench --index` the bench cannot read: another model's, another gallery's (or grown by
    added faces), or one of kept views in a factory whose vectors do not read back exactly (not Flat)."""
    where = index.path or "--index"
    index.check_model(generator)
    if index.info.gallery.get("fingerprint") != gallery.fingerprint() or index.info.additions:
        raise UserError(f"{where}: indexes gallery '{index.info.gallery.get('name')}'"
                        f"{' and added faces' if index.info.additions else ''}, not the test split of this "
                        "--data (build it with rbg index build --data DATA --split test)")
    if index.views == "kept" and not isinstance(faiss.downcast_index(index.index), faiss.IndexFlat):
        raise UserError(f"{where}: factory '{index.info.factory}' does not store its vectors exactly; the bench reads "
                        "an index of kept views as Flat (rbg index build --views kept --factory Flat), or an index of "
                        "all views in any factory")


def indexed_gallery_features(generator, index: GalleryIndex, gallery: FaceSet, batch_size: int) -> GalleryFeatures:
    """The gallery's features read back from a built index of kept views (`rbg bench --index`), kept images regenerated.

    The index must hold the bench's gallery (same fingerprint), one view per face, by this model, in a
    factory whose vectors read back exactly (Flat): run_benchmark refuses any other (check_bench_index) before
    its long work. The pixel rows need the kept images, generated once per face in its kept value (the image
    itself under normalization "none").
    """
    vectors = index.index.reconstruct_n(0, index.info.count)
    kept = index.faces[f"kept_{generator.edit_factor}"].to_numpy().astype(str)
    if index.config.normalize == "none":
        pixels = gallery.images.reshape(len(gallery), -1).astype(np.float32)
    else:
        parts = []
        for start in tqdm(range(0, len(gallery), batch_size), desc="kept images", unit="batch"):
            chosen = slice(start, start + batch_size)
            parts.append(generator.generate(gallery.images[chosen], list(kept[chosen]), batch_size=batch_size)[1])
        pixels = np.clip(np.concatenate(parts), 0, 255).reshape(len(gallery), -1)
    return GalleryFeatures(kept, pixels, np.asarray(vectors, dtype=np.float32))


def ours_index(generator, vectors: np.ndarray, layer: str, config: BenchConfig) -> GalleryIndex:
    """The pose-normalized gallery's vectors of `layer` in the configured FAISS factory, as this model's index."""
    return GalleryIndex.from_vectors(vectors, config=IndexConfig(factory=config.factory, seed=config.seed),
                                     checkpoint_hash=generator.checkpoint_hash, layer=layer)


class BenchRun:
    """One benchmark's shared work, each piece computed once, when a row (retrieval.bench_methods) first needs it.

    The pose classifier and the gallery's normalization are timed under their own names; whatever else a
    row computes first counts in that row's stage.
    """

    def __init__(self, generator, faces: FaceSet, train: FaceSet, gallery: FaceSet, queries: QuerySet,
                 config: BenchConfig, cache: Path | None, index: GalleryIndex | None, also: tuple[str, ...]):
        self.generator, self.faces, self.train, self.gallery, self.queries = generator, faces, train, gallery, queries
        self.config, self.cache, self.index, self.also = config, cache, index, also
        self.pose_people = pose_fit_people(faces, train, config)
        self.k = max(config.ks)
        self.timer = StageTimer()

    def among(self, which: str) -> np.ndarray | None:
        """The gallery faces' values a row's filter compares with the query's target (None: no filter)."""
        return {CLASSIFIER: lambda: self.pose_filter.gallery_pred, TRUE: lambda: self.true_filter.gallery_pred,
                KEPT: lambda: self.normalized.kept, EVERY: lambda: None}[which]()

    @cached_property
    def pose_filter(self):
        with self.timer.stage(f"pose classifier ({self.config.pose_classifier}): train + predict"):
            return fit_pose_filter(self.pose_people, self.gallery, self.queries,
                                   PoseClassifierConfig(model=self.config.pose_classifier, seed=self.config.seed), self.cache,
                                   train_images=pose_images(self.faces, self.pose_people, self.config),
                                   gallery_images=pose_images(self.faces, self.gallery, self.config))

    @cached_property
    def val_classifier(self):
        """The pose classifier the val choice reads with: fitted on the train people alone (never the val people)."""
        if self.pose_people is self.train:
            return self.pose_filter.classifier
        with self.timer.stage(f"pose classifier ({self.config.pose_classifier}): train + predict"):
            return fit_pose_classifier(self.train, self.queries.edit,
                                       PoseClassifierConfig(model=self.config.pose_classifier, seed=self.config.seed),
                                       self.cache, pose_images(self.faces, self.train, self.config))

    @cached_property
    def crop_classifier(self):
        """The pose classifier of the cheap normalizations, which read the pose from the crops the generator
        is given: the 2-step's own classifier, or one fitted on the crops when that one reads --pose-images."""
        if self.config.pose_images is None:
            return self.pose_filter.classifier
        with self.timer.stage(f"pose classifier ({self.config.pose_classifier}): train + predict"):
            return crop_pose_classifier(self.pose_people, self.queries.edit, self.config, self.cache)

    @cached_property
    def val_crop_classifier(self):
        """crop_classifier for the val choice: fitted on the train people alone."""
        if self.pose_people is self.train:
            return self.crop_classifier
        if self.config.pose_images is None:
            return self.val_classifier
        with self.timer.stage(f"pose classifier ({self.config.pose_classifier}): train + predict"):
            return crop_pose_classifier(self.train, self.queries.edit, self.config, self.cache)

    @cached_property
    def true_filter(self):
        return true_pose_filter(self.gallery, self.queries)

    @cached_property
    def descriptors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """dlib's descriptors of the gallery and whether it found each face; None without --deep."""
        if not self.config.deep:
            return None
        images = (source_resolution_images(self.faces, self.gallery, self.config.deep_images, "--deep-images")
                  if self.config.deep_images else None)
        return gallery_descriptors(self.gallery, cache=self.cache, images=images, detector=self.config.deep_detector)

    @cached_property
    def normalized(self) -> GalleryFeatures:
        """The pose-normalized gallery; the cheap normalizations take the kept pose from the 2-step's classifier."""
        kept_index = self.index if self.index is not None and self.index.views == "kept" else None
        classifier = self.crop_classifier if kept_index is None and self.config.normalize != "full" else None
        with self.timer.stage("pose-normalize gallery"):
            if kept_index is not None:
                return indexed_gallery_features(self.generator, kept_index, self.gallery, self.config.batch_size)
            return gallery_features(self.generator, self.gallery, self.config.layer, self.config.batch_size, self.cache,
                                    self.config.normalize, classifier)

    def _search(self, vectors: np.ndarray, layer: str) -> Found:
        index = ours_index(self.generator, vectors, layer, self.config)
        return search_by_generation(self.generator, index, self.gallery.images[self.queries.positions],
                                    list(self.queries.targets), self.k, self.config.batch_size)

    @cached_property
    def by_image(self) -> Found:
        """Ours with the generated image as the feature, searched among the regenerated gallery images."""
        return self._search(self.normalized.pixels, self.generator.image_layer)

    @cached_property
    def by_features(self) -> Found:
        """Ours with the refiner's features, searched in the normalized gallery (Figure 7's search)."""
        return self._search(self.normalized.features, self.config.layer or self.generator.default_feature_layer)

    @cached_property
    def by_index(self) -> np.ndarray:
        """Ours, all poses, searched in an --index of all views: its factory, and among the faces its own pose
        classifier kept in the target. (q, k) gallery positions (the index holds the gallery in order), -1 past
        the survivors."""
        images, targets = self.gallery.images[self.queries.positions], self.queries.targets
        step = 1024  # the queries' all-views vectors (V·d floats each) made and searched a part at a time
        return np.concatenate([search_by_generation(self.generator, self.index, images[s : s + step],
                                                    list(targets[s : s + step]), self.k, self.config.batch_size).rows
                               for s in range(0, len(images), step)])

    @cached_property
    def generation(self) -> dict[str, np.ndarray]:
        return generation_distances(self.generator, self.gallery.images, self.queries, self.config,
                                    normalized=self.normalized.features)

    @cached_property
    def choice(self) -> dict:
        return val_choice(self.generator, self.faces, self.config, self.val_classifier, self.cache, self.also,
                          deep=self.descriptors is not None,
                          crop_classifier=self.val_crop_classifier if self.config.normalize != "full" else None)

    def in_query_chunks(self, rank, size: int = 2048) -> np.ndarray:
        """rank(slice) over the queries `size` at a time, concatenated: (q, g) distance rows stay bounded in memory."""
        return np.concatenate([rank(slice(start, start + size)) for start in range(0, len(self.queries), size)])


class StageTimer:
    """Seconds per named stage, each stage's own: time spent in a stage nested inside it counts for the inner one."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._nested: list[float] = []

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            inner, total = self._nested.pop(), time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + total - inner
            if self._nested:
                self._nested[-1] += total


def run_benchmark(generator, faces: FaceSet, out: str | Path, config: BenchConfig = BenchConfig(),
                  cache: Path | None = None, force: bool = False, index: GalleryIndex | None = None) -> dict:
    """Run every row of retrieval.bench_methods.METHODS that applies on the same queries; write report.md,
    report.json and figures into `out` atomically.

    An existing `out` is replaced only if it is a report holding nothing else, or with `force`. With
    `index` (a Flat index of the test gallery built by this model) ours reads the gallery from it and
    takes its layer and normalization, instead of pose-normalizing the gallery again.
    """
    faces = with_factor(faces, generator.edit_factor)  # several factors: criterion 1 asks for every target value
    check_compatible(generator, faces)
    if index is not None:
        config = replace(config, layer=index.layer, normalize=index.config.normalize)
    PoseClassifierConfig(model=config.pose_classifier, seed=config.seed)  # refuses an unknown model
    if config.normalize not in NORMALIZE_MODES:
        raise UserError(f"unknown normalization '{config.normalize}' (valid: {', '.join(NORMALIZE_MODES)})")
    if config.normalize != "full" and config.pose_classifier not in SAVABLE_MODELS:
        raise UserError(f"normalization '{config.normalize}' keys its cache by the pose classifier's weights: use "
                        f"pose classifier {' or '.join(SAVABLE_MODELS)}, not '{config.pose_classifier}'")
    if config.split not in ("test", "val"):
        raise UserError(f"unknown split '{config.split}' for the gallery (valid: test, val)")
    if config.pose_fit not in POSE_FITS:
        raise UserError(f"unknown pose fit '{config.pose_fit}' (valid: {', '.join(POSE_FITS)})")
    if not faces.has_split(config.split):
        raise UserError(f"{faces.info.name}: has no {config.split} people to form the gallery")
    train, gallery = faces.split("train"), faces.split(config.split)
    if config.gallery_identities is not None:
        keep = gallery.identities()[: config.gallery_identities]
        gallery = gallery.where(gallery.faces["identity"].isin(keep).to_numpy(),
                                f"keeping {config.gallery_identities} {config.split} identities")
    edit = generator.edit_factor
    k = max(config.ks)
    if len(gallery) < k:
        raise UserError(f"{faces.info.name}: the {config.split} gallery holds {len(gallery)} images, fewer than K={k}")
    also = criterion2_factors(config.criterion2_factor) or default_criterion2(list(gallery.faces.columns), edit)
    for factor in also:
        if factor in (edit, *edited_factors(edit)) or factor not in faces.factors:
            raise UserError(f"--criterion2: '{factor}' is not a factor to keep besides {edit} (factors of "
                            f"{faces.info.name}: {', '.join(f for f in faces.factors if f != edit) or 'none'})")
    if index is not None:
        check_bench_index(generator, index, gallery)  # before any long work
    queries = sample_queries(gallery, edit, config.queries, seed=config.seed)
    run = BenchRun(generator, faces, train, gallery, queries, config, cache, index, also)
    rankings, reads = {}, {}
    for method in METHODS:
        if method.applies(run):
            with run.timer.stage(method.stage):
                rankings[method.key] = method.rank(run, run.among(method.among))
            reads[method.key] = method.pixels
    timings = run.timer.seconds

    results = score_all(rankings, queries, gallery, config.ks, also, reads)
    choice = run.__dict__.get("choice")  # made only where a row chose on val
    descriptors = run.descriptors
    record = {
        "fusion": choice["fusion"] if (OURS_FUSED, SECOND_NET_DEEP) in rankings else None,
        "chosen": choice["chosen"] if choice else None,
        "data": {"name": faces.info.name, "path": str(faces.root) if faces.root else None,
                 "gallery": len(gallery), "train_images": len(train), "split": config.split,
                 f"{config.split}_identities": gallery.num_identities},
        "model": {"path": str(generator.path), "task": generator.task, "edit": edit,
                  "vocabulary": list(generator.vocabulary), "checkpoint_sha256": generator.checkpoint_hash,
                  "feature_layer": config.layer or generator.default_feature_layer},
        "config": asdict(config),
        "gallery_index": str(index.path) if index is not None else None,
        "gallery_index_views": index.views if index is not None else None,
        "gallery_index_factory": index.info.factory if index is not None else None,
        "queries": len(queries),
        "criterion2_factor": criterion2_label(also),
        "criterion2_factors": list(also),
        "criterion2_values": int(len(gallery.faces.drop_duplicates(list(also)))) if also else 1,
        "pose_classifier_accuracy": run.pose_filter.accuracy,
        "pose_classifier_fitted_on": {"faces": len(run.pose_people), "identities": run.pose_people.num_identities,
                                      "splits": sorted(set(run.pose_people.faces["split"]))},
        "pose_classifier_images": config.pose_images or "the gallery's own crops",
        "pose_normalization_accuracy": kept_accuracy(run.normalized.kept, gallery.faces[edit].to_numpy()),
        "deep": ({"images": config.deep_images or "the gallery's own crops", "detector": config.deep_detector,
                  "faces_detected": float(np.mean(descriptors[1]))} if descriptors is not None else None),
        "results": results,
        "change_groups": change_groups(rankings, queries, gallery, also),
        "value_pairs": value_pairs(rankings, queries, gallery),
        "timings_seconds": timings,
        "provenance": provenance(seed=config.seed),
    }
    out = Path(out)
    with atomic_dir(out, kind=KIND, force=force) as tmp:
        from generator.evaluate import evaluate_generation
        from retrieval import report_figures

        record["generation"] = (evaluate_generation(generator, faces, tmp / "generation", config.generation_pairs,
                                                    config.seed, config.batch_size) if config.generation_pairs else {})
        report_figures.recall_bars(results, tmp / "recall.png")
        if record["change_groups"]:
            report_figures.change_curve(record["change_groups"], edit, tmp / "figure6_change.png")
        shown = slice(0, config.grid_queries)
        found = run.by_features
        report_figures.retrieval_grid(gallery.images[queries.positions][shown], found.generated[shown], queries, gallery,
                                      found.distances[shown, :5], found.rows[shown, :5], tmp / "figure7_retrievals.png")
        (tmp / REPORT_FILE).write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
        (tmp / "report.md").write_text(report_markdown(record))
    return record


def generation_distances(generator, images: np.ndarray, queries: QuerySet, config: BenchConfig,
                         normalized: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The (q, g) generation distances a setting may rank by: "all" and "target" views of the configured
    layer; with `normalized` (the pose-normalized gallery's features, (g, d) L2-normalized) "kept", the
    paper's single view (the query generated in its target against each face in its kept pose, as "ours,
    classifier pose" ranks); and, for a model with a descriptor head (and another layer configured), its
    "distilled" pair."""
    *views, query = view_distances(generator, images, queries.positions, queries.targets, config.layer,
                                   config.batch_size, query_views=True)
    distances = dict(zip(VIEWS[:2], views))
    layer = config.layer or generator.default_feature_layer
    if normalized is not None:  # the query's target view came with the every-view pass
        distances["kept"] = np.maximum(2.0 - 2.0 * (query @ np.asarray(normalized, np.float32).T), 0.0).astype(np.float32)
    if DISTILLED_LAYER in getattr(generator, "feature_layers", ()) and layer != DISTILLED_LAYER:
        distances.update(zip(DISTILLED_VIEWS, view_distances(generator, images, queries.positions, queries.targets,
                                                             DISTILLED_LAYER, config.batch_size)))
    return distances


def val_choice(generator, faces: FaceSet, config: BenchConfig, classifier, cache: Path | None,
               also: tuple[str, ...], deep: bool, crop_classifier=None) -> dict:
    """The settings of "ours, chosen on val" and of ours + Deep's weight, chosen on the val people.

    On val the bench's own protocol runs with the val people as queries (seeded) and a gallery of the val
    people and the train people as distractors (the train-fitted pose classifier, the all-poses,
    target-view and kept-view distances, dlib's descriptors with `deep`): a handful of val people alone is
    too easy a gallery to tell settings apart (cmu_faces' 2 val people: R@1 100 % for almost every setting).
    Every setting (fusion.settings: views × weight, weight 0 alone without `deep`, config.fusion_weight
    alone if set) is scored by criterion-1 mAP (the rank of every right face: R@1 of 2 val people ties
    most settings at 99 %), then criterion-1 R@1, R@5, then criterion-2 R@1; ties go to the earlier
    setting. The test people are never looked at. Without val people: every view, weight config.fusion_weight, else
    the default 0.5 with `deep`, else 0. Returns {"fusion": …, "chosen": …}, each with its choice and scores.
    `classifier` reads the faces of config.pose_images where set; `crop_classifier` (the cheap
    normalizations') reads the crops.
    """
    fixed = config.fusion_weight
    weights = (0.0,) if not deep else (float(fixed),) if fixed is not None else WEIGHTS
    val = faces.split("val") if faces.has_split("val") else None
    if val is None:
        said = "default (the FaceSet has no val people to choose on)"
        weight = weights[0] if fixed is not None else (DEFAULT_FUSION_WEIGHT if deep else 0.0)
        return {"fusion": {"weight": weight, "chosen_on": "--fusion-weight" if fixed is not None else said},
                "chosen": {"views": "all", "weight": weight if deep else 0.0, "chosen_on": said}}
    edit = generator.edit_factor
    pool = faces.where(faces.faces["split"].isin(["train", "val"]).to_numpy(), "keeping the train and val people")
    drawn = sample_queries(val, edit, config.queries, seed=config.seed)
    queries = QuerySet(positions=np.flatnonzero((pool.faces["split"] == "val").to_numpy())[drawn.positions],
                       targets=drawn.targets, edit=edit)
    predicted = classifier.predict(pose_images(faces, pool, config))
    normalized = gallery_features(generator, pool, config.layer, config.batch_size, cache, config.normalize,
                                  crop_classifier).features
    generation = generation_distances(generator, pool.images, queries, config, normalized=normalized)
    if deep:
        deep_images = (source_resolution_images(faces, pool, config.deep_images, "--deep-images")
                       if config.deep_images else None)
        descriptors, found = gallery_descriptors(pool, cache=cache, images=deep_images, detector=config.deep_detector)
    ks = (1, min(5, len(pool)))

    def scores(setting) -> tuple[float, ...]:
        distances = generation[setting.views]
        ranked = (fused_ranking(distances, descriptors[queries.positions], descriptors, found[queries.positions], found,
                                setting.weight, predicted, queries.targets, len(pool))
                  if deep else rank_among(distances, predicted, queries.targets, len(pool)))
        first = score(ranked, queries, pool, 1, ks, also=also)[0].recall
        second = score(ranked, queries, pool, 2, ks[:1], also=also)[0].recall
        return round(mean_average_precision(ranked, queries, pool, 1, also=also), 4), first[1], first[ks[-1]], second[1]

    scored = {setting: scores(setting) for setting in settings(weights, tuple(generation))}
    on = (f"val: {len(queries)} queries of the {val.num_identities} val people, gallery {len(pool)} faces of them and "
          f"the {pool.num_identities - val.num_identities} train people")
    every_view = {s.weight: v for s, v in scored.items() if s.views == "all"}
    chosen = best_candidate(scored)
    fusion = ({"weight": float(fixed), "chosen_on": "--fusion-weight"} if fixed is not None else
              {"weight": best_candidate(every_view), "chosen_on": on,
               "val_scores": {f"{w:g}": list(v) for w, v in every_view.items()}})
    return {"fusion": fusion,
            "chosen": {"views": chosen.views, "weight": chosen.weight, "chosen_on": on,
                       "val_scores": {s.label(): list(v) for s, v in scored.items()}}}


def score_all(rankings: dict, queries: QuerySet, gallery: FaceSet, ks, also: tuple[str, ...],
              reads: dict | None = None) -> list[dict]:
    """recall@K of each method under both criteria, as a list of JSON-ready rows (with how each reads pixels)."""
    rows = []
    for (method, features), ranked in rankings.items():
        row = {"method": method, "features": features}
        if reads and (method, features) in reads:
            row["pixels"] = reads[(method, features)]
        for criterion in (1, 2):
            report, _ = score(ranked, queries, gallery, criterion, ks, also=also)
            row[f"criterion{criterion}"] = report.to_json()
        rows.append(row)
    return rows


def change_groups(rankings: dict, queries: QuerySet, gallery: FaceSet, also: tuple[str, ...], k: int = 5) -> dict:
    """Figure 6: recall@k (criterion 1) per size of the change, |target − source| in degrees; {} for named values."""
    source = queries.faces(gallery)[queries.edit].to_numpy().astype(str)
    if any(pose_degrees(v) is None for v in np.unique(np.concatenate([source, queries.targets]))):
        return {}
    groups = pose_change(source, queries.targets)
    result = {}
    for (method, features), ranked in rankings.items():
        _, correct = score(ranked, queries, gallery, 1, (k,), also=also)
        result[f"{method} / {features}"] = {f"{g:g}": {"recall": r, "queries": n} for g, (r, n) in recall_by_group(correct, groups, k).items()}
    return result


def value_pairs(rankings: dict, queries: QuerySet, gallery: FaceSet, k: int = 1) -> dict:
    """recall@k (criterion 1) per (source value → target value) of the edited factor, for every method."""
    source = queries.faces(gallery)[queries.edit].to_numpy().astype(str)
    labels = np.char.add(np.char.add(source, " → "), queries.targets.astype(str))
    result = {}
    for (method, features), ranked in rankings.items():
        _, correct = score(ranked, queries, gallery, 1, (k,), also=None)
        result[f"{method} / {features}"] = {str(label): {"recall": float(r), "queries": n}
                                            for label, (r, n) in recall_by_group(correct, labels, k).items()}
    return result


def source_resolution_images(faces: FaceSet, gallery: FaceSet, path: str, option: str) -> np.ndarray:
    """The gallery's faces taken from another FaceSet of the same faces (same rows) at another resolution;
    `option` names the path in errors."""
    return same_faces_at_resolution(faces, path, option).take(gallery.rows).images  # positions = rows


def pose_images(faces: FaceSet, subset: FaceSet, config: BenchConfig) -> np.ndarray:
    """The images the pose classifier reads for `subset`'s faces: config.pose_images' (source resolution),
    else the crops themselves. On cmu_faces a 14-people cross-validation put the CNN classifier at 98.3 %
    on the 64×60 frames against 95.4 % on the 32-px crops (docs/results.md)."""
    if config.pose_images is None:
        return subset.images
    return source_resolution_images(faces, subset, config.pose_images, "--pose-images")


POSE_FITS = ("train", "train+val")


def pose_fit_people(faces: FaceSet, train: FaceSet, config: BenchConfig) -> FaceSet:
    """The people the pose classifier learns from: on a test run with pose_fit train+val, every person outside the
    test gallery (the train and val people); else the train people (a val run's gallery is the val people)."""
    if config.split != "test" or config.pose_fit == "train" or not faces.has_split("val"):
        return train
    return faces.where(faces.faces["split"].isin(["train", "val"]).to_numpy(), "keeping the train and val people")


def crop_pose_classifier(train: FaceSet, edit: str, config: BenchConfig, cache: Path | None):
    """The configured pose classifier fitted on the train people's crops (cached like the 2-step's)."""
    return fit_pose_classifier(train, edit, PoseClassifierConfig(model=config.pose_classifier, seed=config.seed), cache)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))
