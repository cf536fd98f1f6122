"""The gallery's FAISS index: build it from pose-normalized features, save it as a folder, load and search it.

An index folder holds `index.faiss` (the CPU index), `faces.parquet` (one row per indexed gallery image,
in index order, with its position `image_row` in the gallery's images.npy and the kept value
`kept_<factor>`), and `index.json` (IndexInfo: model hash, feature layer, dimension, factory, count,
build provenance); a "VIEWPCA{p}," factory adds `view_pca.safetensors`, the per-view PCA the vectors
go through before FAISS (index.view_pca). Vectors are L2-normalized float32 and compared by squared L2 distance (§4.1.2).
An index grown by `rbg index add` (index.append) holds faces of several galleries: index.json lists
them (IndexInfo.galleries: the build's, then one per addition) and faces.parquet's `gallery` column
says which one each row's `image_row` refers to; an index without that column is all gallery 0.
The gallery and model folders index.json records are relative to the index folder (GalleryIndex.locate),
so a query works from any working directory and after moving the folders together.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from facedata.atomic import atomic_dir
from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.outputs import ArtifactKind, check_output_folder, exclusive_lock
from facedata.provenance import provenance
from generator.shipped import shipped_model, shipped_name_of
from index import sharded
from index.faiss_factory import IndexConfig, set_search_parameters
from index.features import compute_feature_chunks, l2_normalize
from index.kept_filter import KeptFilter, supports_selectors, widening_search
from index.ondisk_lists import LISTS_FILE, ondisk_lists, read_index_file, write_index_file
from index.factor_classifiers import load_classifier
from index.pose_classifier import CLASSIFIER_FILE, PoseClassifier
from index.pose_normalize import check_normalize, kept_accuracy
from index.view_pca import PROJECTION_FILE, ViewPCA, fill_projected_index, plan_build, split_factory

INDEX_FILE = "index.faiss"
FACES_FILE = "faces.parquet"
INFO_FILE = "index.json"
FORMAT_VERSION = 3  # 2: the full model hash; gallery and model paths relative to the index folder
                    # 3: a gallery's fingerprint is of its images and labels (FaceSet.fingerprint), not its folder
READ_VERSIONS = (2, 3)  # a format-2 index loads, its galleries' folder-bound fingerprints dropped
METRIC = "squared L2 between L2-normalized float32 vectors"
KIND = ArtifactKind("index", INFO_FILE, (INDEX_FILE, FACES_FILE, INFO_FILE, LISTS_FILE, CLASSIFIER_FILE, PROJECTION_FILE))  # what save writes
GALLERY_COLUMN = "gallery"  # faces.parquet: the position in IndexInfo.galleries of each row's gallery


@dataclass(frozen=True)
class IndexInfo:
    """What index.json records: what made the index, from what, and how to search it."""

    dimension: int
    factory: str
    count: int
    checkpoint_hash: str | None = None
    task: str | None = None
    edit_factor: str | None = None
    vocabulary: tuple[str, ...] = ()
    layer: str | None = None
    kept_accuracy: float | None = None  # share of gallery images whose kept value is their true one
    train_count: int = 0
    pose_classifier: dict = field(default_factory=dict)  # what fitted the index's pose classifier, if it has one
    gallery: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    additions: tuple[dict, ...] = ()  # one per `rbg index add`: gallery, count, kept_accuracy, provenance

    @property
    def galleries(self) -> tuple[dict, ...]:
        """Every gallery the rows come from, by `gallery` code: the build's (0), then each addition's."""
        return (self.gallery, *(dict(addition["gallery"]) for addition in self.additions))

    def to_json(self) -> dict:
        record = asdict(self)
        record["vocabulary"] = list(self.vocabulary)
        record["metric"] = METRIC
        record["format_version"] = FORMAT_VERSION
        return record

    @classmethod
    def from_json(cls, record: dict, source: Path) -> "IndexInfo":
        try:
            version = int(record.get("format_version", 0))
            if version not in READ_VERSIONS:
                raise UserError(f"{source}: index format {record.get('format_version')!r}, this version reads "
                                f"{', '.join(map(str, READ_VERSIONS))}; rebuild it with rbg index build")
            accuracy = record.get("kept_accuracy")
            return cls(
                dimension=int(record["dimension"]),
                factory=str(record["factory"]),
                count=int(record["count"]),
                checkpoint_hash=record.get("checkpoint_hash"),
                task=record.get("task"),
                edit_factor=record.get("edit_factor"),
                vocabulary=tuple(str(v) for v in record.get("vocabulary", ())),
                layer=record.get("layer"),
                kept_accuracy=None if accuracy is None else float(accuracy),
                train_count=int(record.get("train_count", 0)),
                pose_classifier=dict(record.get("pose_classifier") or {}),
                gallery=read_gallery_record(record.get("gallery", {}), version),
                config=dict(record.get("config", {})),
                provenance=dict(record.get("provenance", {})),
                additions=tuple(dict(addition, gallery=read_gallery_record(addition["gallery"], version)) for addition in record.get("additions", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: not a valid index.json ({exc!r} missing or malformed)") from None


def read_gallery_record(record: dict, version: int) -> dict:
    """A gallery entry of index.json as this version reads it: a format-2 fingerprint, of the folder, is dropped."""
    gallery = dict(record)
    if version < 3:
        gallery.pop("fingerprint", None)
    return gallery


def order_ties(distances: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's results ordered by (distance, gallery row), missing items (-1, distance inf) last.

    The deterministic tie rule: equal distances rank the lower gallery row first. FAISS's CPU Flat
    search also keeps the lower rows when a tie straddles the k-th place.
    """
    assert distances.shape == rows.shape and rows.ndim == 2, (distances.shape, rows.shape)
    missing = rows < 0
    dist = np.where(missing, np.inf, distances).astype(np.float32)
    key = np.where(missing, np.iinfo(np.int64).max, rows)
    order = np.lexsort((key, dist), axis=1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(rows.astype(np.int64), order, axis=1)


def image_rows(faces: pd.DataFrame) -> np.ndarray:
    """Each indexed face's row in its gallery's images.npy, (n,) int64 (a table without `image_row`: its order)."""
    return (faces["image_row"] if "image_row" in faces.columns else pd.Series(np.arange(len(faces)))).to_numpy(np.int64)


def gallery_codes(faces: pd.DataFrame) -> np.ndarray:
    """Which of IndexInfo.galleries each indexed face comes from, (n,) int64; 0 where there is no `gallery` code."""
    column = faces.get(GALLERY_COLUMN)
    if column is None or not pd.api.types.is_integer_dtype(column):
        return np.zeros(len(faces), np.int64)
    return column.to_numpy(np.int64)


# -- the saved gallery index ----------------------------------------------------------------------
class GalleryIndex:
    """A searchable gallery: the FAISS index, its gallery rows and what built it."""

    def __init__(self, index: faiss.Index, faces: pd.DataFrame, info: IndexInfo, config: IndexConfig = IndexConfig(),
                 path: Path | None = None, pose_classifier: PoseClassifier | None = None, projection: ViewPCA | None = None):
        width = info.dimension if projection is None else projection.d_out
        assert index.ntotal == info.count == len(faces) and index.d == width, (index.ntotal, info.count, len(faces), index.d)
        assert projection is None or projection.d_in == info.dimension, (projection.d_in, info.dimension)
        self.index = index  # the CPU index: the one saved
        self.projection = projection  # a per-view PCA the vectors go through before `index` (index.view_pca)
        self.faces = faces
        self.info = info
        self.config = config
        self.path = path
        self.pose_classifier = pose_classifier  # the kept values' classifier of a cheap normalization
        set_search_parameters(index, config)
        self._searcher: faiss.Index | None = None
        self._kept_filter: KeptFilter | bool | None = None  # made at the first search_among
        self._kept: np.ndarray | None = None

    def __len__(self) -> int:
        return self.info.count

    def __repr__(self) -> str:
        return f"GalleryIndex({self.info.factory!r}, {self.info.count} × {self.info.dimension}-d, layer={self.info.layer!r})"

    @property
    def layer(self) -> str | None:
        return self.info.layer

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, faces: pd.DataFrame | None = None, config: IndexConfig = IndexConfig(), **info) -> "GalleryIndex":
        """An in-memory index over given vectors (n, d) (L2-normalized here), e.g. to compare factories."""
        vectors = np.asarray(vectors, dtype=np.float32)
        assert vectors.ndim == 2, vectors.shape
        if len(vectors) == 0:
            raise UserError("cannot index an empty gallery")
        faces = pd.DataFrame({"row": np.arange(len(vectors))}) if faces is None else faces.reset_index(drop=True)
        assert len(faces) == len(vectors), (len(faces), len(vectors))
        normalized = l2_normalize(vectors)
        step = max(1, config.batch_size)
        projection, index, train_count = fill_projected_index(
            config, normalized.shape[1], len(normalized), max(1, len(info.get("vocabulary", ()))),
            lambda positions: normalized[positions],
            lambda: (normalized[i : i + step] for i in range(0, len(normalized), step)),
        )
        meta = IndexInfo(dimension=normalized.shape[1], factory=config.factory, count=len(normalized),
                         train_count=train_count, config=asdict(config), **info)
        return cls(index, faces, meta, config, projection=projection)

    def encode(self, vectors: np.ndarray, normalized: bool = False) -> np.ndarray:
        """Vectors (n, dimension) as the FAISS index holds them: L2-normalized (unless they are already), then
        through the per-view PCA if any."""
        normalized = np.ascontiguousarray(vectors, dtype=np.float32) if normalized else l2_normalize(vectors)
        return normalized if self.projection is None else self.projection.apply(normalized)

    def save(self, out: str | Path, force: bool = False, keep: Path | None = None) -> Path:
        """Write the index folder atomically: a crash leaves the previous folder (or none), never half of one.

        An existing folder at `out` is replaced only if it is an index holding nothing else, or with `force`.
        `keep`: a folder (the index's previous version) whose other files are carried into the new one.
        On-disk inverted lists (a sharded IVF build, index.sharded) go into the folder as LISTS_FILE,
        and the index then searches that copy.
        """
        out = Path(out)
        with atomic_dir(out, kind=KIND, force=force or keep is not None) as tmp:  # keep: its other files are carried
            for entry in sorted(keep.iterdir()) if keep is not None else ():
                if entry.name not in (INDEX_FILE, FACES_FILE, INFO_FILE, LISTS_FILE, PROJECTION_FILE):
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
            write_index_file(self.index, tmp / INDEX_FILE)
            self.faces.to_parquet(tmp / FACES_FILE, index=False)
            if self.pose_classifier is not None:
                self.pose_classifier.save(tmp / CLASSIFIER_FILE)
            if self.projection is not None:
                self.projection.save(tmp / PROJECTION_FILE)
            (tmp / INFO_FILE).write_text(json.dumps(self.info.to_json(), indent=2) + "\n")
        if ondisk_lists(self.index) is not None:
            self.index, self._searcher = read_index_file(out / INDEX_FILE), None
            set_search_parameters(self.index, self.config)
        self.path = out
        return out

    @classmethod
    def load(cls, path: str | Path, generator=None, layer: str | None = None, **search_overrides) -> "GalleryIndex":
        """Open an index folder; with a generator (or layer) given, refuse an index built with another one."""
        root = Path(path)
        if not root.is_dir():
            raise UserError(f"{root}: no such index folder")
        for name in (INFO_FILE, INDEX_FILE, FACES_FILE):
            if not (root / name).is_file():
                raise UserError(f"{root / name}: missing (an index folder holds {INDEX_FILE}, {FACES_FILE}, {INFO_FILE})")
        try:
            info = IndexInfo.from_json(json.loads((root / INFO_FILE).read_text()), root / INFO_FILE)
        except (OSError, ValueError) as exc:
            raise UserError(f"{root / INFO_FILE}: unreadable JSON ({exc})") from None
        if generator is not None and info.checkpoint_hash != generator.checkpoint_hash:
            raise UserError(
                f"{root}: built with model {str(info.checkpoint_hash)[:12]}…, not this model "
                f"({generator.checkpoint_hash[:12]}…); rebuild the index with this model"
            )
        if layer is not None and layer != info.layer:
            raise UserError(f"{root}: built with features of layer '{info.layer}', not '{layer}'; rebuild it with --layer {layer}")
        try:
            index = read_index_file(root / INDEX_FILE)
        except (RuntimeError, MemoryError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if LISTS_FILE in first and not (root / LISTS_FILE).is_file():
                raise UserError(f"{root / LISTS_FILE}: missing (this index keeps its inverted lists there, beside {INDEX_FILE})") from None
            raise UserError(f"{root / INDEX_FILE}: unreadable FAISS index, truncated or corrupt ({first[:160]})") from None
        projection = ViewPCA.load(root / PROJECTION_FILE) if split_factory(info.factory)[0] is not None else None
        if projection is not None and (projection.d_in != info.dimension or projection.d_out != index.d):
            raise UserError(f"{root / PROJECTION_FILE}: projects {projection.d_in}-d vectors to {projection.d_out}, the index "
                            f"takes {info.dimension}-d queries and holds {index.d}-d vectors (from another build)")
        width = info.dimension if projection is None else projection.d_out
        if index.ntotal != info.count or index.d != width:
            raise UserError(
                f"{root / INDEX_FILE}: holds {index.ntotal} × {index.d}-d vectors, "
                f"{INFO_FILE} says {info.count} × {width}-d (truncated or from another build)"
            )
        try:
            faces = pd.read_parquet(root / FACES_FILE)
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise UserError(f"{root / FACES_FILE}: unreadable parquet ({exc})") from None
        if len(faces) != info.count:
            raise UserError(f"{root / FACES_FILE}: {len(faces)} rows, {INFO_FILE} says {info.count}")
        codes = gallery_codes(faces)
        if info.additions and (GALLERY_COLUMN not in faces.columns or not np.all((codes >= 0) & (codes < len(info.galleries)))):
            raise UserError(f"{root / FACES_FILE}: its '{GALLERY_COLUMN}' column does not index the {len(info.galleries)} "
                            f"galleries {INFO_FILE} lists (from another version of the index)")
        known = {f for f in IndexConfig.__dataclass_fields__}
        config = replace(IndexConfig(**{k: v for k, v in info.config.items() if k in known}), **search_overrides)
        classifier = None
        if config.normalize != "full":
            if not (root / CLASSIFIER_FILE).is_file():
                raise UserError(f"{root / CLASSIFIER_FILE}: missing (the index's '{config.normalize}' normalization needs it)")
            classifier = load_classifier(root / CLASSIFIER_FILE)
        return cls(index, faces, info, config, path=root, pose_classifier=classifier, projection=projection)

    def locate(self, recorded: str | None) -> Path | None:
        """A folder index.json records (gallery, model), resolved against the index folder when relative."""
        if not recorded:
            return None
        path = Path(recorded)
        local = path if path.is_absolute() or self.path is None else self.path / path
        return local if local.exists() else shipped_model(recorded) or local  # a shipped model is recorded by name

    def check_model(self, generator, layer: str | None = None) -> None:
        """Refuse a generator (or layer) other than the one that built this index."""
        where = self.path or "index"
        if self.info.checkpoint_hash != generator.checkpoint_hash:
            raise UserError(f"{where}: built with model {str(self.info.checkpoint_hash)[:12]}…, not this model ({generator.checkpoint_hash[:12]}…)")
        if layer is not None and layer != self.info.layer:
            raise UserError(f"{where}: built with features of layer '{self.info.layer}', not '{layer}'")

    def _search_index(self) -> faiss.Index:
        """The index searches run on: all GPUs when faiss-gpu has any, else the CPU index."""
        if self._searcher is None:
            self._searcher = self.index
            if self.config.gpu and hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0:
                try:
                    self._searcher = faiss.index_cpu_to_all_gpus(self.index)
                except (RuntimeError, AttributeError):  # e.g. HNSW has no GPU version: stay on the CPU
                    self._searcher = self.index
        return self._searcher

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest gallery rows of each query vector: distances (q, k) float32, rows (q, k) int64.

        Queries are L2-normalized here like the gallery. Rows index `faces`; an approximate index
        (IVF with few probes) may find fewer than k items: those places hold row -1, distance inf.
        Ties are ordered by gallery row (order_ties).
        """
        if self.info.count == 0:
            raise UserError("the gallery is empty: nothing to search")
        if not 1 <= int(k) <= self.info.count:
            raise UserError(f"k={k} is out of range: the gallery holds {self.info.count} images (use 1 ≤ k ≤ {self.info.count})")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.info.dimension:
            raise UserError(f"query vectors of shape {vectors.shape} do not match the index's {self.info.dimension}-d features")
        distances, rows = self._search_index().search(self.encode(vectors), int(k))
        return order_ties(distances, rows)


    @property
    def views(self) -> str:
        """"kept" (each face in its kept value) or "all" (every value side by side, index.features)."""
        return str(self.info.config.get("views", "kept"))

    def search_among(self, vectors: np.ndarray, k: int, targets) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest gallery rows whose kept value is each query's target: distances, rows (q, k).

        For an index of all views, whose vectors carry no target. The filter runs inside the index's
        scan (index.kept_filter: FAISS ID selectors, on the CPU index), so its cost does not grow as the
        target gets rarer; an index type without selectors searches wider until k rows of the target turn up.
        """
        targets = np.asarray(targets).astype(str)
        vectors = np.asarray(vectors, dtype=np.float32)
        assert targets.shape == (len(vectors),), (targets.shape, vectors.shape)
        self.search(vectors[:0], k)  # refuses a bad k or an empty gallery
        if self._kept_filter is None:  # once: reading 10^6 kept values costs more than a search
            self._kept = self.faces[f"kept_{self.info.edit_factor}"].to_numpy().astype(str)
            self._kept_filter = KeptFilter(self._kept) if supports_selectors(self.index) else False
        kept = self._kept
        if self._kept_filter:
            distances, rows = self._kept_filter.search(self.index, self.encode(vectors), int(k), targets,
                                                       self.config.nprobe, self.config.ef_search)
        else:
            distances, rows = widening_search(self.search, vectors, int(k), kept, targets, self.info.count,
                                              4 * int(k) * max(1, len(self.info.vocabulary)))
        return order_ties(distances, rows)


# -- building from a generator and a gallery --------------------------------------------------------
def relative_to_folder(path: str | Path | None, folder: Path) -> str | None:
    """`path` as index.json records it: relative to `folder` (the index), None when there is none."""
    if path is None or str(path) == "":
        return None
    return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))


def model_record(path: str | Path | None, folder: Path) -> str | None:
    """The model as index.json records it: a shipped model's name, else its folder relative to the index's."""
    return shipped_name_of(path) or relative_to_folder(path, folder)


def gallery_record(gallery: FaceSet, folder: Path) -> dict:
    """How index.json names a gallery: its name, folder relative to the index folder, and fingerprint."""
    return {"name": gallery.info.name, "path": relative_to_folder(gallery.root, folder), "fingerprint": gallery.fingerprint()}


def indexed_faces(gallery: FaceSet, kept_values: np.ndarray, edit: str) -> pd.DataFrame:
    """faces.parquet's rows for a gallery: its faces table, each row's `image_row` and its kept value."""
    faces = gallery.faces.reset_index(drop=True)
    faces.insert(0, "image_row", gallery.rows)
    faces[f"kept_{edit}"] = kept_values
    return faces


def build_cache(out: Path) -> Path:
    """The feature cache of a build of index folder `out`, `.<out>.build` beside it, which a rerun resumes from."""
    return out.with_name(f".{out.name}.build")


def build_lock(out: Path) -> Path:
    """The lock a writer of index folder `out` holds (a build, or an addition): `.<out>.build.lock` beside it."""
    return out.with_name(f".{out.name}.build.lock")


def build_index(generator, gallery: FaceSet, out: str | Path, config: IndexConfig | None = None,
                progress: bool = True, force: bool = False, classifier: PoseClassifier | None = None,
                classifier_info: dict | None = None, distributor=None, pose_images: str | None = None,
                **overrides) -> GalleryIndex:
    """Pose-normalize the gallery, index its features and save the index folder at `out` (§4.1.2).

    Streaming and restartable: features are computed chunk by chunk into the cache folder
    `.<out>.build` beside `out` (index.features), which a rerun of the same build resumes from; the
    index is then trained on a bounded sample of the cache, filled chunk by chunk, written to a
    temporary folder and renamed onto `out`, and the cache is removed. An interrupted build leaves
    `out` as it was (no index or the previous one), never a half index that loads. While it runs the
    build holds a lock (`.<out>.build.lock`): a second build into the same `out` is refused, not mixed in.
    An existing `out` is replaced only if it is an index holding nothing else, or with `force`; never the gallery's own folder.
    With config.normalize "classifier" or "none", `classifier` gives each face's kept value (saved in the
    index folder; `classifier_info` says what it was fitted on); it reads the faces of `pose_images` (a
    FaceSet folder of the gallery's FaceSet's faces at source resolution, row for row) where given.
    With a `distributor` (index.distribute) the chunks and an IVF index's lists are computed in shards
    on its workers (index.sharded); the index equals the one-process build's.
    """
    config = replace(config or IndexConfig(), **overrides)
    check_normalize(config.normalize, classifier)
    classifier = classifier if config.normalize != "full" else None
    out = Path(out)
    config, layer, vocabulary = check_build(generator, gallery, out, config, force)
    cache = build_cache(out)
    with exclusive_lock(build_lock(out), what=str(out)):
        return _build_locked(generator, gallery, out, cache, config, vocabulary, layer, progress, force,
                             classifier, classifier_info or {}, distributor, pose_images if classifier is not None else None)


def check_build(generator, gallery: FaceSet, out: Path, config: IndexConfig,
                force: bool = False) -> tuple[IndexConfig, str, tuple[str, ...]]:
    """Every refusal a build can make before its long work (output folder, gallery, batch size, layer, views,
    factory and its training needs): the config with its layer, the layer and the vocabulary."""
    check_output_folder(out, KIND, force=force, inputs=[gallery.root], option=None)
    if len(gallery) == 0:
        raise UserError(f"{gallery.info.name}: the gallery is empty: nothing to index")
    if tuple(gallery.image_size) != tuple(generator.image_size):
        raise UserError(f"{gallery.info.name}: gallery images are {gallery.image_size}, the model expects {tuple(generator.image_size)}")
    if config.batch_size < 1:
        raise UserError(f"batch size must be ≥ 1, got {config.batch_size}")
    layer = config.layer or generator.default_feature_layer
    if layer not in generator.feature_layers:
        raise UserError(f"unknown feature layer '{layer}' (valid: {', '.join(generator.feature_layers)})")
    config = replace(config, layer=layer)
    vocabulary = tuple(generator.vocabulary)
    if config.views not in ("kept", "all"):
        raise UserError(f"unknown views '{config.views}' (valid: kept, all)")
    probe = np.asarray(generator.features(gallery.image(0)[None], [vocabulary[0]], layer=layer))
    views = len(vocabulary) if config.views == "all" else 1
    plan_build(config, probe.shape[1] * views, len(gallery), views)  # fail before the long work
    with exclusive_lock(build_lock(out), what=str(out)):  # another build writing `out` now: refused at once
        pass
    return config, layer, vocabulary


def _build_locked(generator, gallery: FaceSet, out: Path, cache: Path, config: IndexConfig,
                  vocabulary: tuple[str, ...], layer: str, progress: bool, force: bool,
                  classifier: PoseClassifier | None, classifier_info: dict, distributor=None,
                  pose_images: str | None = None) -> GalleryIndex:
    """The long part of build_index, run while holding the cache's lock."""
    start = time.perf_counter()
    feature_options = dict(layer=layer, chunk_size=config.batch_size, views=config.views,  # the workers' too
                           normalize=config.normalize, classifier=classifier,
                           **({"pose_images": str(Path(pose_images).resolve())} if pose_images is not None else {}))
    if distributor is not None:
        key = sharded.compute_chunks(distributor, generator, gallery, cache, feature_options, progress)
    chunks = compute_feature_chunks(generator, gallery, cache, progress=progress, **feature_options)
    views = len(vocabulary) if config.views == "all" else 1
    if distributor is None:
        projection, index, train_count = fill_projected_index(config, chunks.dimension, chunks.count, views, chunks.take,
                                                              chunks.iter_vectors, progress)
    else:
        assert chunks.key == key, "the workers computed the chunks under other options than this build's"
        projection, index, train_count = sharded.fill_index(distributor, config, chunks, views, progress)
    kept_values = np.asarray(vocabulary, dtype=object)[chunks.kept()].astype(str)
    edit = generator.edit_factor
    faces = indexed_faces(gallery, kept_values, edit)
    info = IndexInfo(
        dimension=chunks.dimension,
        factory=config.factory,
        count=len(faces),
        checkpoint_hash=generator.checkpoint_hash,
        task=generator.task,
        edit_factor=edit,
        vocabulary=vocabulary,
        layer=layer,
        kept_accuracy=kept_accuracy(kept_values, faces[edit]) if edit in faces.columns else None,
        train_count=train_count,
        pose_classifier=({**classifier_info, **classifier.to_json(),
                          **({"reads": str(pose_images)} if pose_images is not None else {})}
                         if classifier is not None else {}),
        gallery=gallery_record(gallery, out),
        config=asdict(config),
        provenance=provenance(seed=config.seed, model=model_record(getattr(generator, "path", None), out), faiss=faiss.__version__, build_seconds=round(time.perf_counter() - start, 2),
                              **({"distributed": distributor.describe()} if distributor is not None else {})),
    )
    built = GalleryIndex(index, faces, info, config, pose_classifier=classifier, projection=projection)
    built.save(out, force=force)
    shutil.rmtree(cache, ignore_errors=True)
    return built
