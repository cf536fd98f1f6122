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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

import faiss

from facedata.atomic import atomic_dir
from facedata.errors import UserError
from facedata.faceset import FaceSet, pose_degrees
from facedata.outputs import ArtifactKind, exclusive_lock
from facedata.provenance import provenance
from generator.evaluate import KIND as GENERATION_KIND
from index.faiss_index import GalleryIndex, IndexConfig
from index.features import compute_feature_chunks
from index.pose_classifier import SAVABLE_MODELS, PoseClassifierConfig
from index.pose_normalize import NORMALIZE_MODES, kept_accuracy
from retrieval.metrics import (PAPER_KS, criterion2_factors, criterion2_label, pose_change, recall_by_group,
                               second_criterion_factor)
from retrieval.paper_figures import POSE_CLASSIFIER_ACCURACY
from retrieval.protocol import QuerySet, sample_queries, score
from retrieval.report_tables import mse_table, recall_table
from retrieval.search import search_by_generation
from retrieval.baselines import two_step_rank
from retrieval.deep_descriptor import same_faces_at_resolution
from retrieval.fusion import DEFAULT_WEIGHT as DEFAULT_FUSION_WEIGHT
from retrieval.fusion import DISTILLED_VIEWS, VIEWS, WEIGHTS, best_candidate, fused_ranking, settings
from retrieval.multi_view import rank_among, view_distances
from retrieval.two_step import (
    fit_pose_filter,
    gallery_descriptors,
    rank_by_generator_features,
    rank_by_pixels,
    true_pose_filter,
)

TWO_STEP, TWO_STEP_TRUE, OURS, OURS_POSE_AWARE = "2-step retrieval", "2-step, true pose", "ours", "ours, pose-aware"
OURS_CLASSIFIER, OURS_TRUE, OURS_ALL_VALUES = "ours, classifier pose", "ours, true pose", "ours, all poses"
REPORT_FILE = "report.json"  # the manifest that marks a report folder
KIND = ArtifactKind("report", REPORT_FILE, (REPORT_FILE, "report.md", "recall.png", "figure*.png"),  # what run_benchmark writes
                    folders=(("generation", GENERATION_KIND),))
OURS_ALL_CLASSIFIER = "ours, all poses, classifier pose"
OURS_FUSED = "ours + Deep, all poses, classifier pose"
OURS_CHOSEN = "ours, chosen on val"
IMAGE, SECOND_NET, DEEP, SECOND_NET_DEEP = "image", "our 2nd network", "Deep", "our 2nd network + Deep"
CHOSEN = "our 2nd network, views and Deep weight chosen on val"
DISTILLED = "distilled descriptor"  # a model trained with --distill-images: its head's 128-d prediction
DISTILLED_LAYER = "stage2.descriptor"


PIXELS = {  # how each row turns images into the vectors it compares (report.md says it beside the tables)
    (TWO_STEP, IMAGE): "the gallery's uint8 pixels as one vector per image, L2-normalized; the pose classifier "
                       "reads each image standardized to zero mean and unit variance",
    (TWO_STEP_TRUE, IMAGE): "as 2-step / image; the filter is the true pose label",
    (TWO_STEP, SECOND_NET): "the generator's input standardization (train-split pixel mean and std), features of "
                            "each image regenerated in its predicted pose, L2-normalized",
    (TWO_STEP, DEEP): "dlib's own 150-px chip: HOG detection and 5-landmark alignment on each face at the resolution "
                      "given by --deep-images (else the 32-px crop), the whole face resized where none is detected; "
                      "dlib's own normalization, 128-d descriptor",
    (OURS, IMAGE): "the stage-2 output on the 0-255 scale, clipped, L2-normalized; gallery: each face regenerated "
                   "in its kept pose",
    (OURS, SECOND_NET): "the refiner's mid-layer activations for standardized inputs, L2-normalized",
    (OURS_POSE_AWARE, IMAGE): "as ours / image",
    (OURS_POSE_AWARE, SECOND_NET): "as ours / our 2nd network",
    (OURS_CLASSIFIER, SECOND_NET): "as ours / our 2nd network; the filter is the 2-step pose classifier",
    (OURS_TRUE, SECOND_NET): "as ours / our 2nd network; the filter is the true pose label",
    (OURS_ALL_VALUES, SECOND_NET): "as ours / our 2nd network, for query and gallery face generated in every value, "
                                   "each view L2-normalized, squared distances averaged; the filter is the kept pose",
    (OURS_ALL_CLASSIFIER, SECOND_NET): "as ours, all poses; the filter is the 2-step pose classifier",
    (OURS_FUSED, SECOND_NET_DEEP): "ours, all poses, classifier pose, and the Deep row's descriptors: each query's two "
                                   "distance rows divided by their medians and mixed with the weight chosen on the val "
                                   "people, where dlib found both faces; the generation distance alone elsewhere",
    (OURS_CLASSIFIER, DISTILLED): "the descriptor head's prediction (stage2.descriptor, trained to give dlib's "
                                  "descriptor of the target) for query and gallery face both generated in the target "
                                  "pose, L2-normalized; the filter is the 2-step pose classifier",
    (OURS_ALL_CLASSIFIER, DISTILLED): "as ours, classifier pose / distilled descriptor, for every generated pose, "
                                      "squared distances averaged",
    (OURS_CHOSEN, CHOSEN): "the setting that ranks best on the val people: the all-poses distance or the target "
                           "pose's view alone (query and gallery face both generated in the target), fused with the "
                           "Deep descriptor distance at the chosen weight (0: the generation distance alone; no "
                           "Deep row: 0); the filter is the 2-step pose classifier",
}


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
    all_values: bool = False  # also ours over every generated value (V more feature passes per gallery face)
    normalize: str = "full"  # how gallery faces are pose-normalized for ours (index.pose_normalize.NORMALIZE_MODES)
    pose_classifier: str = "logreg"  # the 2-step's step 1 (index.pose_classifier.CLASSIFIER_MODELS)
    fusion_weight: float | None = None  # ours + Deep's descriptor weight; None: chosen on the val people
    split: str = "test"  # the people who form gallery and queries: test (report once) or val (choose settings on)


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


def indexed_gallery_features(generator, index: GalleryIndex, gallery: FaceSet, batch_size: int) -> GalleryFeatures:
    """The gallery's features read back from a built index of it (`rbg bench --index`), kept images regenerated.

    The index must hold the bench's gallery (same fingerprint), one view per face, by this model, in a
    factory whose vectors read back exactly (Flat); the pixel rows need the kept images, generated once
    per face in its kept value (the image itself under normalization "none").
    """
    where = index.path or "--index"
    index.check_model(generator)
    if index.info.gallery.get("fingerprint") != gallery.fingerprint() or index.info.additions:
        raise UserError(f"{where}: indexes gallery '{index.info.gallery.get('name')}'"
                        f"{' and added faces' if index.info.additions else ''}, not the test split of this "
                        "--data (build it with rbg index build --data DATA --split test)")
    if index.views != "kept":
        raise UserError(f"{where}: an index of all views; the bench reads an index of kept views (--views kept)")
    if not isinstance(faiss.downcast_index(index.index), faiss.IndexFlat):
        raise UserError(f"{where}: factory '{index.info.factory}' does not store its vectors exactly; the bench reads a "
                        "Flat index (rbg index build --factory Flat)")
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


def run_benchmark(generator, faces: FaceSet, out: str | Path, config: BenchConfig = BenchConfig(),
                  cache: Path | None = None, force: bool = False, index: GalleryIndex | None = None) -> dict:
    """Run every method on the same queries; write report.md, report.json and figures into `out` atomically.

    An existing `out` is replaced only if it is a report holding nothing else, or with `force`. With
    `index` (a Flat index of the test gallery built by this model) ours reads the gallery from it and
    takes its layer and normalization, instead of pose-normalizing the gallery again.
    """
    check_compatible(generator, faces)
    if index is not None:
        config = replace(config, layer=index.layer, normalize=index.config.normalize)
    classifier_config = PoseClassifierConfig(model=config.pose_classifier, seed=config.seed)  # refuses an unknown model
    if config.normalize not in NORMALIZE_MODES:
        raise UserError(f"unknown normalization '{config.normalize}' (valid: {', '.join(NORMALIZE_MODES)})")
    if config.normalize != "full" and config.pose_classifier not in SAVABLE_MODELS:
        raise UserError(f"normalization '{config.normalize}' keys its cache by the pose classifier's weights: use "
                        f"pose classifier {' or '.join(SAVABLE_MODELS)}, not '{config.pose_classifier}'")
    if config.split not in ("test", "val"):
        raise UserError(f"unknown split '{config.split}' for the gallery (valid: test, val)")
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
    also = criterion2_factors(config.criterion2_factor) or (second_criterion_factor(list(gallery.faces.columns), edit),)
    for factor in also:
        if factor == edit or factor not in faces.factors:
            raise UserError(f"--criterion2: '{factor}' is not a factor to keep besides {edit} (factors of "
                            f"{faces.info.name}: {', '.join(f for f in faces.factors if f != edit) or 'none'})")
    timings: dict[str, float] = {}
    queries = sample_queries(gallery, edit, config.queries, seed=config.seed)
    query_images = gallery.images[queries.positions]

    t = time.perf_counter()
    pose_filter = fit_pose_filter(train, gallery, queries, classifier_config, cache)
    timings[f"pose classifier ({config.pose_classifier}): train + predict"] = time.perf_counter() - t
    t = time.perf_counter()
    rankings = {(TWO_STEP, IMAGE): rank_by_pixels(gallery, queries, pose_filter, k)}
    timings["2-step image"] = time.perf_counter() - t
    rankings[(TWO_STEP_TRUE, IMAGE)] = rank_by_pixels(gallery, queries, true_pose_filter(gallery, queries), k)

    t = time.perf_counter()
    rankings[(TWO_STEP, SECOND_NET)] = rank_by_generator_features(
        generator, gallery, queries, pose_filter, k, layer=config.layer, batch_size=config.batch_size)
    timings["2-step 2nd network"] = time.perf_counter() - t

    deep_detected, descriptors = None, None
    if config.deep:
        t = time.perf_counter()
        deep_images = source_resolution_images(faces, gallery, config.deep_images) if config.deep_images else None
        descriptors, found = gallery_descriptors(gallery, cache=cache, images=deep_images)
        rankings[(TWO_STEP, DEEP)] = two_step_rank(descriptors[queries.positions], descriptors, pose_filter.gallery_pred,
                                                   queries.targets, k)
        deep_detected = float(np.mean(found))
        timings["2-step deep"] = time.perf_counter() - t

    t = time.perf_counter()
    if index is not None:
        normalized = indexed_gallery_features(generator, index, gallery, config.batch_size)
    else:  # the cheap normalizations take the kept pose from the 2-step's classifier (train identities only)
        normalized = gallery_features(generator, gallery, config.layer, config.batch_size, cache, config.normalize,
                                      pose_filter.classifier)
    timings["pose-normalize gallery"] = time.perf_counter() - t

    t = time.perf_counter()
    layer = config.layer or generator.default_feature_layer
    by_image = search_by_generation(generator, ours_index(generator, normalized.pixels, generator.image_layer, config),
                                    query_images, list(queries.targets), k, config.batch_size)
    by_features = search_by_generation(generator, ours_index(generator, normalized.features, layer, config),
                                       query_images, list(queries.targets), k, config.batch_size)
    rankings[(OURS, IMAGE)], rankings[(OURS, SECOND_NET)] = by_image.rows, by_features.rows
    query_pixels, query_features = by_image.vectors, by_features.vectors
    generated, distances = by_features.generated, by_features.distances
    timings["ours: generate + search"] = time.perf_counter() - t
    t = time.perf_counter()
    rankings[(OURS_POSE_AWARE, IMAGE)] = two_step_rank(query_pixels, normalized.pixels, normalized.kept, queries.targets, k)
    rankings[(OURS_POSE_AWARE, SECOND_NET)] = two_step_rank(query_features, normalized.features, normalized.kept,
                                                            queries.targets, k)
    rankings[(OURS_CLASSIFIER, SECOND_NET)] = two_step_rank(query_features, normalized.features, pose_filter.gallery_pred,
                                                            queries.targets, k)
    truth = true_pose_filter(gallery, queries).gallery_pred
    rankings[(OURS_TRUE, SECOND_NET)] = two_step_rank(query_features, normalized.features, truth, queries.targets, k)
    timings["ours, pose-aware: search"] = time.perf_counter() - t
    choice = None
    if config.all_values:
        t = time.perf_counter()
        generation = generation_distances(generator, gallery.images, queries, config)
        if "distilled all" in generation:
            rankings[(OURS_CLASSIFIER, DISTILLED)] = in_query_chunks(len(queries), lambda part: rank_among(
                generation["distilled target"][part], pose_filter.gallery_pred, queries.targets[part], k))
            rankings[(OURS_ALL_CLASSIFIER, DISTILLED)] = in_query_chunks(len(queries), lambda part: rank_among(
                generation["distilled all"][part], pose_filter.gallery_pred, queries.targets[part], k))
        for row, kept in ((OURS_ALL_VALUES, normalized.kept), (OURS_ALL_CLASSIFIER, pose_filter.gallery_pred)):
            rankings[(row, SECOND_NET)] = in_query_chunks(
                len(queries), lambda part: rank_among(generation["all"][part], kept, queries.targets[part], k))
        timings["ours, all poses: features + search"] = time.perf_counter() - t
        t = time.perf_counter()
        choice = val_choice(generator, faces, config, pose_filter.classifier, cache, also, deep=descriptors is not None)
        query_found = found[queries.positions] if descriptors is not None else None

        def ranked(views: str, weight: float):
            if descriptors is None:
                return lambda part: rank_among(generation[views][part], pose_filter.gallery_pred, queries.targets[part], k)
            return lambda part: fused_ranking(generation[views][part], descriptors[queries.positions[part]], descriptors,
                                              query_found[part], found, weight, pose_filter.gallery_pred,
                                              queries.targets[part], k)

        if descriptors is not None:
            rankings[(OURS_FUSED, SECOND_NET_DEEP)] = in_query_chunks(len(queries), ranked("all", choice["fusion"]["weight"]))
        chosen = choice["chosen"]
        rankings[(OURS_CHOSEN, CHOSEN)] = in_query_chunks(len(queries), ranked(chosen["views"], chosen["weight"]))
        timings["ours, chosen on val: val runs + search"] = time.perf_counter() - t

    results = score_all(rankings, queries, gallery, config.ks, also)
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
        "queries": len(queries),
        "criterion2_factor": criterion2_label(also),
        "criterion2_factors": list(also),
        "criterion2_values": int(len(gallery.faces.drop_duplicates(list(also)))),
        "pose_classifier_accuracy": pose_filter.accuracy,
        "pose_normalization_accuracy": kept_accuracy(normalized.kept, gallery.faces[edit].to_numpy()),
        "deep": ({"images": config.deep_images or "the gallery's own crops", "faces_detected": deep_detected}
                 if config.deep else None),
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
        report_figures.retrieval_grid(query_images[shown], generated[shown], queries, gallery, distances[shown, :5],
                                      rankings[(OURS, SECOND_NET)][shown, :5], tmp / "figure7_retrievals.png")
        (tmp / REPORT_FILE).write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
        (tmp / "report.md").write_text(report_markdown(record))
    return record


def in_query_chunks(count: int, rank, size: int = 2048) -> np.ndarray:
    """rank(slice) over the queries `size` at a time, concatenated: (q, g) distance rows stay bounded in memory."""
    return np.concatenate([rank(slice(start, start + size)) for start in range(0, count, size)])


def generation_distances(generator, images: np.ndarray, queries: QuerySet, config: BenchConfig) -> dict[str, np.ndarray]:
    """The (q, g) generation distances a setting may rank by: "all" and "target" views of the configured
    layer and, for a model with a descriptor head (and another layer configured), its "distilled" pair."""
    distances = dict(zip(VIEWS, view_distances(generator, images, queries.positions, queries.targets, config.layer,
                                               config.batch_size)))
    layer = config.layer or generator.default_feature_layer
    if DISTILLED_LAYER in getattr(generator, "feature_layers", ()) and layer != DISTILLED_LAYER:
        distances.update(zip(DISTILLED_VIEWS, view_distances(generator, images, queries.positions, queries.targets,
                                                             DISTILLED_LAYER, config.batch_size)))
    return distances


def val_choice(generator, faces: FaceSet, config: BenchConfig, classifier, cache: Path | None,
               also: tuple[str, ...], deep: bool) -> dict:
    """The settings of "ours, chosen on val" and of ours + Deep's weight, chosen on the val people.

    On val the bench's own protocol runs with the val people as queries (seeded) and a gallery of the val
    people and the train people as distractors (the train-fitted pose classifier, the all-poses and
    target-view distances, dlib's descriptors with `deep`): a handful of val people alone is too easy a
    gallery to tell settings apart (cmu_faces' 2 val people: R@1 100 % for almost every setting). Every setting
    (fusion.settings: views × weight, weight 0 alone without `deep`, config.fusion_weight alone if set)
    is scored by criterion-1 R@1, then R@5, then criterion-2 R@1; ties go to the earlier setting. The
    test people are never looked at. Without val people: every view, weight config.fusion_weight, else
    the default 0.5 with `deep`, else 0. Returns {"fusion": …, "chosen": …}, each with its choice and scores.
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
    predicted = classifier.predict(pool.images)
    generation = generation_distances(generator, pool.images, queries, config)
    if deep:
        deep_images = source_resolution_images(faces, pool, config.deep_images) if config.deep_images else None
        descriptors, found = gallery_descriptors(pool, cache=cache, images=deep_images)
    ks = (1, min(5, len(pool)))

    def scores(setting) -> tuple[float, ...]:
        distances = generation[setting.views]
        ranked = (fused_ranking(distances, descriptors[queries.positions], descriptors, found[queries.positions], found,
                                setting.weight, predicted, queries.targets, ks[-1])
                  if deep else rank_among(distances, predicted, queries.targets, ks[-1]))
        first = score(ranked, queries, pool, 1, ks, also=also)[0].recall
        second = score(ranked, queries, pool, 2, ks[:1], also=also)[0].recall
        return first[1], first[ks[-1]], second[1]

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


def score_all(rankings: dict, queries: QuerySet, gallery: FaceSet, ks, also: tuple[str, ...]) -> list[dict]:
    """recall@K of each method under both criteria, as a list of JSON-ready rows."""
    rows = []
    for (method, features), ranked in rankings.items():
        row = {"method": method, "features": features}
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


def source_resolution_images(faces: FaceSet, gallery: FaceSet, path: str) -> np.ndarray:
    """The gallery's faces taken from another FaceSet of the same faces (same rows) at another resolution."""
    return same_faces_at_resolution(faces, path, "--deep-images").take(gallery.rows).images  # positions = rows


def report_markdown(record: dict) -> str:
    """report.md: Tables 1–3 laid out as the paper's, our figures beside the paper's, plus what made them."""
    rows = {c: [{"method": r["method"], "features": r["features"],
                 "recall": {int(k): 100 * v for k, v in r[f"criterion{c}"]["recall"].items()}} for r in record["results"]]
            for c in (1, 2)}
    gen = record.get("generation", {})
    mse = {f"stage {s}": gen[f"stage{s}_mse"] for s in (1, 2) if f"stage{s}_mse" in gen}
    data, model = record["data"], record["model"]
    edit, also = model["edit"], record["criterion2_factor"]
    split = data.get("split", "test")  # reports from before --split were all on test
    with_paper = model["task"] == "pose"  # the paper's Tables 1–3 are Multi-PIE pose figures
    lines = [
        f"# Retrieval by generation: {data['name']} — {model['task']} task",
        "",
        f"{record['queries']:,} random queries (seed {record['config']['seed']}) over a gallery of {data['gallery']:,} {split} images "
        f"({data[f'{split}_identities']} identities); model `{model['path']}` (sha256 {model['checkpoint_sha256'][:12]}), "
        f"features `{model['feature_layer']}`, FAISS `{record['config']['factory']}`, gallery normalization "
        f"`{record['config'].get('normalize', 'full')}`" + (f" (read from the index `{record['gallery_index']}`)"
                                                            if record.get("gallery_index") else "") + ".",
        "",
        "## Table 1 — mean per-pixel generation error (MSE, 0–255 scale)",
        "",
        mse_table(mse, with_paper) if mse else "(not computed)",
        "",
        f"## Table 2 — criterion 1: identity and target {edit} correct",
        "",
        recall_table(rows[1], 1, with_paper=with_paper),
        "",
        f"## Table 3 — criterion 2: also the query's {also}",
        "",
        recall_table(rows[2], 2, with_paper=with_paper) if record.get("criterion2_values", 2) > 1 else
        f"(not informative here: the gallery has a single {also}, so criterion 2 equals criterion 1)",
        "",
        "## Side figures",
        "",
        f"- 2-step {edit} classifier (`{record['config'].get('pose_classifier', 'logreg')}`) accuracy on the test "
        f"gallery: {100 * record['pose_classifier_accuracy']:.1f} %"
        + (f" (paper: {POSE_CLASSIFIER_ACCURACY} % with VGG-Face fc6 features)" if with_paper else ""),
        f"- {edit} normalization's kept value = true value (a free {edit} estimate): "
        f"{100 * record['pose_normalization_accuracy']:.1f} %",
    ]
    if record.get("deep"):
        detected = record["deep"]["faces_detected"]
        lines.append(f"- Deep row: dlib on {record['deep']['images']}; dlib's detector found a face in "
                     f"{100 * detected:.1f} % of them (the others are taken whole)" if detected == detected else
                     f"- Deep row: dlib on {record['deep']['images']}")
    if record.get("fusion"):
        lines.append(f"- ours + Deep: descriptor weight {record['fusion']['weight']:g}, chosen on "
                     f"{record['fusion']['chosen_on']}")
    if record.get("chosen"):
        chosen = record["chosen"]
        lines.append(f"- ours, chosen on val: views {chosen['views']} (every pose's or the target pose's alone), "
                     f"Deep weight {chosen['weight']:g}, chosen on {chosen['chosen_on']}")
    if not with_paper:
        lines += ["", "The paper reports retrieval and Table 1 for the pose task on Multi-PIE only: no paper figures here."]
    lines += ["", "## How each row reads pixels", ""]
    lines += [f"- {r['method']} / {r['features']}: {PIXELS[(r['method'], r['features'])]}"
              for r in record["results"] if (r["method"], r["features"]) in PIXELS]
    if record.get("change_groups"):
        lines += ["", "## Figure 6 — recall@5 (criterion 1) per size of the change", ""]
        methods = list(record["change_groups"])
        groups = sorted({g for m in methods for g in record["change_groups"][m]}, key=float)
        lines.append("| method | " + " | ".join(f"{g}°" for g in groups) + " |")
        lines.append("|---|" + "---|" * len(groups))
        for m in methods:
            cells = [f"{100 * record['change_groups'][m][g]['recall']:.1f}%" if g in record["change_groups"][m] else "—" for g in groups]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if record.get("value_pairs"):
        lines += ["", f"## recall@1 (criterion 1) per {edit} change: source (rows) × target (columns)", ""]
        for method, pairs in record["value_pairs"].items():
            lines += [f"**{method}**", "", *change_matrix(pairs, model["vocabulary"], edit), ""]
    lines += ["", "## Timings (seconds)", ""] + [f"- {k}: {v:.1f}" for k, v in record["timings_seconds"].items()]
    lines += ["", "## Made by", "", f"`{record['provenance']['command']}`", "",
              "Pictures: `recall.png`, " + ("`figure6_change.png`, " if record.get("change_groups") else "")
              + "`figure7_retrievals.png`" + (", `generation/`." if record.get("generation") else "."), ""]
    return "\n".join(lines)


def change_matrix(pairs: dict, vocabulary: list[str], edit: str) -> list[str]:
    """Markdown rows of one method's recall@1 per "source → target" as a source × target matrix ("—": no query)."""
    lines = [f"| {edit}: source ↓ target → | " + " | ".join(vocabulary) + " |", "|---|" + "---|" * len(vocabulary)]
    for source in vocabulary:
        cells = []
        for target in vocabulary:
            cell = pairs.get(f"{source} → {target}")
            cells.append("·" if source == target else f"{100 * cell['recall']:.1f}" if cell else "—")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return lines


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))
