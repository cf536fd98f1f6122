"""FaceSet: the one on-disk format of faces with known factors that every command reads and writes.

A FaceSet is a folder:
  images.npy     uint8 (N, H, W) grayscale, memory-mapped on open
  faces.parquet  one row per image: identity, the factor columns present, split, source
  faceset.json   name, image size, each factor's ordered vocabulary, the val identities, provenance
Factor values are strings (poses as signed degrees: "-45", "0", "+30"); the vocabulary order in
faceset.json is the order of one-hot codes everywhere downstream. Splits are train, val and test, by
identity (facedata.splits); a FaceSet written before val existed has none and reads as val-empty.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from facedata.atomic import atomic_dir
from facedata.errors import DataError, UserError
from facedata.outputs import ArtifactKind
from facedata.provenance import provenance as make_provenance
from facedata.splits import check_split_sizes, check_splits, split_column, val_people

FACTOR_COLUMNS = ("pose", "illumination", "accessory", "expression", "occluded")  # the canonical factors, in order
NON_FACTOR_COLUMNS = ("identity", "split", "source")
IMAGES_FILE = "images.npy"
FACES_FILE = "faces.parquet"
INFO_FILE = "faceset.json"
FORMAT_VERSION = 1
KIND = ArtifactKind("FaceSet", INFO_FILE, (IMAGES_FILE, FACES_FILE, INFO_FILE))  # what FaceSet.write writes
FINGERPRINT_CHUNK = 4096  # images hashed at a time by FaceSet.fingerprint (bounded memory)


@dataclass(frozen=True)
class FaceSetInfo:
    """What faceset.json holds: name, image size, factor vocabularies, provenance, extras, val identities."""

    name: str
    image_size: tuple[int, int]  # (H, W)
    factors: dict[str, tuple[str, ...]]
    count: int
    provenance: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    val_identities: tuple[str, ...] = ()  # the people of the val split, in identity order

    def to_json(self) -> dict:
        record = asdict(self)
        record["image_size"] = list(self.image_size)
        record["factors"] = {k: list(v) for k, v in self.factors.items()}
        record["val_identities"] = list(self.val_identities)
        record["format_version"] = FORMAT_VERSION
        return record

    @classmethod
    def from_json(cls, record: Mapping, source: Path) -> "FaceSetInfo":
        try:
            return cls(
                name=str(record["name"]),
                image_size=(int(record["image_size"][0]), int(record["image_size"][1])),
                factors={k: tuple(str(x) for x in v) for k, v in record["factors"].items()},
                count=int(record["count"]),
                provenance=dict(record.get("provenance", {})),
                extra=dict(record.get("extra", {})),
                val_identities=tuple(str(x) for x in record.get("val_identities", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise DataError(f"{source}: not a valid faceset.json ({exc!r} missing or malformed)") from None


def pose_degrees(value: str) -> float | None:
    """Yaw in degrees of a pose label like "-30" or "+15"; None for named poses ("left")."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def format_pose(degrees: float) -> str:
    """The pose label of a yaw angle: "0", "+15", "-30" (integers when whole)."""
    if float(degrees).is_integer():
        d = int(degrees)
        return "0" if d == 0 else f"{d:+d}"
    return f"{degrees:+g}"


MIRRORED_NAMES = {"left": "right", "right": "left"}  # named values that swap under a left-right flip


LIGHT_DIRECTION = re.compile(r"^A([+-])(\d{3})E([+-]\d{2})$")  # Yale B's light names: azimuth, elevation in degrees


def mirror_value(value: str) -> str:
    """The value a face takes when flipped left-right: yaw −p for p, left for right, a light's azimuth
    negated (Yale B's A+050E+20 ↔ A-050E+20), others unchanged."""
    degrees = pose_degrees(value)
    if degrees is not None:
        return format_pose(-degrees)
    light = LIGHT_DIRECTION.match(value)
    if light:
        sign, azimuth, elevation = light.groups()
        return f"A{'-' if sign == '+' and azimuth != '000' else '+'}{azimuth}E{elevation}"
    return MIRRORED_NAMES.get(value, value)


def sorted_vocabulary(values: Iterable[str]) -> tuple[str, ...]:
    """A factor's vocabulary in natural order: numerically when all values are numbers."""
    unique = sorted(set(str(v) for v in values))
    if unique and all(pose_degrees(v) is not None for v in unique):
        return tuple(sorted(unique, key=float))
    return tuple(unique)


class FaceSet:
    """Images plus one row of factors per image; filtered views share the underlying array.

    `faces.index` holds each row's position in the underlying `images.npy`, so a view keeps the
    link to its pixels without copying them.
    """

    def __init__(self, images: np.ndarray, faces: pd.DataFrame, info: FaceSetInfo, root: Path | None = None):
        assert images.ndim == 3 and images.dtype == np.uint8, (images.shape, images.dtype)
        self._images = images  # (N_total, H, W) uint8, possibly a memmap
        self.faces = faces
        self.info = info
        self.root = root

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        faces: pd.DataFrame,
        name: str,
        factors: Mapping[str, Sequence[str]] | None = None,
        provenance: dict | None = None,
        extra: dict | None = None,
        extra_factors: Sequence[str] = (),
    ) -> "FaceSet":
        """Build an in-memory FaceSet, checking columns and inferring missing vocabularies.

        The canonical FACTOR_COLUMNS present are factors; `extra_factors` names further columns
        (a manifest's `session`, `tilt` …) that are kept as factors too, after the canonical ones.
        """
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{name}: images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
        extra_factors = tuple(f for f in extra_factors if f not in FACTOR_COLUMNS)
        for column in extra_factors:
            if column in NON_FACTOR_COLUMNS:
                raise DataError(f"{name}: '{column}' cannot be a factor (it is {', '.join(NON_FACTOR_COLUMNS)})")
            if column not in faces.columns:
                raise DataError(f"{name}: factor '{column}' is not a column (columns: {', '.join(map(str, faces.columns))})")
        faces = normalize_faces(faces, len(images), name, extra_factors)
        vocab: dict[str, tuple[str, ...]] = {}
        for column in (*FACTOR_COLUMNS, *extra_factors):
            if column in faces.columns:
                given = tuple(str(v) for v in factors[column]) if factors and column in factors else None
                vocab[column] = given or sorted_vocabulary(faces[column])
        info = FaceSetInfo(
            name=name,
            image_size=(int(images.shape[1]), int(images.shape[2])),
            factors=vocab,
            count=len(images),
            provenance=provenance or {},
            extra=extra or {},
            val_identities=val_people(faces),
        )
        faceset = cls(images, faces, info)
        faceset._check_vocabulary(name)
        return faceset

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True) -> "FaceSet":
        """Open a FaceSet folder, validating its three files against each other."""
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: no such FaceSet folder")
        for fname in (IMAGES_FILE, FACES_FILE, INFO_FILE):
            if not (root / fname).is_file():
                raise DataError(f"{root / fname}: missing (a FaceSet folder holds {IMAGES_FILE}, {FACES_FILE}, {INFO_FILE})")
        try:
            record = json.loads((root / INFO_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{root / INFO_FILE}: unreadable JSON ({exc})") from None
        info = FaceSetInfo.from_json(record, root / INFO_FILE)
        try:
            images = np.load(root / IMAGES_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: a 0-byte file
            reason = " ".join(str(exc).split()) or "empty file"
            raise DataError(f"{root / IMAGES_FILE}: unreadable array, empty or truncated ({reason})") from None
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{root / IMAGES_FILE}: expected uint8 (N, H, W), got {images.dtype} {images.shape}")
        try:
            faces = pd.read_parquet(root / FACES_FILE)
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise DataError(f"{root / FACES_FILE}: unreadable parquet ({exc})") from None
        faces = normalize_faces(faces, len(images), str(root / FACES_FILE), tuple(info.factors))
        if info.count != len(images) or tuple(images.shape[1:]) != info.image_size:
            raise DataError(
                f"{root / INFO_FILE}: says {info.count} images of {info.image_size}, "
                f"{IMAGES_FILE} holds {len(images)} of {tuple(images.shape[1:])}"
            )
        if "val_identities" in record and info.val_identities != val_people(faces):
            raise DataError(f"{root / INFO_FILE}: lists val identities {list(info.val_identities)[:5]} but "
                            f"{FACES_FILE} has {list(val_people(faces))[:5]} in split val")
        faceset = cls(images, faces, info, root=root)
        faceset._check_vocabulary(str(root / FACES_FILE))
        return faceset

    def _check_vocabulary(self, where: str) -> None:
        for factor, vocab in self.info.factors.items():
            if factor not in self.faces.columns:
                raise DataError(f"{where}: factor '{factor}' is in the vocabulary but not a column")
            unknown = sorted(set(self.faces[factor]) - set(vocab))
            if unknown:
                raise DataError(f"{where}: column '{factor}' has values {unknown[:5]} outside its vocabulary {list(vocab)}")

    # -- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.faces)

    def __repr__(self) -> str:
        factors = ", ".join(f"{k}={len(v)}" for k, v in self.info.factors.items())
        return f"FaceSet({self.info.name!r}, {len(self)} images of {self.image_size}, {self.num_identities} identities, {factors})"

    @property
    def image_size(self) -> tuple[int, int]:
        return self.info.image_size

    @property
    def factors(self) -> tuple[str, ...]:
        """Factor columns present: the canonical ones in FACTOR_COLUMNS order, then any others as stored."""
        canonical = tuple(f for f in FACTOR_COLUMNS if f in self.info.factors)
        return canonical + tuple(f for f in self.info.factors if f not in FACTOR_COLUMNS)

    @property
    def num_identities(self) -> int:
        return int(self.faces["identity"].nunique())

    def identities(self) -> list[str]:
        """Identities in order of first appearance (the order splits count by)."""
        return list(pd.unique(self.faces["identity"]))

    def vocabulary(self, factor: str) -> tuple[str, ...]:
        """The ordered values of `factor`; its index is the one-hot position."""
        if factor not in self.info.factors:
            raise DataError(f"{self.info.name}: no factor '{factor}' (present: {', '.join(self.factors) or 'none'})")
        return self.info.factors[factor]

    def codes(self, factor: str) -> np.ndarray:
        """Each row's position of its `factor` value in the vocabulary: (n,) int64."""
        vocab = self.vocabulary(factor)
        lookup = {v: i for i, v in enumerate(vocab)}
        return self.faces[factor].map(lookup).to_numpy(dtype=np.int64)

    @property
    def rows(self) -> np.ndarray:
        """Positions of this view's rows in the underlying images array: (n,) int64."""
        return self.faces.index.to_numpy(dtype=np.int64)

    @property
    def images(self) -> np.ndarray:
        """This view's pixels, (n, H, W) uint8 (a copy for a strict subset, the array itself if whole)."""
        rows = self.rows
        if len(rows) == len(self._images) and np.array_equal(rows, np.arange(len(rows))):
            return self._images
        return np.asarray(self._images[rows])

    def image(self, i: int) -> np.ndarray:
        """The i-th image of this view (positional), (H, W) uint8."""
        return np.asarray(self._images[self.faces.index[i]])

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """Yield (images (b, H, W) uint8, faces rows) in order, for streaming work with bounded memory."""
        for start in range(0, len(self), batch_size):
            part = self.faces.iloc[start : start + batch_size]
            yield np.asarray(self._images[part.index.to_numpy()]), part

    def fingerprint(self) -> str:
        """sha256 of this view's images and labels in order: equal for byte-identical copies wherever they lie.

        Neither the folder, the name nor the provenance enters it, so a copied or moved FaceSet keeps it
        and a re-rendered one with the same pixels and labels has it too; the pixels are read in chunks.
        """
        digest = hashlib.sha256(json.dumps([list(self.image_size), len(self), [str(c) for c in self.faces.columns]]).encode())
        for pixels, _ in self.iter_batches(FINGERPRINT_CHUNK):
            digest.update(np.ascontiguousarray(pixels).tobytes())
        digest.update(pd.util.hash_pandas_object(self.faces, index=False).to_numpy().tobytes())
        return digest.hexdigest()

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict]]:
        for i in range(len(self)):
            yield self.image(i), self.faces.iloc[i].to_dict()

    # -- views ----------------------------------------------------------------------------------
    def where(self, mask: np.ndarray | pd.Series, what: str = "filter") -> "FaceSet":
        """The rows where `mask` holds; an empty result is an error naming `what`."""
        mask = np.asarray(mask, dtype=bool)
        assert mask.shape == (len(self),), (mask.shape, len(self))
        if not mask.any():
            raise DataError(f"{self.info.name}: no faces left after {what}")
        return FaceSet(self._images, self.faces[mask], self.info, self.root)

    def take(self, positions: Sequence[int]) -> "FaceSet":
        """The rows at these positions of this view, in the order given."""
        return FaceSet(self._images, self.faces.iloc[list(positions)], self.info, self.root)

    def filter(self, **criteria: str | Sequence[str]) -> "FaceSet":
        """Rows whose columns equal the given value (or are in the given list), e.g. pose="0"."""
        mask = np.ones(len(self), dtype=bool)
        for column, wanted in criteria.items():
            if column not in self.faces.columns:
                raise DataError(f"{self.info.name}: no column '{column}' to filter on")
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            known = set(self.info.factors.get(column, self.faces[column].unique()))
            unknown = [v for v in values if str(v) not in known]
            if unknown:
                raise DataError(f"{self.info.name}: {column}={unknown[0]} is not a known value (valid: {', '.join(map(str, sorted_vocabulary(known)))})")
            mask &= self.faces[column].isin([str(v) for v in values]).to_numpy()
        described = ", ".join(f"{k}={v}" for k, v in criteria.items())
        return self.where(mask, f"filter {described}")

    def split(self, name: str) -> "FaceSet":
        """The rows of split `name` ("train", "val" or "test"); an empty split is an error (see `has_split`)."""
        return self.filter(split=name) if self.has_split(name) else self.where(np.zeros(len(self), bool), f"split={name}")

    def has_split(self, name: str) -> bool:
        """Whether any row is in split `name` (a FaceSet without val people has no val split)."""
        return bool((self.faces["split"] == name).any())

    def with_split_by_identity(self, train_identities: int, val_identities: int | None = None) -> "FaceSet":
        """A copy whose first `train_identities` identities (by first appearance) are the train side, the rest test.

        The last `val_identities` of the train side are val (None: about 10 %, facedata.splits).
        """
        order = self.identities()
        val = check_split_sizes(self.info.name, len(order), train_identities, val_identities)
        return self.with_splits(split_column(self.faces["identity"], order, train_identities, val).to_numpy(), self.info.name)

    def with_splits(self, split: np.ndarray, where: str) -> "FaceSet":
        """A copy with each row's split replaced by `split` ((n,) of train/val/test, by identity; checked)."""
        faces = self.faces.copy()
        faces["split"] = np.asarray(split, dtype=str)
        check_splits(faces, where)
        return FaceSet(self._images, faces, replace(self.info, val_identities=val_people(faces)), self.root)

    # -- writing --------------------------------------------------------------------------------
    def write(self, path: str | Path, name: str | None = None, provenance: dict | None = None, extra: dict | None = None,
              force: bool = False) -> Path:
        """Write this view as a FaceSet folder, atomically (temporary folder, then rename).

        An existing folder at `path` is replaced only if it is a FaceSet holding nothing else, or with `force`.
        """
        faces = self.faces.reset_index(drop=True)
        images = np.ascontiguousarray(self.images)
        info = FaceSetInfo(
            name=name or self.info.name,
            image_size=self.image_size,
            factors=dict(self.info.factors),
            count=len(faces),
            provenance=provenance if provenance is not None else (self.info.provenance or make_provenance()),
            extra={**self.info.extra, **(extra or {})},
            val_identities=val_people(faces),
        )
        target = Path(path)
        with atomic_dir(target, kind=KIND, force=force) as tmp:
            np.save(tmp / IMAGES_FILE, images, allow_pickle=False)
            faces.to_parquet(tmp / FACES_FILE, index=False)
            (tmp / INFO_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")
        return target


def normalize_faces(faces: pd.DataFrame, count: int, where: str, extra_factors: Sequence[str] = ()) -> pd.DataFrame:
    """Check a faces table against its image count; give it string columns and split/source defaults."""
    if "identity" not in faces.columns:
        raise DataError(f"{where}: no 'identity' column (columns: {', '.join(map(str, faces.columns))})")
    if len(faces) != count:
        raise DataError(f"{where}: {len(faces)} rows for {count} images")
    faces = faces.reset_index(drop=True).copy()
    for column in dict.fromkeys(("identity", *FACTOR_COLUMNS, *extra_factors, "split", "source")):
        if column in faces.columns:
            if faces[column].isna().any():
                row = int(np.flatnonzero(faces[column].isna().to_numpy())[0])
                raise DataError(f"{where}: column '{column}' is empty at row {row}")
            faces[column] = faces[column].astype(str)
    if "split" not in faces.columns:
        faces["split"] = "train"
    if "source" not in faces.columns:
        faces["source"] = ""
    check_splits(faces, where)
    return faces


def same_faces_at_resolution(faces: FaceSet, path: str | Path, option: str, named: str = "--data") -> FaceSet:
    """The FaceSet at `path`, checked to hold the faces of `faces`' folder in the same order (at another
    resolution): `faces` may be a view of it (a split), whose rows then index the returned set alike.
    `option` and `named` name the two in errors."""
    source = FaceSet.open(path)
    total = len(faces._images)  # the rows of the whole FaceSet `faces` is a view of
    if len(source) != total:
        raise UserError(f"{option} {path}: {len(source)} faces, but {named} holds {total} (the same faces, "
                        "in the same order, are needed)")
    rows = faces.rows
    split = ("split",) if "split" in faces.faces.columns else ()  # a classifier fitted on its train people must not see the test ones
    for column in ("identity", *faces.factors, *split):
        same = (column in source.faces.columns
                and (source.faces[column].to_numpy()[rows] == faces.faces[column].to_numpy()).all())
        if not same:
            raise UserError(f"{option} {path}: column '{column}' differs from {named}'s (not the same faces in the same order)")
    return source
