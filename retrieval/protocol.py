"""The paper's retrieval protocol (§4.1.2): random (query image, target value) pairs over the test
identities, the whole test split as gallery, and recall@K under criteria 1 and 2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from facedata.errors import UserError
from facedata.faceset import FaceSet
from retrieval.metrics import (PAPER_KS, RecallReport, average_precision, correct_matrix, criterion_keys, evaluate_ranking,
                               relevant_counts)


@dataclass(frozen=True)
class QuerySet:
    """Queries as positions into the gallery view plus the wanted value of the edited factor."""

    positions: np.ndarray  # (q,) int64 rows of the gallery FaceSet used as query images
    targets: np.ndarray  # (q,) str target values, never the query's own value
    edit: str

    def __len__(self) -> int:
        return len(self.positions)

    def faces(self, gallery: FaceSet) -> pd.DataFrame:
        """The query images' rows of the gallery table, in query order."""
        return gallery.faces.iloc[self.positions].reset_index(drop=True)


def sample_queries(gallery: FaceSet, edit: str, count: int, seed: int = 0) -> QuerySet:
    """`count` random (image, target ≠ its value) queries, drawn uniformly with replacement, seeded.

    §4.1.2: "we randomly select 10000 query images and target poses from test data"; every target
    is drawn uniformly from the vocabulary values other than the image's own.
    """
    if count < 1:
        raise UserError(f"queries: need at least 1, got {count}")
    vocab = np.asarray(gallery.vocabulary(edit))
    if len(vocab) < 2:
        raise UserError(f"{gallery.info.name}: '{edit}' has a single value {list(vocab)}: nothing to edit")
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, len(gallery), size=count).astype(np.int64)
    own = gallery.codes(edit)[positions]
    shift = rng.integers(1, len(vocab), size=count)  # never 0: the target differs from the own value
    targets = vocab[(own + shift) % len(vocab)]
    return QuerySet(positions=positions, targets=targets.astype(str), edit=edit)


def score(ranked: np.ndarray, queries: QuerySet, gallery: FaceSet, criterion: int,
          ks=PAPER_KS, also: str | None = None) -> tuple[RecallReport, np.ndarray]:
    """recall@K of ranked gallery rows (q, w) under a criterion, and the (q, w) correctness matrix."""
    q_keys, g_keys = criterion_keys(queries.faces(gallery), queries.targets, gallery.faces.reset_index(drop=True),
                                    queries.edit, criterion, also=also)
    return evaluate_ranking(ranked, q_keys, g_keys, ks), correct_matrix(ranked, q_keys, g_keys)


def mean_average_precision(ranked: np.ndarray, queries: QuerySet, gallery: FaceSet, criterion: int,
                           also: str | None = None) -> float:
    """mAP of ranked gallery rows (q, w) under a criterion; rank the whole gallery (w = its size) for the exact figure."""
    q_keys, g_keys = criterion_keys(queries.faces(gallery), queries.targets, gallery.faces.reset_index(drop=True),
                                    queries.edit, criterion, also=also)
    return float(np.mean(average_precision(correct_matrix(ranked, q_keys, g_keys), relevant_counts(q_keys, g_keys))))
