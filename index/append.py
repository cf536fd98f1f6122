"""Add a gallery's faces to a built index without rebuilding it (`rbg index add`).

The new faces are pose-normalized with the model, layer, views and settings the index records
(index.features.compute_feature_chunks under the index's IndexConfig) and appended to the FAISS index
as it stands: a trained factory (PCA, IVF, PQ) keeps the training of its build, so a gallery grown far
beyond the build's training sample is better rebuilt. faces.parquet gains the new rows with their
`gallery` code, index.json one entry in `additions`. The folder is written whole to a temporary folder
and renamed onto the old one while the build's lock is held; the features go through a cache
`.<index>.add` beside it, which an interrupted addition resumes from.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from facedata.combined import with_factor
from facedata.errors import UserError
from facedata.faceset import FaceSet, same_faces_at_resolution
from facedata.outputs import check_output_folder, exclusive_lock
from facedata.provenance import provenance
from index.faiss_index import (
    GALLERY_COLUMN,
    KIND,
    GalleryIndex,
    build_lock,
    gallery_codes,
    gallery_record,
    image_rows,
    indexed_faces,
    model_record,
)
from index.features import compute_feature_chunks
from index.ondisk_lists import ondisk_lists
from index.pose_normalize import kept_accuracy


def add_cache(index_dir: Path) -> Path:
    """Where an addition to `index_dir` keeps its feature chunks until the new index is in place."""
    return index_dir.with_name(f".{index_dir.name}.add")


def add_to_index(generator, index_dir: str | Path, new_gallery: FaceSet, progress: bool = True,
                 batch_size: int | None = None, layer: str | None = None,
                 pose_images: str | Path | None = None) -> GalleryIndex:
    """Append `new_gallery`'s faces to the index at `index_dir` and rewrite it in place, atomically.

    Refused: another model (checkpoint hash) or `layer` than the index's, images of another size,
    values of the edited factor outside the index's vocabulary, an empty gallery, and faces already in
    the index (the images and labels of an indexed gallery, wherever they lie, or rows of an indexed
    gallery's folder). `batch_size` only sets the chunk size of the feature computation [the index's].
    Returns the grown index.
    """
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise UserError(f"{index_dir}: no such index folder")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch size must be ≥ 1, got {batch_size}")
    if pose_images is not None:
        same_faces_at_resolution(new_gallery, pose_images, "--pose-images", str(new_gallery.root or new_gallery.info.name))
    new_gallery = with_factor(new_gallery, generator.edit_factor)  # several factors: as the build saw its gallery
    with exclusive_lock(build_lock(index_dir), what=str(index_dir)):
        index = GalleryIndex.load(index_dir, generator=generator, layer=layer)
        check_addition(index, generator, new_gallery)
        check_output_folder(index_dir, KIND, force=True, inputs=[new_gallery.root], option=None)  # its other files are kept
        if pose_images is not None and index.pose_classifier is None:
            raise UserError(f"{index_dir}: its normalization reads no pose classifier, so --pose-images has nothing to do")
        return _add_locked(generator, index, new_gallery, progress, batch_size, pose_images)


def check_addition(index: GalleryIndex, generator, gallery: FaceSet) -> None:
    """Refuse a gallery that cannot join this index: a UserError naming the gallery and what differs."""
    where = gallery.root or gallery.info.name
    if ondisk_lists(index.index) is not None:
        raise UserError(f"{index.path}: its IVF lists are on disk (a sharded build) and open read-only; "
                        "build the grown gallery anew (rbg index build --workers N --engine ray)")
    if tuple(generator.vocabulary) != tuple(index.info.vocabulary):
        raise UserError(f"{index.path}: built over the vocabulary {', '.join(index.info.vocabulary)}, the model has "
                        f"{', '.join(generator.vocabulary)}")
    if len(gallery) == 0:
        raise UserError(f"{where}: the gallery is empty: nothing to add")
    if tuple(gallery.image_size) != tuple(generator.image_size):
        (h, w), (mh, mw) = gallery.image_size, generator.image_size
        raise UserError(f"{where}: images are {h}×{w}, the index's model expects {mh}×{mw}")
    edit = index.info.edit_factor
    if edit and edit in gallery.faces.columns:
        unknown = sorted(set(gallery.faces[edit].astype(str)) - set(index.info.vocabulary))
        if unknown:
            raise UserError(f"{where}: {edit} values {unknown[:5]} are not in the index's vocabulary "
                            f"({', '.join(index.info.vocabulary)})")
    if GALLERY_COLUMN in gallery.faces.columns:
        raise UserError(f"{where}: has a column '{GALLERY_COLUMN}', the name the index gives its gallery codes; rename it")
    if GALLERY_COLUMN in index.faces.columns and not pd.api.types.is_integer_dtype(index.faces[GALLERY_COLUMN]):
        raise UserError(f"{index.path}: its faces carry a column '{GALLERY_COLUMN}' of their own; rebuild the index "
                        "from FaceSets without one to add to it")
    repeated = already_indexed(index, gallery)
    if repeated:
        raise UserError(f"{index.path}: {repeated}; an index holds each face once (rebuild it to index a gallery anew)")


def already_indexed(index: GalleryIndex, gallery: FaceSet) -> str | None:
    """Why `gallery`'s faces are in the index already, else None.

    By content: the same images and labels (FaceSet.fingerprint) as a gallery of the index, wherever
    either lies, so a copy of an indexed gallery is refused too; and rows of an indexed gallery's folder.
    """
    fingerprint = gallery.fingerprint()
    codes, rows = gallery_codes(index.faces), image_rows(index.faces)
    where = gallery.root or gallery.info.name
    for code, record in enumerate(index.info.galleries):
        named = f"gallery {code} '{record.get('name')}'"
        folder = index.locate(record.get("path"))
        same_folder = gallery.root is not None and folder is not None and os.path.realpath(folder) == os.path.realpath(gallery.root)
        if record.get("fingerprint") == fingerprint:
            elsewhere = f" as {os.path.normpath(folder)}" if folder is not None and not same_folder else ""
            return f"{where} is in it already ({named}): the same images and labels{elsewhere}"
        if not same_folder:
            continue
        shared = np.intersect1d(rows[codes == code], gallery.rows)
        if len(shared):
            return f"{len(shared)} of the {len(gallery)} faces of {where} are in it already ({named}, e.g. row {shared[0]})"
    return None


def _add_locked(generator, index: GalleryIndex, gallery: FaceSet, progress: bool, batch_size: int | None,
                pose_images: str | Path | None = None) -> GalleryIndex:
    """The long part of add_to_index, run while holding the index's build lock."""
    start = time.perf_counter()
    info, config, out = index.info, index.config, Path(index.path)
    cache = add_cache(out)
    chunks = compute_feature_chunks(generator, gallery, cache, info.layer, batch_size or config.batch_size, progress,
                                    config.views, config.normalize, index.pose_classifier,
                                    pose_images=str(pose_images) if pose_images is not None else None)
    if chunks.dimension != info.dimension:
        raise UserError(f"{gallery.root or gallery.info.name}: features of {chunks.dimension} dimensions, "
                        f"the index holds {info.dimension}-d vectors")
    for vectors in chunks.iter_vectors():
        index.index.add(index.encode(vectors, normalized=True))  # trained factories (and a per-view PCA) keep their training
    edit = info.edit_factor
    kept_values = np.asarray(info.vocabulary, dtype=object)[chunks.kept()].astype(str)
    code = len(info.galleries)
    added = indexed_faces(gallery, kept_values, edit)
    added[GALLERY_COLUMN] = np.int64(code)
    previous = index.faces if GALLERY_COLUMN in index.faces.columns else index.faces.assign(**{GALLERY_COLUMN: np.int64(0)})
    faces = pd.concat([previous, added], ignore_index=True)
    addition = {
        "gallery": gallery_record(gallery, out),
        "count": len(added),
        "kept_accuracy": kept_accuracy(kept_values, added[edit]) if edit in added.columns else None,
        "provenance": provenance(seed=config.seed, model=model_record(getattr(generator, "path", None), out),
                                 faiss=faiss.__version__, add_seconds=round(time.perf_counter() - start, 2)),
    }
    grown = GalleryIndex(index.index, faces, replace(
        info, count=len(faces), kept_accuracy=_known_kept_accuracy(faces, edit, info.kept_accuracy),
        additions=(*info.additions, addition)), config, pose_classifier=index.pose_classifier, projection=index.projection)
    grown.save(out, keep=out)
    shutil.rmtree(cache, ignore_errors=True)
    return grown


def _known_kept_accuracy(faces: pd.DataFrame, edit: str | None, previous: float | None) -> float | None:
    """kept_accuracy over every indexed face whose true value of the edited factor is known."""
    if not edit or edit not in faces.columns:
        return previous
    known = faces[edit].notna().to_numpy()
    return kept_accuracy(faces.loc[known, f"kept_{edit}"], faces.loc[known, edit]) if known.any() else previous
