"""The paper's pair lists (§4.1): ordered (source, target) of one identity that differ in the edited
factor only, so a network learns to change that factor and keep everything else."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from facedata.combined import edited_factors, with_factor
from facedata.errors import DataError
from facedata.faceset import FaceSet


def make_pairs(faces: FaceSet, edit: str, source_values: tuple[str, ...] | None = None,
               target_values: tuple[str, ...] | None = None, match: Sequence[str] | None = None) -> np.ndarray:
    """All ordered pairs (source, target) of this view, as positions: (P, 2) int64.

    Two rows pair when they share the identity and every other factor present, and differ in
    `edit`. With Multi-PIE's protocol that is identities × illuminations × P(7, 2) pairs.
    `source_values`/`target_values` restrict the edited factor on either side (e.g. the completion
    task pairs occluded="yes" sources with occluded="no" targets). `match` names the factors a pair
    must share (default: every factor but `edit`); the others may differ, e.g. KDEF's two sessions.
    A combined `edit` ("pose+accessory") pairs faces that differ in at least one of its factors.
    """
    if any(part not in faces.factors for part in edited_factors(edit)):
        raise DataError(f"{faces.info.name}: cannot pair on '{edit}': not a factor (present: {', '.join(faces.factors)})")
    keys = ["identity"] + pair_match_factors(faces, edit, match)
    faces = with_factor(faces, edit)
    table = faces.faces[keys + [edit]].reset_index(drop=True)
    table["position"] = np.arange(len(table), dtype=np.int64)
    src = table if source_values is None else table[table[edit].isin(source_values)]
    tgt = table if target_values is None else table[table[edit].isin(target_values)]
    joined = pd.merge(src, tgt, on=keys, suffixes=("_src", "_tgt"))
    joined = joined[joined[f"{edit}_src"] != joined[f"{edit}_tgt"]]
    pairs = joined[["position_src", "position_tgt"]].to_numpy(dtype=np.int64)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order]


def pair_match_factors(faces: FaceSet, edit: str, match: Sequence[str] | None) -> list[str]:
    """The factors both faces of a pair share: `match` checked against the FaceSet, or all but the edited ones."""
    edited = (edit, *edited_factors(edit))
    if match is None:
        return [f for f in faces.factors if f not in edited]
    unknown = [f for f in match if f not in faces.factors]
    if unknown:
        raise DataError(f"{faces.info.name}: pair match factor '{unknown[0]}' is not a factor "
                        f"(factors: {', '.join(faces.factors)})")
    shared = [f for f in match if f in edited]
    if shared:
        raise DataError(f"{faces.info.name}: a pair cannot match on '{shared[0]}', a factor it edits")
    return [f for f in faces.factors if f in match]


def expected_pair_count(identities: int, conditions: int, values: int) -> int:
    """identities × other-factor conditions × P(values, 2): the count a complete grid must give."""
    return identities * conditions * values * (values - 1)
