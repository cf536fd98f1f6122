"""A user's own faces, listed in a manifest (CSV or Parquet), read into a FaceSet: the way any real
face data other than Multi-PIE and CAS-PEAL comes in.

Manifest columns:
  identity     required: who is in the image.
  path         the image file, relative to the manifest's folder (or absolute). Without a `path`
               column the pixels come from an `images.npy` beside the manifest, uint8 (N, H, W) or
               colour (N, H, W, 3|4) (made grayscale): row i is image i, or an `index` column gives
               each row's image.
  pose, illumination, accessory, expression, occluded
               optional factor columns; values are kept as strings, numeric poses are written as
               signed degrees ("30" → "+30") as everywhere in the project.
  split        optional `train`/`val`/`test` per row; when present it wins over `train_identities`
               and `val_identities`, and must keep each identity in one split.
  source       optional; kept as given, else the row's path or `images.npy[i]`.
Every other column (`session`, `tilt`, …) is kept as a factor too, unless `factors` names the ones
to keep; the columns left out are recorded in `info.extra["ignored_columns"]`. A kept factor can
be matched in training pairs (`rbg train --pair-match`) and by criterion 2 (`rbg bench --criterion2`).
The pixels may come from an `images.npy` elsewhere (`images=`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.errors import DataError
from facedata.faceset import FACTOR_COLUMNS, FaceSet, format_pose, pose_degrees
from facedata.imageio import Size, gray_array, load_gray, resize, size_hw
from facedata.photo import AlignConfig, align_rows, aligned_at, alignment_record
from facedata.provenance import provenance as make_provenance

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_TRAIN_SHARE = 0.7
_STRUCTURAL_COLUMNS = ("identity", "path", "index", "split", "source")


def read_table(path: Path) -> pd.DataFrame:
    """The manifest as a table of stripped strings ("" where a cell is empty)."""
    if not path.is_file():
        raise DataError(f"{path}: {'not a regular file (a folder, FIFO or device)' if path.exists() else 'no such manifest file'}")
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise DataError(f"{path}: a manifest is a .csv or .parquet file")
    try:
        if suffix == ".csv":
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            table = pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise many unrelated types for a damaged file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: unreadable manifest ({reason})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table.apply(lambda column: column.map(_cell_text)) if len(table) else table


def _cell_text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _check_filled(table: pd.DataFrame, column: str, path: Path) -> None:
    empty = np.flatnonzero((table[column] == "").to_numpy())
    if len(empty):
        line = f" (line {empty[0] + 2})" if path.suffix.lower() == ".csv" else ""
        raise DataError(f"{path}: column '{column}' is empty at row {empty[0]}{line}")


def _first_duplicate(values: pd.Series) -> int | None:
    """Position of the first value already seen earlier in the series, or None."""
    repeated = np.flatnonzero(values.duplicated().to_numpy())
    return int(repeated[0]) if len(repeated) else None


def _row_files(table: pd.DataFrame, path: Path) -> list[Path]:
    """Every row's image file, relative paths taken from the manifest's folder; a file listed twice is an error."""
    base = path.parent
    files = [Path(p) if os.path.isabs(p) else base / p for p in table["path"]]
    keys = pd.Series([os.path.normpath(os.path.abspath(f)) for f in files])
    duplicate = _first_duplicate(keys)
    if duplicate is not None:
        raise DataError(f"{path}: duplicate row {duplicate}: path '{table['path'].iloc[duplicate]}' is listed twice")
    return files


def _images_from_paths(table: pd.DataFrame, path: Path, hw: tuple[int, int] | None, progress: bool) -> np.ndarray:
    """Load every row's file: (N, H, W) uint8; mixed sizes without `hw` are an error naming the file."""
    files = _row_files(table, path)
    images: np.ndarray | None = None
    first = None
    for i, file in enumerate(tqdm(files, desc="manifest", unit="img", disable=not progress)):
        image = load_gray(file)
        if hw is not None:
            image = resize(image, hw)
        if images is None:
            images = np.empty((len(files), *image.shape), dtype=np.uint8)  # (N, H, W)
            first = file
        elif image.shape != images.shape[1:]:
            raise DataError(f"{file}: image is {image.shape[0]}x{image.shape[1]} (HxW) but {first} is "
                            f"{images.shape[1]}x{images.shape[2]}; give a size to resize all images")
        images[i] = image
    assert images is not None
    return images


def _images_from_array(table: pd.DataFrame, path: Path, hw: tuple[int, int] | None, progress: bool,
                       array_path: Path | None = None) -> tuple[np.ndarray, list[int]]:
    """Rows' images from an images.npy (default: beside the manifest): ((N, H, W) uint8, each row's index)."""
    if array_path is not None:
        if not array_path.is_file():
            raise DataError(f"{array_path}: no such images file")
    else:
        array_path = path.parent / "images.npy"
        if not array_path.is_file():
            raise DataError(f"{path}: no 'path' column and no images.npy beside it (one of the two gives the pixels; "
                            "or name the array file)")
    try:
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: a 0-byte file
        raise DataError(f"{array_path}: unreadable array ({' '.join(str(exc).split()) or 'empty file'})") from None
    if array.dtype != np.uint8 or not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (3, 4))):
        raise DataError(f"{array_path}: expected uint8 (N, H, W) or (N, H, W, 3), got {array.dtype} {array.shape}")
    if "index" in table.columns:
        _check_filled(table, "index", path)
        try:
            indices = [int(v) for v in table["index"]]
        except ValueError:
            bad = next(v for v in table["index"] if not v.lstrip("-").isdigit())
            raise DataError(f"{path}: column 'index' holds '{bad}', not an image number") from None
        outside = [i for i in indices if not 0 <= i < len(array)]
        if outside:
            raise DataError(f"{path}: index {outside[0]} is outside images.npy (0..{len(array) - 1})")
        duplicate = _first_duplicate(pd.Series(indices))
        if duplicate is not None:
            raise DataError(f"{path}: duplicate row {duplicate}: index {indices[duplicate]} is listed twice")
    else:
        if len(table) != len(array):
            raise DataError(f"{path}: {len(table)} rows but {array_path} holds {len(array)} images "
                            "(add an 'index' column to pick images)")
        indices = list(range(len(array)))
    images = gray_array(np.asarray(array[indices]))  # (N, H, W)
    if hw is not None and images.shape[1:] != hw:
        images = np.stack([resize(im, hw) for im in tqdm(images, desc="resize", unit="img", disable=not progress)])
    return images, indices


def _split(faceset: FaceSet, table: pd.DataFrame, path: Path, train_identities: int | None,
           val_identities: int | None) -> FaceSet:
    """Apply the manifest's split column, or put the first identities (by appearance) on the train side."""
    if "split" in table.columns:
        _check_filled(table, "split", path)
        return faceset.with_splits(table["split"].to_numpy(), str(path))
    count = faceset.num_identities
    if train_identities is None:
        if count == 1:
            return faceset  # a single identity: everything is train
        train_identities = min(max(1, round(DEFAULT_TRAIN_SHARE * count)), count - 1)
    return faceset.with_split_by_identity(train_identities, val_identities)


def manifest_factors(table: pd.DataFrame, path: Path, factors: Sequence[str] | None) -> list[str]:
    """The columns kept as factors: the named ones (checked), else every column that is not structural."""
    candidates = [c for c in table.columns if c not in _STRUCTURAL_COLUMNS]
    if factors is None:
        return [c for c in FACTOR_COLUMNS if c in candidates] + [c for c in candidates if c not in FACTOR_COLUMNS]
    for factor in factors:
        if factor in _STRUCTURAL_COLUMNS:
            raise DataError(f"{path}: '{factor}' cannot be a factor ({', '.join(_STRUCTURAL_COLUMNS)} are not factors)")
        if factor not in table.columns:
            raise DataError(f"{path}: factor '{factor}' is not a column (columns: {', '.join(table.columns)})")
    return [c for c in FACTOR_COLUMNS if c in factors] + [c for c in dict.fromkeys(factors) if c not in FACTOR_COLUMNS]


def read_manifest(manifest: str | Path, size: Size | None = None, name: str | None = None,
                  train_identities: int | None = None, progress: bool = True,
                  factors: Sequence[str] | None = None, images: str | Path | None = None,
                  align: AlignConfig | None = None, val_identities: int | None = None) -> FaceSet:
    """Read the faces a manifest lists into a FaceSet, rows in manifest order.

    Without `size` all images must share one size; with it each is resized to it. The split is the
    manifest's `split` column if any, else the first `train_identities` identities by first
    appearance (default: 70% of them) are the train side, whose last `val_identities` (default:
    about 10 % of it, facedata.splits) are val. `factors` names the columns kept as factors
    (default: all but identity, path, index, split, source); `images` is an images.npy to read
    the pixels from instead of the one beside the manifest. With `align` every image is a photo
    whose face is detected and eye-aligned (facedata.photo) at `size` (square) or the crop's own size.
    """
    path = Path(manifest)
    table = read_table(path)
    if "identity" not in table.columns:
        raise DataError(f"{path}: no 'identity' column (columns: {', '.join(table.columns) or 'none'})")
    if len(table) == 0:
        raise DataError(f"{path}: no rows")
    factors = manifest_factors(table, path, factors)
    for column in ("identity", *factors):
        _check_filled(table, column, path)
    hw = size_hw(size) if size is not None else None
    align = aligned_at(align, hw, path) if align is not None else None

    if "path" in table.columns and images is None:
        _check_filled(table, "path", path)
        pixels = _images_from_paths(table, path, hw, progress) if align is None else _row_files(table, path)
        sources = list(table["path"])
    else:
        array_path = Path(images) if images is not None else None
        pixels, indices = _images_from_array(table, path, None if align else hw, progress, array_path)
        sources = [f"{(array_path or Path('images.npy')).name}[{i}]" for i in indices]
    if align is not None:
        pixels, kept, left_out = align_rows(pixels, sources, align, progress)
        table, sources = table[kept].reset_index(drop=True), [s for s, keep in zip(sources, kept) if keep]

    faces = table[["identity", *factors]].copy()
    if "pose" in faces.columns and all(pose_degrees(v) is not None for v in faces["pose"]):
        faces["pose"] = [format_pose(float(v)) for v in faces["pose"]]
    has_source = "source" in table.columns and (table["source"] != "").all()
    faces["source"] = table["source"].to_numpy() if has_source else sources
    ignored = [c for c in table.columns if c not in _STRUCTURAL_COLUMNS and c not in factors]
    faceset = FaceSet.from_arrays(
        pixels, faces, name=name or path.resolve().parent.name or path.stem,
        provenance=make_provenance(source=str(path), size=list(hw) if hw else None,
                                   images=str(images) if images is not None else None),
        extra={"manifest": str(path), "ignored_columns": ignored, **(alignment_record(align, left_out) if align else {})},
        extra_factors=[f for f in factors if f not in FACTOR_COLUMNS],
    )
    return _split(faceset, table, path, train_identities, val_identities)
