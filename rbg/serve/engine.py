"""The server's query work: a loaded generator, its gallery index and the gallery's pixels, answering
batches of (face, target, k) with the generated faces and the k nearest gallery rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facedata.combined import edited_factors, join_values
from facedata.errors import UserError
from facedata.faceset import FACTOR_COLUMNS, FaceSet
from index.faiss_index import GalleryIndex, gallery_codes, image_rows
from retrieval.query import as_galleries
from retrieval.search import correct_hits, search_by_generation, search_nearest_crop


@dataclass(frozen=True)
class Query:
    """One request's work: a (H, W) uint8 face, its canonical target value, k, and what is known of it."""

    image: np.ndarray  # (H, W) uint8 at the model's size
    target: str
    k: int
    label: str = "upload"
    truth: dict = field(default_factory=dict)  # identity and factors when the face is a gallery row
    crops: np.ndarray | None = None  # (m, H, W) a photo framing's crops (image = the first): ranked by the nearest


@dataclass(frozen=True)
class Answer:
    """What one query found: the generated face and one record per hit, best first."""

    generated: np.ndarray  # (H, W) uint8 stage-2 face in the target value
    hits: list[dict]  # rank, distance, gallery_row, identity, factors, kept, source, correct
    generate_ms: float  # of the whole batch this query ran in
    search_ms: float


class QueryEngine:
    """The generator, its index and its galleries, loaded once and checked against each other.

    `gallery`: the FaceSet of an index of one gallery, or every gallery's (retrieval.query.open_galleries).
    """

    def __init__(self, generator, index: GalleryIndex, gallery: FaceSet | Sequence[FaceSet], batch_size: int = 64):
        index.check_model(generator)
        self.generator = generator
        self.index = index
        self.galleries = as_galleries(gallery)
        self.gallery = self.galleries[0]  # the build's
        self.batch_size = batch_size
        faces = index.faces
        self._image_rows = image_rows(faces)
        self._gallery_codes = gallery_codes(faces)
        if len(faces) and self._gallery_codes.max() >= len(self.galleries):
            raise ValueError(f"the index's faces come from {self._gallery_codes.max() + 1} galleries, "
                             f"{len(self.galleries)} given (use open_galleries)")
        self._truth_columns = [c for c in ("identity", *FACTOR_COLUMNS, "source") if c in faces.columns]
        self._factors = [c for c in FACTOR_COLUMNS if c in faces.columns]
        kept = f"kept_{generator.edit_factor}"
        self._text = {c: faces[c].astype(str).to_numpy() for c in ("identity", *self._factors, kept, "source")
                      if c in faces.columns}  # per row, read per hit without pandas
        self._text.setdefault(kept, np.full(len(faces), None, dtype=object))
        self._kept = kept

    def __len__(self) -> int:
        return len(self.index)

    @property
    def edit_factor(self) -> str:
        return self.generator.edit_factor

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple(self.generator.vocabulary)

    @property
    def factor_vocabularies(self) -> dict[str, tuple[str, ...]]:
        """Each edited factor's values: one target per factor for a model of several."""
        return dict(getattr(self.generator, "factor_vocabularies", {self.edit_factor: self.vocabulary}))

    def row_truth(self, row: int) -> dict:
        """The known factors of gallery row `row` ({} for a row outside the index: gallery_query refuses it)."""
        if not 0 <= int(row) < len(self):
            return {}
        record = self.index.faces.iloc[int(row)]
        return {c: str(record[c]) for c in self._truth_columns}

    def check_k(self, k: int) -> int:
        """k itself if 1 ≤ k ≤ gallery size, else a UserError saying the valid range."""
        if not 1 <= int(k) <= len(self):
            raise UserError(f"k={k} is out of range: the gallery holds {len(self)} images (use 1 ≤ k ≤ {len(self)})")
        return int(k)

    def gallery_image(self, row: int) -> np.ndarray:
        """The pixels of index row `row`, (H, W) uint8; a row outside the index is a UserError."""
        if not 0 <= int(row) < len(self):
            raise UserError(f"gallery row {row} does not exist (rows 0..{len(self) - 1})")
        return self.galleries[int(self._gallery_codes[int(row)])].image(int(self._image_rows[int(row)]))

    def gallery_query(self, row: int, target: str, k: int) -> Query:
        """A query taken from the gallery itself: its identity and factors are known, so hits can be marked."""
        image = self.gallery_image(row)
        record = self.index.faces.iloc[int(row)]
        truth = {c: str(record[c]) for c in self._truth_columns}
        return Query(image=image, target=target, k=k, label=f"gallery:{int(row)}", truth=truth)

    def answer(self, queries: list[Query]) -> list[Answer]:
        """Run a batch: one search by generation at the batch's largest k, each query cut to its own k."""
        images = np.stack([q.image for q in queries])  # (n, H, W) uint8
        widest = max(q.k for q in queries)
        targets = [q.target for q in queries]
        if any(q.crops is not None for q in queries):  # a photo framing's crops: each gallery face at its nearest
            crops = [q.crops if q.crops is not None else q.image[None] for q in queries]
            found = search_nearest_crop(self.generator, self.index, crops, targets, widest, self.batch_size)
        else:
            found = search_by_generation(self.generator, self.index, images, targets, widest, self.batch_size)
        return [Answer(found.generated[i], self.hits(found.distances[i, : q.k], found.rows[i, : q.k], q),
                       found.generate_ms, found.search_ms) for i, q in enumerate(queries)]

    def hits(self, distances: np.ndarray, rows: np.ndarray, query: Query) -> list[dict]:
        """One query's found rows (k,) as records; `correct` is criterion 1 (retrieval.search.correct_hits),
        None when the query's identity is unknown."""
        text, edit = self._text, self.edit_factor
        known = query.truth.get("identity")
        records = []
        for rank, (distance, row) in enumerate(zip(distances.tolist(), rows.tolist()), start=1):
            if row < 0:
                continue  # an approximate index found fewer than k
            identity = text["identity"][row] if "identity" in text else None
            factors = {c: text[c][row] for c in self._factors}
            correct = None
            value = factors.get(edit) or combined_value(factors, edit)
            if known is not None and identity is not None and value is not None:
                correct = bool(correct_hits(identity, value, known, query.target))
            records.append({"rank": rank, "distance": float(distance), "gallery_row": int(row), "identity": identity,
                            "factors": factors, "kept": text[self._kept][row],
                            "source": text["source"][row] if "source" in text else None, "correct": correct})
        return records


def combined_value(factors: dict, edit: str) -> str | None:
    """A hit's value of a combined factor ("+30/sunglasses") from its parts; None where one is missing."""
    parts = edited_factors(edit)
    return join_values([factors[p] for p in parts]) if len(parts) > 1 and all(p in factors for p in parts) else None
