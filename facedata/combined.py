"""Several factors edited as one: "pose+accessory" names the pair, "+30/sunglasses" one value of it.

A generator that edits several factors at once sees each row's value of every edited factor; the rest
of the system (pairs, codes, indexes, criteria) reads them as one derived factor column whose
vocabulary is every combination, in the order of the factors' own vocabularies (the last factor
varying fastest), so that a combined code is the mixed-radix number of the per-factor codes.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Sequence

import numpy as np

from facedata.errors import DataError
from facedata.faceset import FaceSet

FACTOR_JOIN = "+"  # "pose+accessory": the factors edited together
VALUE_JOIN = "/"  # "+30/sunglasses": one value of each, in the same order


def edited_factors(name: str) -> tuple[str, ...]:
    """The factors a (possibly combined) factor name edits: "pose+accessory" → ("pose", "accessory")."""
    return tuple(name.split(FACTOR_JOIN))


def combined_name(factors: Sequence[str]) -> str:
    """The name of several factors edited together: ("pose", "accessory") → "pose+accessory"."""
    return FACTOR_JOIN.join(factors)


def join_values(values: Sequence[str]) -> str:
    """One value per edited factor as the combined value: ("+30", "sunglasses") → "+30/sunglasses"."""
    return VALUE_JOIN.join(str(v) for v in values)


def split_value(value: str, count: int) -> tuple[str, ...] | None:
    """A combined value's per-factor parts, or None when it does not have `count` of them."""
    parts = tuple(str(value).split(VALUE_JOIN))
    return parts if len(parts) == count else None


def combined_vocabulary(vocabularies: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Every combination of the factors' values, the last factor varying fastest (mixed-radix order)."""
    return tuple(join_values(combo) for combo in itertools.product(*vocabularies))


def with_factor(faces: FaceSet, name: str) -> FaceSet:
    """`faces` with the factor `name` present: itself for a stored factor, else a view with the combined column added.

    The combined column holds each row's joined values and its vocabulary is combined_vocabulary of the
    parts'; a part that is not a factor of `faces` is a DataError naming the ones present.
    """
    parts = edited_factors(name)
    if len(parts) == 1 or name in faces.info.factors:
        return faces
    missing = [p for p in parts if p not in faces.info.factors]
    if missing:
        raise DataError(f"{faces.info.name}: cannot edit '{name}': '{missing[0]}' is not a factor "
                        f"(present: {', '.join(faces.factors)})")
    table = faces.faces.copy()
    columns = [table[p].astype(str).to_numpy() for p in parts]
    table[name] = [join_values(v) for v in zip(*columns)] if len(table) else np.zeros(0, dtype=object)
    vocabulary = combined_vocabulary([faces.info.factors[p] for p in parts])
    info = replace(faces.info, factors={**faces.info.factors, name: vocabulary})
    return FaceSet(faces._images, table, info, faces.root)
