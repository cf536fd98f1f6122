"""Splits by identity — train, val and test — and how many people each one gets.

Every importer and the renderer lay people out the same way, in the FaceSet's identity order: the
first `train_identities` people are the train side and the rest test; the last `val_identities` of
the train side are val (so `train_identities=50, val_identities=5` trains on people 0–44 and
validates on 45–49, and the test people do not move when val changes). Val is what choices are made
on (training validation, calibration, fusion weights); test is only for reporting.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from facedata.errors import DataError

SPLITS = ("train", "val", "test")
VAL_SHARE = 0.1  # the default val people: this share of the train side


def default_val_identities(train_identities: int) -> int:
    """About VAL_SHARE of the train-side people, halves rounded up: 0 below 2 people, else at least 1, never all.

    5 train-side people give 1 val, 15 give 2, 50 give 5, 100 give 10, 350 give 35.
    """
    if train_identities < 2:
        return 0
    return min(train_identities - 1, max(1, math.floor(VAL_SHARE * train_identities + 0.5)))


def split_of(position: int, train_identities: int, val_identities: int) -> str:
    """The split of the person at `position` in identity order: train, then the last val ones of the train side, then test."""
    if position >= train_identities:
        return "test"
    return "val" if position >= train_identities - val_identities else "train"


def check_split_sizes(where: str, people: int, train_identities: int, val_identities: int | None,
                      noun: str = "identities") -> int:
    """The val count (None: the default) for `train_identities` of `people` on the train side, after checking both.

    At least one person stays in train and one in test; val takes from 0 to all but one of the train side.
    """
    if not 0 < train_identities < people:
        raise DataError(f"{where}: {people} {noun} found; cannot put {train_identities} of them in train "
                        f"(give a train count from 1 to {people - 1})")
    val = default_val_identities(train_identities) if val_identities is None else val_identities
    if not 0 <= val < train_identities:
        raise DataError(f"{where}: cannot hold out {val} of the {train_identities} train {noun} for validation "
                        f"(give a val count from 0 to {train_identities - 1})")
    return val


def split_column(identities: pd.Series, order: Sequence[str], train_identities: int, val_identities: int) -> pd.Series:
    """Each row's split, from its identity's position in `order` (see `split_of`)."""
    split = {person: split_of(i, train_identities, val_identities) for i, person in enumerate(order)}
    return identities.map(split)


def check_splits(table: pd.DataFrame, where: str) -> None:
    """Every `split` value is train, val or test, and no identity is in two splits."""
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{where}: column 'split' holds '{bad[0]}' (valid: {', '.join(SPLITS)})")
    sides = table.groupby("identity", sort=False)["split"].unique()
    mixed = sides[sides.map(len) > 1]
    if len(mixed):
        raise DataError(f"{where}: identity '{mixed.index[0]}' is in two splits ({', '.join(sorted(mixed.iloc[0]))}; "
                        "splits are by identity)")


def val_people(table: pd.DataFrame) -> tuple[str, ...]:
    """The identities of the val split, in order of first appearance."""
    return tuple(pd.unique(table.loc[table["split"] == "val", "identity"]))
