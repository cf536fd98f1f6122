"""recall@K of ranked gallery rows under the paper's two criteria (§4.1.2), plus recall per query group.

A retrieved item is correct under criterion 1 when its identity is the query's and its value of the
edited factor is the query's target ("identity and target pose correct"); criterion 2 also asks for the
query's value of another factor (illumination; expression for sets without it). Everything here is a
plain function over numpy arrays: rankings come in as (q, w) gallery rows, padded with -1 where a
search returned fewer than w items; -1 is never correct.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from facedata.combined import edited_factors
from facedata.errors import UserError
from facedata.faceset import pose_degrees

PAPER_KS = (1, 5, 20)
# The factor criterion 2 keeps in place, in order of preference (§4.1.2 uses illumination; cmu_faces
# has no illumination and keeps the expression instead).
SECOND_CRITERION_FACTORS = ("illumination", "expression", "pose")


@dataclass(frozen=True)
class RecallReport:
    """recall@K per K (a share in [0, 1]), over how many queries, and how many had no correct item at all."""

    recall: dict[int, float]
    queries: int
    without_correct: int  # queries whose correct set in the gallery is empty: always misses
    effective_ks: dict[int, int]  # K → the K actually used (clamped to the ranking's width)

    def percent(self) -> dict[int, float]:
        """recall@K in percent, as the paper's tables print it."""
        return {k: 100.0 * v for k, v in self.recall.items()}

    def to_json(self) -> dict:
        record = asdict(self)
        record["recall"] = {str(k): v for k, v in self.recall.items()}
        record["effective_ks"] = {str(k): v for k, v in self.effective_ks.items()}
        return record


def match_keys(query_columns: Sequence[np.ndarray], gallery_columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Integer keys (q,) and (g,) such that a query key equals a gallery key iff every column pair agrees.

    Column i of the queries is compared with column i of the gallery (e.g. the query's identity with
    the gallery's identity, the query's target pose with the gallery's pose); values compare as strings.
    """
    assert len(query_columns) == len(gallery_columns) >= 1, (len(query_columns), len(gallery_columns))
    q = len(query_columns[0])
    g = len(gallery_columns[0])
    codes = []
    for qc, gc in zip(query_columns, gallery_columns):
        qc, gc = np.asarray(qc), np.asarray(gc)
        assert qc.shape == (q,) and gc.shape == (g,), (qc.shape, gc.shape)
        both = np.concatenate([qc.astype(str), gc.astype(str)])
        codes.append(pd.factorize(both)[0])
    stacked = np.stack(codes, axis=1)  # (q + g, columns)
    _, keys = np.unique(stacked, axis=0, return_inverse=True)
    keys = keys.reshape(-1).astype(np.int64)
    return keys[:q], keys[q:]


def default_criterion2(columns: Sequence[str], edit: str) -> tuple[str, ...]:
    """Criterion 2's default factor: the first of SECOND_CRITERION_FACTORS present besides the edited one
    (illumination, else expression, else pose), as a 1-tuple; () where the faces vary in nothing else,
    and criterion 2 is criterion 1 (e.g. relighting frontal faces)."""
    return tuple(f for f in SECOND_CRITERION_FACTORS if f in columns and f not in (edit, *edited_factors(edit)))[:1]


def criterion2_factors(also: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Criterion 2's factors from "expression", "expression,session" or a sequence; None stays None."""
    if also is None:
        return None
    names = also.split(",") if isinstance(also, str) else list(also)
    factors = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not factors:
        raise UserError(f"criterion 2: no factor named in {also!r}")
    return factors


def criterion2_label(also: str | Sequence[str]) -> str:
    """Criterion 2's factors for a report: "illumination", "expression and session"."""
    factors = criterion2_factors(also) if also else ()
    if not factors:
        return "no other factor"
    return factors[0] if len(factors) == 1 else ", ".join(factors[:-1]) + " and " + factors[-1]


def criterion_keys(
    queries: pd.DataFrame, targets: np.ndarray, gallery: pd.DataFrame, edit: str, criterion: int = 1,
    also: str | Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Match keys of queries (q,) and gallery rows (g,) under criterion 1 or 2 of §4.1.2.

    Criterion 1: same identity, gallery `edit` value == the query's target. Criterion 2: also the
    query's own value of every factor in `also` (one name, "a,b", or a sequence; default:
    illumination, else expression — see SECOND_CRITERION_FACTORS).
    """
    targets = np.asarray(targets)
    assert targets.shape == (len(queries),), (targets.shape, len(queries))
    if criterion not in (1, 2):
        raise UserError(f"criterion must be 1 or 2, got {criterion}")
    for name, table in (("queries", queries), ("gallery", gallery)):
        if "identity" not in table.columns:
            raise UserError(f"{name}: no 'identity' column to score against")
    if edit not in gallery.columns:
        raise UserError(f"gallery: no '{edit}' column to score the target against")
    q_cols = [queries["identity"].to_numpy(), targets]
    g_cols = [gallery["identity"].to_numpy(), gallery[edit].to_numpy()]
    if criterion == 2:
        factors = (criterion2_factors(also) if also else None) or default_criterion2(
            [c for c in queries.columns if c in gallery.columns], edit)
        for factor in factors:
            if factor == edit:
                raise UserError(f"criterion 2: '{factor}' is the edited factor; name another (e.g. expression)")
            if factor not in queries.columns or factor not in gallery.columns:
                raise UserError(f"criterion 2: factor '{factor}' is not a column of both queries and gallery")
            q_cols.append(queries[factor].to_numpy())
            g_cols.append(gallery[factor].to_numpy())
    return match_keys(q_cols, g_cols)


def correct_matrix(ranked: np.ndarray, query_keys: np.ndarray, gallery_keys: np.ndarray) -> np.ndarray:
    """Which ranked items are correct: (q, w) bool from ranked gallery rows (q, w) int, -1 = no item."""
    ranked = np.asarray(ranked)
    assert ranked.ndim == 2 and ranked.shape[0] == query_keys.shape[0], (ranked.shape, query_keys.shape)
    assert gallery_keys.ndim == 1 and ranked.max(initial=-1) < len(gallery_keys), (ranked.max(initial=-1), gallery_keys.shape)
    assert ranked.min(initial=-1) >= -1, ranked.min()
    present = ranked >= 0
    found = gallery_keys[np.where(present, ranked, 0)]  # (q, w)
    return present & (found == query_keys[:, None])


def relevant_counts(query_keys: np.ndarray, gallery_keys: np.ndarray) -> np.ndarray:
    """How many gallery rows are correct for each query: (q,) int64 (0 = the query cannot be answered)."""
    assert query_keys.ndim == 1 and gallery_keys.ndim == 1, (query_keys.shape, gallery_keys.shape)
    size = int(max(query_keys.max(initial=-1), gallery_keys.max(initial=-1))) + 1
    return np.bincount(gallery_keys, minlength=size)[query_keys].astype(np.int64)


def average_precision(correct: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Each query's average precision, (q,) float64: the precision at the rank of each of its `relevant` right
    gallery rows, averaged (a right row not in the ranking counts 0; a query with none scores 0).

    Where a small val set answers nearly every query right at rank 1, recall@1 ties many settings; the rank of
    every right face still tells them apart.
    """
    correct = np.asarray(correct, dtype=bool)
    relevant = np.asarray(relevant, dtype=np.int64)
    assert correct.ndim == 2 and relevant.shape == (correct.shape[0],), (correct.shape, relevant.shape)
    hits = np.cumsum(correct, axis=1)
    precision = np.where(correct, hits / np.arange(1, correct.shape[1] + 1)[None, :], 0.0)
    return np.where(relevant > 0, precision.sum(axis=1) / np.maximum(relevant, 1), 0.0)


def recall_at_k(correct: np.ndarray, ks: Sequence[int] = PAPER_KS, gallery_size: int | None = None) -> dict[int, float]:
    """recall@K = share of queries with ≥ 1 correct item among their top K, from a (q, w) bool matrix.

    K larger than the ranking's width w is clamped to w: a search cannot return more items than the
    gallery holds, so recall@K for K > gallery size is recall@(gallery size). When `gallery_size` is
    given, w must cover min(max K, gallery size), so a ranking cut too short fails loudly instead of
    being clamped silently.
    """
    correct = np.asarray(correct, dtype=bool)
    assert correct.ndim == 2, correct.shape
    assert all(int(k) >= 1 for k in ks), ks
    width = correct.shape[1]
    if gallery_size is not None:
        assert width >= min(max(ks), gallery_size), f"ranking width {width} < min(K={max(ks)}, gallery {gallery_size})"
    if correct.shape[0] == 0:
        return {int(k): 0.0 for k in ks}
    hit_rank = np.where(correct.any(axis=1), correct.argmax(axis=1), width)  # first correct position, (q,)
    return {int(k): float(np.mean(hit_rank < min(int(k), width))) for k in ks}


def evaluate_ranking(
    ranked: np.ndarray, query_keys: np.ndarray, gallery_keys: np.ndarray, ks: Sequence[int] = PAPER_KS,
) -> RecallReport:
    """recall@K of a ranking (q, w) against match keys, counting queries with no correct gallery item as misses."""
    correct = correct_matrix(ranked, query_keys, gallery_keys)
    counts = relevant_counts(query_keys, gallery_keys)
    width = correct.shape[1]
    return RecallReport(
        recall=recall_at_k(correct, ks, gallery_size=len(gallery_keys)),
        queries=int(correct.shape[0]),
        without_correct=int(np.sum(counts == 0)),
        effective_ks={int(k): min(int(k), width) for k in ks},
    )


def recall_by_group(correct: np.ndarray, groups: np.ndarray, k: int = 5) -> dict:
    """recall@k within each query group (Figure 6: groups = pose change in degrees): {group: (recall, queries)}."""
    correct = np.asarray(correct, dtype=bool)
    groups = np.asarray(groups)
    assert correct.ndim == 2 and groups.shape == (correct.shape[0],), (correct.shape, groups.shape)
    result = {}
    for group in np.unique(groups):
        members = groups == group
        value = group.item() if hasattr(group, "item") else group
        result[value] = (recall_at_k(correct[members], (k,))[k], int(members.sum()))
    return result


def pose_change(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """|target − source| yaw in degrees per query, (q,) float64, from pose labels like "-30" and "+15"."""
    source, target = np.asarray(source), np.asarray(target)
    assert source.shape == target.shape and source.ndim == 1, (source.shape, target.shape)
    degrees = {}
    for value in np.unique(np.concatenate([source, target])):
        angle = pose_degrees(str(value))
        if angle is None:
            raise UserError(f"pose change needs poses in degrees (like '-30', '+15'), got '{value}'")
        degrees[value] = angle
    lookup = np.vectorize(degrees.__getitem__, otypes=[np.float64])
    return np.abs(lookup(target) - lookup(source))


def recall_table_row(method: str, features: str, report: RecallReport) -> Mapping:
    """One row for retrieval.report_tables.recall_table: method, features, recall in percent per K."""
    return {"method": method, "features": features, "recall": report.percent()}
