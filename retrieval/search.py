"""Search by generation (§4.1.2): the one path from query faces and target values to gallery hits.

`rbg query`, `rbg serve` and the benchmark's "ours" rows all call `search_by_generation`: the query is
generated in its target value, the refiner's features of that same pass are the query vector, and the
gallery index is searched with it. An index of every view (`--views all`) takes the query generated in
every value, from one pass too, and ranks among the faces whose normalization kept the target; the
target's own view is the generated image shown. `correct_hits` is the one definition of a correct hit
(criterion 1: the query's identity in the target value).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facedata.errors import UserError
from index.faiss_index import GalleryIndex
from index.features import l2_normalize


@dataclass(frozen=True)
class Found:
    """What a batch of queries found, and the generations that found it."""

    distances: np.ndarray  # (q, k) float32 squared L2, ascending
    rows: np.ndarray  # (q, k) int64 rows of index.faces, -1 where an approximate index found fewer than k
    generated: np.ndarray  # (q, H, W) uint8 stage-2 faces in their target values
    vectors: np.ndarray  # (q, d) float32 the query vectors searched (all views: (q, V·d))
    generate_ms: float  # the whole batch's generation
    search_ms: float


def canonical_targets(generator, targets: Sequence) -> tuple[str, ...]:
    """Target values in the generator's vocabulary spelling ("30" → "+30"); unknown ones are a UserError listing the valid."""
    return tuple(generator.vocabulary[int(code)] for code in generator.target_codes(list(targets), len(targets)))


def edit_target(generator, target: str | None = None, options: bool = True, known: dict | None = None,
                **named: str | None) -> str:
    """The one target value given, as `target` or under the edited factor's name (pose="+30"), checked.

    `named` holds every factor a caller offers (pose, accessory, occluded); one for another factor than
    the model's, none, or two values are a UserError naming what to give: as command-line options
    (--pose) when `options`, else as the HTTP form's fields. A model of several factors takes one value
    per factor (pose="+30", accessory="sunglasses"), or the combined `target` ("+30/sunglasses"); a
    factor left out keeps the query face's value in `known` (a FaceSet row's factors) where there is one.
    """
    factor = generator.edit_factor
    name = (lambda f: f"--{f}") if options else (lambda f: f)
    valid = ", ".join(generator.vocabulary)
    named = {key: value for key, value in named.items() if value is not None}
    factors = tuple(getattr(generator, "factors", (factor,)))
    edits = " and ".join(factors) + ("" if len(factors) > 1 else " only")
    other = sorted(set(named) - set(factors))
    if other:
        wanted = " ".join(f"{name(f)} VALUE" for f in factors)
        raise UserError(f"the model edits {edits}: {name(other[0])} does not apply; give {wanted}"
                        + (f" (valid: {valid})" if len(factors) == 1 else ""))
    if len(factors) > 1:
        if target is not None and named:
            raise UserError(f"give the target once: as target, or as {', '.join(name(f) for f in factors)}")
        if target is not None:
            return canonical_targets(generator, [target])[0]
        if not named:
            raise UserError(f"the model edits {edits}: give {' '.join(f'{name(f)} VALUE' for f in factors)}")
        return generator.combine_targets(named, known, name)
    given = [value for value in (target, named.get(factor)) if value is not None]
    if len(given) != 1:
        ask = f"give {name(factor)} VALUE" if options else f"give the target once, as target or {factor}"
        raise UserError(f"the model edits {factor} only: {ask} (valid: {valid})")
    return canonical_targets(generator, given)[0]


def open_index(index_path: str | Path, model: str | Path | None = None, device: str = "auto", **search_overrides):
    """The generator and the index it built, (generator, GalleryIndex): `model`, else the checkpoint
    index.json records (found beside the index when both moved together). `search_overrides` go to
    GalleryIndex.load (e.g. gpu=False)."""
    from generator.inference import Generator

    if model is not None:
        generator = Generator.load(model, device)
        return generator, GalleryIndex.load(index_path, generator=generator, **search_overrides)
    index = GalleryIndex.load(index_path, **search_overrides)
    recorded = index.locate(index.info.provenance.get("model"))
    if recorded is None:
        sha = str(index.info.checkpoint_hash)[:12]
        raise UserError(f"{index_path}: index.json records no model path; give --model (the checkpoint with sha256 {sha}…)")
    generator = Generator.load(recorded, device)
    index.check_model(generator)
    return generator, index


def use_int8_queries(generator, index: GalleryIndex, galleries) -> int:
    """Queries of an all-views index generated int8 (Generator.use_int8), calibrated on a seeded sample of
    the index's gallery faces (FaceSets); the number of calibration faces."""
    from generator.int8 import calibration_faces

    if index.views != "all":
        raise UserError("--int8 speeds up the queries of an all-views index (rbg index build --views all); "
                        f"this one is built with --views {index.views}")
    sample = calibration_faces(np.concatenate([calibration_faces(g.images) for g in galleries]))
    generator.use_int8(sample, index.layer)
    return len(sample)


def search_by_generation(generator, index: GalleryIndex, images: np.ndarray, targets, k: int,
                         batch_size: int = 256) -> Found:
    """Generate each query face in its target value and search the index with that generation's features.

    `images` (q, H, W) uint8 at the model's size; `targets` one value for all or one per query. The
    features are those of the layer the index was built with ("stage2.pixels": the generated image
    itself); an index built by another model is refused. Equal distances rank the lower row first.
    """
    index.check_model(generator)
    images = np.asarray(images)
    targets = canonical_targets(generator, [targets] * len(images) if isinstance(targets, str) else list(targets))
    start = time.perf_counter()
    if index.views == "all":
        stage2, vectors = every_value(generator, images, targets, index.layer, batch_size)
    else:
        stage2, vectors = generator.generate_with_features(images, list(targets), layer=index.layer,
                                                           batch_size=batch_size)
    middle = time.perf_counter()
    distances, rows = (index.search_among(vectors, k, targets) if index.views == "all"
                       else index.search(np.asarray(vectors, np.float32), k))
    end = time.perf_counter()
    generated = np.clip(np.rint(np.asarray(stage2)), 0, 255).astype(np.uint8)
    return Found(distances, rows, generated, np.asarray(vectors, np.float32), 1000 * (middle - start), 1000 * (end - middle))


def search_nearest_crop(generator, index: GalleryIndex, crops: Sequence[np.ndarray], targets, k: int,
                        batch_size: int = 256) -> Found:
    """search_by_generation for queries cropped several ways (retrieval.photo_framing: a photo's face and it
    moved a little): each query's crops (m, H, W) are all searched, and a gallery face ranks by its nearest
    crop. Exact for an exact index: a face among the k nearest to its nearest crop is among that crop's k.
    The generation shown is the first crop's."""
    counts = [len(c) for c in crops]
    targets = [targets] * len(crops) if isinstance(targets, str) else list(targets)
    owner = np.repeat(np.arange(len(crops)), counts)
    found = search_by_generation(generator, index, np.concatenate(list(crops)), [targets[o] for o in owner], k, batch_size)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    distances = np.full((len(crops), k), np.inf, np.float32)
    rows = np.full((len(crops), k), -1, np.int64)
    for i in range(len(crops)):
        d, r = found.distances[owner == i].ravel(), found.rows[owner == i].ravel()
        d, r = d[r >= 0], r[r >= 0]
        order = np.lexsort((r, d))  # nearest first, equal distances by row
        _, keep = np.unique(r[order], return_index=True)  # each face once, at its nearest crop
        best = order[np.sort(keep)][:k]
        distances[i, : len(best)], rows[i, : len(best)] = d[best], r[best]
    return Found(distances, rows, found.generated[first], found.vectors[first], found.generate_ms, found.search_ms)


def every_value(generator, images: np.ndarray, targets: Sequence[str], layer: str | None,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Each query generated in every value in one pass: the stage-2 image in its target, (q, H, W), and the
    V views' L2-normalized features side by side over √V, (q, V·d), as index.features.all_value_features."""
    features, stage2 = generator.every_value(images, layer, pictures=list(targets), batch_size=batch_size)
    n, v = features.shape[:2]
    views = l2_normalize(np.asarray(features, np.float32).reshape(n * v, -1)).reshape(n, -1)
    return np.asarray(stage2), np.ascontiguousarray(views / np.float32(np.sqrt(v)))


def correct_hits(identities: np.ndarray, values: np.ndarray, query_identity: np.ndarray,
                 targets: np.ndarray) -> np.ndarray:
    """Criterion 1, element-wise: the found face is the query's person in the target value (bool array)."""
    return (np.asarray(identities).astype(str) == np.asarray(query_identity).astype(str)) & (
        np.asarray(values).astype(str) == np.asarray(targets).astype(str))
