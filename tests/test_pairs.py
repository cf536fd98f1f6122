"""Pair lists (§4.1): same identity, same everything else, a different value of the edited factor."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.pairs import expected_pair_count, make_pairs

POSES = ("-45", "-30", "-15", "0", "+15", "+30", "+45")


def faceset(faces: pd.DataFrame) -> FaceSet:
    """A FaceSet of 1×1 images over this table (pixels do not matter to pairs)."""
    return FaceSet.from_arrays(np.zeros((len(faces), 1, 1), np.uint8), faces, name="grid")


def grid(identities: int, illuminations: int, poses=POSES) -> FaceSet:
    """A complete identity × illumination × pose grid."""
    cells = list(itertools.product([f"id{i:03d}" for i in range(identities)],
                                   [f"{j:02d}" for j in range(illuminations)], poses))
    return faceset(pd.DataFrame(cells, columns=["identity", "illumination", "pose"]))


def crossed(faces: FaceSet, factor: str, values: tuple[str, ...]) -> FaceSet:
    """Every row of `faces` once per value of a new factor."""
    table = faces.faces.drop(columns=["split", "source"])
    return faceset(pd.concat([table.assign(**{factor: v}) for v in values], ignore_index=True))


def test_complete_grid_gives_identities_times_illuminations_times_p72():
    faces = grid(3, 2)
    assert len(make_pairs(faces, "pose")) == 3 * 2 * 42 == expected_pair_count(3, 2, 7)


def test_every_pair_shares_identity_and_other_factors_and_differs_in_the_edited_one():
    faces = grid(3, 2)
    pairs = make_pairs(faces, "pose")
    src, tgt = faces.faces.iloc[pairs[:, 0]], faces.faces.iloc[pairs[:, 1]]
    assert (src["identity"].to_numpy() == tgt["identity"].to_numpy()).all()
    assert (src["illumination"].to_numpy() == tgt["illumination"].to_numpy()).all()
    assert (src["pose"].to_numpy() != tgt["pose"].to_numpy()).all()
    assert len({tuple(p) for p in pairs}) == len(pairs)  # ordered pairs, each once


def test_pairs_are_ordered_both_ways():
    pairs = {tuple(p) for p in make_pairs(grid(1, 1), "pose")}
    assert all((b, a) in pairs for a, b in pairs)


def test_a_missing_cell_removes_its_pairs_as_source_and_as_target():
    faces = grid(3, 2)
    missing = faces.faces.query("identity == 'id001' and illumination == '01' and pose == '+15'").index
    partial = faces.where(~faces.faces.index.isin(missing), "drop a cell")
    assert len(make_pairs(partial, "pose")) == 3 * 2 * 42 - 2 * 6


def test_pairs_also_agree_on_every_other_factor_present():
    # Two accessory values on top of the grid: a pose pair must keep the accessory.
    faces = crossed(grid(2, 1), "accessory", ("none", "hat"))
    pairs = make_pairs(faces, "pose")
    assert len(pairs) == 2 * 1 * 2 * 42
    assert (faces.faces["accessory"].to_numpy()[pairs[:, 0]] == faces.faces["accessory"].to_numpy()[pairs[:, 1]]).all()


def test_source_and_target_values_restrict_each_side():
    faces = crossed(grid(2, 1, poses=("0",)), "occluded", ("yes", "no"))
    pairs = make_pairs(faces, "occluded", source_values=("yes",), target_values=("no",))
    assert len(pairs) == 2
    assert set(faces.faces["occluded"].to_numpy()[pairs[:, 0]]) == {"yes"}
    assert set(faces.faces["occluded"].to_numpy()[pairs[:, 1]]) == {"no"}


def test_splits_are_by_identity_and_pairs_stay_inside_a_split():
    faces = grid(6, 2).with_split_by_identity(4)
    train, val, test = faces.split("train"), faces.split("val"), faces.split("test")
    assert not set(train.identities()) & set(test.identities())
    assert train.identities() == ["id000", "id001", "id002"] and val.identities() == ["id003"]
    for view, count in ((train, 3), (val, 1), (test, 2)):
        pairs = make_pairs(view, "pose")
        assert len(pairs) == expected_pair_count(count, 2, 7)
        assert pairs.max() < len(view)  # positions within the view
        assert set(view.faces["identity"].iloc[pairs.ravel()]) <= set(view.identities())


def test_editing_a_factor_that_is_absent_is_a_data_error():
    with pytest.raises(DataError, match="cannot pair on 'accessory': not a factor"):
        make_pairs(grid(1, 1), "accessory")


def test_paper_preset_train_split_gives_84000_pose_pairs():
    # §4.1: 249 subjects × 7 poses × 20 lights, train = first 100 subjects → 100 × 20 × P(7,2) pairs.
    faces = grid(249, 20).with_split_by_identity(100, val_identities=0)
    assert len(faces) == 34_860
    assert len(faces.split("test")) == 20_860
    assert len(make_pairs(faces.split("train"), "pose")) == expected_pair_count(100, 20, 7) == 84_000


def test_pair_match_names_the_factors_a_pair_shares_and_lets_the_others_differ():
    base = crossed(grid(2, 1, poses=("0", "+30")), "session", ("A", "B"))
    faces = FaceSet.from_arrays(np.zeros((len(base), 1, 1), np.uint8), base.faces.drop(columns=["split", "source"]),
                                name="grid", extra_factors=("session",))
    assert faces.factors == ("pose", "illumination", "session")
    assert len(make_pairs(faces, "pose")) == 2 * 2 * 2  # identity × session × P(2, 2)
    loose = make_pairs(faces, "pose", match=("illumination",))
    assert len(loose) == 2 * 4 * 2  # per identity, 4 faces: each pairs with the 2 of the other pose
    table = faces.faces.reset_index(drop=True)
    assert (table["identity"].to_numpy()[loose[:, 0]] == table["identity"].to_numpy()[loose[:, 1]]).all()
    with pytest.raises(DataError, match="pair match factor 'tilt' is not a factor"):
        make_pairs(faces, "pose", match=("tilt",))
    with pytest.raises(DataError, match="cannot match on 'pose'"):
        make_pairs(faces, "pose", match=("pose",))
