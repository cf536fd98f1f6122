"""Retrieval queries (§4.1.2): load query faces, generate them in the target value, search the gallery
index, and return one tidy table of what was found.

A query image is named either by an image file (PNG, JPG, …: a photo's face is detected and
eye-aligned at the model's size; a file already of that size, or any with align=False, is converted
to grayscale and resized with a warning) or by `FACESET:ROW`, row ROW (0-based, in faces.parquet order) of a
FaceSet folder; the latter also tells the query's identity and factors, so each retrieved face can be
marked correct or not (criterion 1: the query's identity in the target value).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from facedata.combined import edited_factors, join_values, with_factor
from facedata.errors import DataError, UserError
from facedata.faceset import FACTOR_COLUMNS, FaceSet
from facedata.imageio import ImageConversionWarning, check_face_size, decode_image, warn_conversion
from facedata.detect import DetectConfig
from facedata.photo import photo_face, wants_alignment
from index.faiss_index import GalleryIndex, gallery_codes, image_rows
from retrieval.search import canonical_targets, correct_hits, search_by_generation, search_nearest_crop

FACESET_ROW = re.compile(r"^(?P<faceset>.+):(?P<row>\d+)$")
CSV_COLUMNS = ("path", "target", "k")
QueryImageWarning = ImageConversionWarning  # a query image was converted to grayscale or resized


@dataclass(frozen=True)
class QueryImage:
    """One query face at the model's size and what is known about it."""

    label: str  # where it came from: a file path or FACESET:ROW
    image: np.ndarray  # (H, W) uint8
    truth: dict  # identity and factor values when taken from a FaceSet, else {}
    crops: np.ndarray | None = None  # (m, H, W) a photo framing's crops (image = the first): ranked by the nearest


@dataclass(frozen=True)
class QuerySpec:
    """One line of a batch query CSV: an image spec, the target value, k (None: the default), its line number."""

    image: str
    target: str
    k: int | None = None
    line: int | None = None  # 1-based line of the CSV file (the header is line 1)


@dataclass(frozen=True)
class QueryResult:
    """What a batch of queries found: the tidy table plus the pictures a grid needs."""

    table: pd.DataFrame  # one row per (query, rank); see result_table
    queries: np.ndarray  # (q, H, W) uint8 query images
    generated: np.ndarray  # (q, H, W) uint8 stage-2 images in the target value
    labels: tuple[str, ...]
    targets: tuple[str, ...]  # canonical target values (the generator's vocabulary spelling)
    truth: tuple[dict, ...]  # per query: known identity/factors, {} when unknown
    edit_factor: str
    k: int

    def __len__(self) -> int:
        return len(self.labels)


# -- query images -----------------------------------------------------------------------------------
def load_query_image(spec: str, size: tuple[int, int], base: Path | None = None, align: bool | None = None,
                     face: int = 1, detect: DetectConfig = DetectConfig(), framing=None) -> QueryImage:
    """An image file or FACESET:ROW as a (H, W) uint8 face of `size`; relative paths are taken from `base`.

    An image file is detected and eye-aligned (facedata.photo, face-th largest face) when `align` is
    True, or when it is None and the file is not already of the model's size; with a `framing`
    (retrieval.photo_framing.PhotoFraming) such a photo's face is cropped as the dataset framed its
    faces, seven ways. A FaceSet row is taken as stored (its import aligned it).
    """
    spec = str(spec).strip()
    if not spec:
        raise UserError("query image: empty path (give an image file or FACESET:ROW)")
    match = FACESET_ROW.match(spec)
    if match and _resolve(match["faceset"], base).is_dir():
        return _faceset_image(spec, _resolve(match["faceset"], base), int(match["row"]), size)
    return _file_image(spec, _resolve(spec, base), size, align, face, detect, framing)


def known_factors(spec: str, size: tuple[int, int]) -> dict:
    """The factors a query face is known to have: a FACESET:ROW's row, {} for an image file (nothing read)."""
    match = FACESET_ROW.match(str(spec).strip())
    if match and _resolve(match["faceset"], None).is_dir():
        return load_query_image(spec, size).truth
    return {}


def _resolve(path: str, base: Path | None) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or base is None else base / candidate


def _faceset_image(spec: str, root: Path, row: int, size: tuple[int, int]) -> QueryImage:
    faceset = FaceSet.open(root)
    if row >= len(faceset):
        raise DataError(f"{spec}: row {row} is out of range ({root} holds rows 0..{len(faceset) - 1})")
    if tuple(faceset.image_size) != tuple(size):
        h, w = faceset.image_size
        raise DataError(f"{spec}: {root} holds {h}×{w} images, the model expects {size[0]}×{size[1]}")
    record = faceset.faces.iloc[row]
    truth = {c: str(record[c]) for c in ("identity", *FACTOR_COLUMNS, "source") if c in record.index}
    return QueryImage(label=spec, image=faceset.image(row), truth=truth)


def _file_image(spec: str, path: Path, size: tuple[int, int], align: bool | None = None, face: int = 1,
                detect: DetectConfig = DetectConfig(), framing=None) -> QueryImage:
    image, mode = decode_image(path, spec)  # (h, w) uint8 upright, or a DataError naming the file
    if framing is not None and wants_alignment(align, image.shape, size):
        crops = framed_crops(framing, spec, image, mode, size, face)
        return QueryImage(label=spec, image=crops[0], truth={}, crops=crops)
    return QueryImage(label=spec, image=photo_face(spec, image, mode, size, align, face, detect=detect), truth={})


def framed_crops(framing, label: str, image: np.ndarray, mode: str, size: tuple[int, int], face: int = 1) -> np.ndarray:
    """A decoded photo's face as a photo framing's crops, (m, H, W) uint8; a framing fitted for another
    size than the model's is a UserError."""
    if tuple(framing.size) != tuple(size):
        raise UserError(f"the photo framing crops {framing.size[0]}×{framing.size[1]} faces, the model reads "
                        f"{size[0]}×{size[1]}: fit one on the model's data (rbg framing fit)")
    warn_conversion(mode, label)
    check_face_size(image, size, label)
    return framing.crops(image, label, face)


# -- batch query files ---------------------------------------------------------------------------------
def read_query_csv(path: str | Path) -> list[QuerySpec]:
    """The queries of a CSV with columns path, target and optionally k (one query per line).

    Read with the csv module rather than pandas so that every query keeps the file line it came from
    (blank lines and quoted line breaks included), and each error can name `FILE:LINE`.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise DataError(f"{path}: not a regular file (a folder, FIFO or device); give the query CSV")
        raise DataError(f"{path}: no such query CSV")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())})") from None
    columns = [c.strip().lower() for c in header or []]
    missing = [c for c in ("path", "target") if c not in columns]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if missing or unknown:
        problem = f"no column {', '.join(map(repr, missing))}" if missing else f"unknown column {', '.join(map(repr, unknown))}"
        raise DataError(f"{path}: {problem} (columns: path, target[, k]; a header line is required)")
    if not rows:
        raise DataError(f"{path}: no queries (one line per query under the header path,target[,k])")
    specs = []
    for line, row in rows:
        if len(row) > len(columns):
            raise DataError(f"{path}:{line}: {len(row)} fields, the header names {len(columns)} ({', '.join(columns)})")
        record = dict(zip(columns, [cell.strip() for cell in row] + [""] * (len(columns) - len(row))))
        image, target, k = record["path"], record["target"], record.get("k", "")
        if not image or not target:
            raise DataError(f"{path}:{line}: empty {'path' if not image else 'target'}")
        if k and (not k.isdigit() or int(k) < 1):
            raise DataError(f"{path}:{line}: k must be a positive integer, got '{k}'")
        specs.append(QuerySpec(image=image, target=target, k=int(k) if k else None, line=line))
    return specs


def load_query_specs(specs: Sequence[QuerySpec], size: tuple[int, int], base: Path | None = None,
                     csv_path: Path | None = None, align: bool | None = None, face: int = 1,
                     detect: DetectConfig = DetectConfig(), framing=None) -> list[QueryImage]:
    """The images of batch queries, relative paths taken from `base` (the CSV's folder); errors name the CSV line."""
    return [_at_line(csv_path, spec, lambda spec=spec: load_query_image(spec.image, size, base, align, face, detect,
                                                                        framing))
            for spec in specs]


def _at_line(csv_path: Path | None, spec: QuerySpec, work):
    """Run `work`; a user error it raises is re-raised naming the CSV file and the spec's line."""
    try:
        return work()
    except UserError as exc:
        if csv_path is None or spec.line is None:
            raise
        raise DataError(f"{csv_path}:{spec.line}: {exc}") from None


# -- searching --------------------------------------------------------------------------------------
def query_images(generator, index: GalleryIndex, queries: Sequence[QueryImage], targets, k: int,
                 batch_size: int = 256) -> QueryResult:
    """Generate each query face in its target value, search the index for the k nearest, tabulate.

    `targets` is one value for all queries or one per query. The features are those of the layer the
    index was built with (retrieval.search.search_by_generation); an index built by another model is refused.
    """
    if not queries:
        raise UserError("no query images given")
    images = np.stack([q.image for q in queries])  # (q, H, W) uint8
    targets = canonical_targets(generator, [targets] * len(queries) if isinstance(targets, str) else list(targets))
    if len(targets) != len(queries):
        raise UserError(f"{len(targets)} targets for {len(queries)} query images (give one for all, or one each)")
    index.search(np.zeros((0, index.info.dimension), np.float32), k)  # refuses a bad k or an empty gallery before generating
    if any(q.crops is not None for q in queries):  # a photo framing's crops: each gallery face at its nearest crop
        crops = [q.crops if q.crops is not None else q.image[None] for q in queries]
        found = search_nearest_crop(generator, index, crops, list(targets), int(k), batch_size)
    else:
        found = search_by_generation(generator, index, images, list(targets), int(k), batch_size)
    distances, rows, generated = found.distances, found.rows, found.generated
    labels = tuple(q.label for q in queries)
    truth = tuple(with_combined_value(q.truth, generator.edit_factor) for q in queries)
    table = result_table(index.faces, distances, rows, labels, targets, truth, generator.edit_factor)
    return QueryResult(table=table, queries=images, generated=generated, labels=labels, targets=targets,
                       truth=truth, edit_factor=generator.edit_factor, k=int(k))


def with_combined_value(truth: dict, edit: str) -> dict:
    """A query's known factors with the value of a combined edited factor added ("0/glasses"), where every part is known."""
    parts = edited_factors(edit)
    if len(parts) > 1 and edit not in truth and all(p in truth for p in parts):
        return {**truth, edit: join_values([truth[p] for p in parts])}
    return dict(truth)


def result_table(faces: pd.DataFrame, distances: np.ndarray, rows: np.ndarray, labels: Sequence[str],
                 targets: Sequence[str], truth: Sequence[dict], edit: str) -> pd.DataFrame:
    """One row per found item: query, label, target, query_identity, rank, distance, gallery_row,
    gallery, image_row, identity, the gallery's factor columns, kept_<edit>, source, correct.

    `rows` (q, k) index `faces` (-1: nothing found at that place, left out); `gallery` is the position
    in IndexInfo.galleries of the gallery whose images.npy row `image_row` is the face. `correct` holds
    criterion 1 (the query's identity in the target value) where the query's identity is known, else NA.
    """
    assert distances.shape == rows.shape == (len(labels), rows.shape[1]), (distances.shape, rows.shape, len(labels))
    query, rank = np.nonzero(rows >= 0)  # row-major: queries in order, ranks ascending
    found = rows[query, rank]
    gallery = faces.iloc[found].reset_index(drop=True)
    table = pd.DataFrame({
        "query": query.astype(np.int64),
        "label": np.asarray(labels, dtype=object)[query],
        "target": np.asarray(targets, dtype=object)[query],
        "query_identity": np.asarray([t.get("identity", "") for t in truth], dtype=object)[query],
        "rank": (rank + 1).astype(np.int64),
        "distance": distances[query, rank].astype(np.float32),
        "gallery_row": found.astype(np.int64),
        "gallery": gallery_codes(faces)[found],
        "image_row": image_rows(faces)[found],
    })
    for column in dict.fromkeys(("identity", *FACTOR_COLUMNS, edit, f"kept_{edit}", "source")):  # edit: also a combined one
        if column in gallery.columns:
            table[column] = gallery[column].astype(str).to_numpy()
    known = table["query_identity"] != ""
    correct = pd.array([pd.NA] * len(table), dtype="boolean")
    if "identity" in table.columns and edit in table.columns:
        hits = correct_hits(table["identity"], table[edit], table["query_identity"], table["target"])
        correct[known.to_numpy()] = hits[known.to_numpy()]
    table["correct"] = correct
    return table


def keep_ranks(result: QueryResult, ks: Sequence[int | None]) -> QueryResult:
    """The result with query i cut to its own top ks[i] (None: keep all k)."""
    assert len(ks) == len(result), (len(ks), len(result))
    limit = np.asarray([result.k if k is None else int(k) for k in ks], dtype=np.int64)
    table = result.table[result.table["rank"].to_numpy() <= limit[result.table["query"].to_numpy()]].reset_index(drop=True)
    return QueryResult(table, result.queries, result.generated, result.labels, result.targets, result.truth,
                       result.edit_factor, result.k)


def query_image(generator, index: GalleryIndex, spec: str, target: str, k: int, batch_size: int = 256,
                align: bool | None = None, face: int = 1, detect: DetectConfig = DetectConfig(),
                framing=None) -> QueryResult:
    """One query: the face of an image file or FACESET:ROW (load_query_image), generated in `target` and searched."""
    source = load_query_image(spec, tuple(generator.image_size), align=align, face=face, detect=detect, framing=framing)
    return query_images(generator, index, [source], target, k, batch_size)


def query_csv(generator, index: GalleryIndex, csv_path: str | Path, k: int, batch_size: int = 256,
              align: bool | None = None, face: int = 1, detect: DetectConfig = DetectConfig(),
              framing=None) -> QueryResult:
    """Run the queries of a CSV (path, target[, k]): each line's k, else `k`; paths relative to the CSV."""
    csv_path = Path(csv_path)
    specs = read_query_csv(csv_path)
    for spec in specs:
        _at_line(csv_path, spec, lambda spec=spec: canonical_targets(generator, [spec.target]))
        if spec.k is not None and spec.k > len(index):
            raise DataError(f"{csv_path}:{spec.line}: k={spec.k} is out of range: the gallery holds {len(index)} images")
    queries = load_query_specs(specs, tuple(generator.image_size), base=csv_path.parent, csv_path=csv_path,
                               align=align, face=face, detect=detect, framing=framing)
    ks = [s.k for s in specs]
    widest = max([k, *[s for s in ks if s is not None]])
    result = query_images(generator, index, queries, [s.target for s in specs], widest, batch_size)
    return keep_ranks(result, [s if s is not None else k for s in ks])


# -- the gallery's pixels -----------------------------------------------------------------------------
def open_galleries(index: GalleryIndex, path: str | Path | None = None) -> tuple[FaceSet, ...]:
    """Every FaceSet the index's faces come from, in IndexInfo.galleries order, each checked against its rows.

    `path` stands for the build's gallery (0) when it has moved; the galleries of `rbg index add` are
    opened where index.json records them.
    """
    return tuple(open_gallery(index, path if code == 0 else None, code) for code in range(len(index.info.galleries)))


def open_gallery(index: GalleryIndex, path: str | Path | None = None, code: int = 0) -> FaceSet:
    """The FaceSet of the index's gallery `code` (the path index.json records, or `path`), checked against it.

    The check compares the fingerprint (FaceSet.fingerprint: images and labels) of the FaceSet's rows at
    `image_row` with the one index.json records, so a moved or copied gallery is accepted and any other
    refused; the identities and edited factor are compared too, to say what differs (and are all an
    index of format 2, which records no such fingerprint, is checked by).
    """
    record = index.info.galleries[code]
    added = f"gallery {code} ('{record.get('name')}', added by rbg index add)"
    root = Path(path) if path is not None else index.locate(record.get("path"))
    if root is None:
        if code:
            raise UserError(f"{index.path or 'index'}: index.json records no folder for {added}: its pictures cannot be shown")
        raise UserError(f"{index.path or 'index'}: index.json records no gallery folder; give the gallery FaceSet (--gallery)")
    if path is None and not root.is_dir():
        if code:
            raise UserError(f"{root}: the folder of {added} is gone; put it back there to show its pictures")
        raise UserError(f"{root}: the gallery this index was built from is gone; give its new place (--gallery)")
    gallery = FaceSet.open(root)
    if index.info.edit_factor:  # several edited factors: the combined column the build added, in the fingerprint too
        gallery = with_factor(gallery, index.info.edit_factor)
    mine = gallery_codes(index.faces) == code
    faces, positions = index.faces[mine], image_rows(index.faces)[mine]
    option = "" if code else " (--gallery)"
    if len(positions) and positions.max() >= len(gallery):
        raise UserError(f"{root}: holds {len(gallery)} images, the index refers to row {positions.max()}: not its gallery{option}")
    differs = label_difference(faces, gallery.faces.iloc[positions], ("identity", index.info.edit_factor))
    if record.get("fingerprint") and gallery.take(positions).fingerprint() != record["fingerprint"]:
        built = "the index was built on" if code == 0 else "recorded when it was added to the index"
        raise UserError(f"{root}: its fingerprint differs from the one {built} ({differs or 'its images or labels differ'}): "
                        f"not the gallery of {index.path or 'the index'}{option}")
    if differs:
        raise UserError(f"{root}: {differs}: not the gallery it was built from{option}")
    return gallery


def label_difference(indexed: pd.DataFrame, rows: pd.DataFrame, columns: Sequence[str | None]) -> str | None:
    """Which of `columns` a gallery's rows hold other values of than the index's faces, in words; None if none."""
    for column in columns:
        if column and column in indexed.columns and column in rows.columns:
            if not np.array_equal(rows[column].astype(str).to_numpy(), indexed[column].astype(str).to_numpy()):
                return f"its {column} values differ from the index's rows"
    return None


def as_galleries(galleries: FaceSet | Sequence[FaceSet]) -> tuple[FaceSet, ...]:
    """One FaceSet (an index of one gallery) or the sequence open_galleries gives, as a tuple."""
    return (galleries,) if isinstance(galleries, FaceSet) else tuple(galleries)


def retrieved_images(result: QueryResult, galleries: FaceSet | Sequence[FaceSet]) -> np.ndarray:
    """The found faces' pixels, (q, k, H, W) uint8, zeros where nothing was found; each from its own gallery."""
    galleries = as_galleries(galleries)
    h, w = galleries[0].image_size
    pixels = np.zeros((len(result), result.k, h, w), np.uint8)
    table = result.table
    codes = table["gallery"].to_numpy(np.int64) if "gallery" in table.columns else np.zeros(len(table), np.int64)
    if len(codes) and codes.max() >= len(galleries):
        raise ValueError(f"results from gallery {codes.max()}, only {len(galleries)} given (use open_galleries)")
    for q, r, code, row in zip(table["query"], table["rank"], codes, table["image_row"]):
        pixels[q, r - 1] = galleries[int(code)].image(int(row))
    return pixels
