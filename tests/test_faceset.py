"""FaceSet: the on-disk format and its API (open, validate, filter, split, iterate, atomic write)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facedata.errors import DataError
from facedata.faceset import (
    FACES_FILE,
    IMAGES_FILE,
    INFO_FILE,
    FaceSet,
    format_pose,
    pose_degrees,
)
from facedata.outputs import OutputError
from facedata.splits import default_val_identities


def small(identities=("b", "a", "c"), poses=("+30", "-15", "0")) -> FaceSet:
    """identities × poses × 2 lights; pixel value = row number, so views can be checked by their pixels."""
    rows = [(who, pose, light) for who in identities for pose in poses for light in ("l0", "l1")]
    faces = pd.DataFrame(rows, columns=["identity", "pose", "illumination"])
    images = np.broadcast_to(np.arange(len(faces), dtype=np.uint8)[:, None, None], (len(faces), 4, 3)).copy()
    return FaceSet.from_arrays(images, faces, name="small", provenance={"command": "test"})


def test_numeric_pose_vocabulary_is_sorted_by_angle_and_codes_follow_it():
    faces = small()
    assert faces.vocabulary("pose") == ("-15", "0", "+30")
    assert faces.codes("pose")[:6].tolist() == [2, 2, 0, 0, 1, 1]
    assert faces.factors == ("pose", "illumination")


def test_a_given_vocabulary_order_is_kept_as_the_one_hot_order():
    faces = FaceSet.from_arrays(np.zeros((2, 1, 1), np.uint8), pd.DataFrame({"identity": ["a", "a"], "accessory": ["none", "hat"]}),
                                name="x", factors={"accessory": ("none", "hat", "glasses")})
    assert faces.vocabulary("accessory") == ("none", "hat", "glasses")
    assert faces.codes("accessory").tolist() == [0, 1]


def test_pose_labels_are_signed_degrees():
    assert [format_pose(d) for d in (-45, 0, 15.0, 7.5)] == ["-45", "0", "+15", "+7.5"]
    assert pose_degrees("+30") == 30.0 and pose_degrees("left") is None


def test_write_then_open_round_trips_pixels_rows_and_info(tmp_path):
    faces = small().with_split_by_identity(2)
    faces.write(tmp_path / "fs")
    back = FaceSet.open(tmp_path / "fs")
    assert isinstance(back.images, np.memmap)
    assert np.array_equal(back.images, faces.images)
    pd.testing.assert_frame_equal(back.faces, faces.faces.reset_index(drop=True))
    assert back.info.factors == faces.info.factors and back.info.provenance == {"command": "test"}
    assert back.image_size == (4, 3) and back.info.count == 18
    assert back.info.val_identities == faces.info.val_identities == ("a",)


def test_filter_keeps_matching_rows_and_their_pixels(tmp_path):
    faces = small()
    view = faces.filter(pose="0", identity=["a", "c"])
    assert len(view) == 4 and set(view.faces["pose"]) == {"0"}
    assert view.images[:, 0, 0].tolist() == view.rows.tolist()  # pixels follow the rows
    assert [int(view.image(i)[0, 0]) for i in range(4)] == view.rows.tolist()
    view.write(tmp_path / "view")
    back = FaceSet.open(tmp_path / "view")
    assert len(back) == 4 and back.images[:, 0, 0].tolist() == view.rows.tolist()


def test_filter_on_an_unknown_value_lists_the_valid_ones_and_an_empty_result_is_an_error():
    faces = small()
    with pytest.raises(DataError, match=r"pose=\+45 is not a known value \(valid: -15, 0, \+30\)"):
        faces.filter(pose="+45")
    with pytest.raises(DataError, match="no column 'accessory'"):
        faces.filter(accessory="none")
    with pytest.raises(DataError, match="no faces left after filter"):
        faces.filter(identity="a", pose="0").filter(pose="+30")


def test_split_by_identity_takes_first_identities_by_appearance():
    faces = small().with_split_by_identity(2, val_identities=0)
    assert faces.split("train").identities() == ["b", "a"]
    assert faces.split("test").identities() == ["c"]
    assert not faces.has_split("val") and faces.info.val_identities == ()
    with pytest.raises(DataError, match="3 identities found; cannot put 3 of them in train"):
        small().with_split_by_identity(3)
    with pytest.raises(DataError, match="no faces left after split=test"):
        small().split("test")  # everything is train by default


def people(count: int) -> FaceSet:
    return small(identities=tuple(f"p{i}" for i in range(count)))


def test_val_people_are_the_last_of_the_train_side_and_the_test_people_do_not_move():
    faces = people(10).with_split_by_identity(8, val_identities=2)
    assert faces.split("train").identities() == [f"p{i}" for i in range(6)]
    assert faces.split("val").identities() == ["p6", "p7"]
    assert faces.split("test").identities() == ["p8", "p9"]
    assert faces.info.val_identities == ("p6", "p7")
    two_way = people(10).with_split_by_identity(8, val_identities=0)
    assert two_way.split("test").identities() == ["p8", "p9"] and len(two_way.split("train").identities()) == 8


def test_every_identity_is_in_exactly_one_of_train_val_and_test():
    faces = people(30).with_split_by_identity(25)
    splits = faces.faces.groupby("identity")["split"].nunique()
    assert (splits == 1).all()
    assert set(faces.faces["split"]) == {"train", "val", "test"}
    assert sum(faces.split(s).num_identities for s in ("train", "val", "test")) == 30


def test_the_default_val_split_is_about_a_tenth_of_the_train_people_and_never_all_of_them():
    assert [default_val_identities(n) for n in (0, 1, 2, 9, 14, 15, 24, 50, 100, 350)] == [0, 0, 1, 1, 1, 2, 2, 5, 10, 35]
    assert people(120).with_split_by_identity(100).split("val").num_identities == 10
    assert people(3).with_split_by_identity(1).has_split("val") is False  # one train person stays train
    with pytest.raises(DataError, match="cannot hold out 2 of the 2 train identities for validation "
                                        r"\(give a val count from 0 to 1\)"):
        people(3).with_split_by_identity(2, val_identities=2)


def test_iter_batches_streams_every_row_in_order():
    faces = small().filter(illumination="l1")
    seen = []
    for images, rows in faces.iter_batches(4):
        assert images.shape[1:] == (4, 3) and len(images) == len(rows) <= 4
        seen += images[:, 0, 0].tolist()
    assert seen == faces.rows.tolist()


def test_the_fingerprint_follows_images_and_labels_not_the_folder_name_or_provenance(tmp_path):
    faces = small()
    written = FaceSet.open(faces.write(tmp_path / "a"))
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    renamed = FaceSet.open(faces.write(tmp_path / "b", name="other", provenance={"command": "again"}))
    assert faces.fingerprint() == written.fingerprint() == FaceSet.open(tmp_path / "copy").fingerprint() == renamed.fingerprint()
    assert written.filter(pose="0").fingerprint() == FaceSet.open(written.filter(pose="0").write(tmp_path / "c")).fingerprint()
    pixels = faces.images.copy()
    pixels[5, 1, 2] += 1
    relabelled = faces.faces.assign(identity=faces.faces["identity"].to_numpy()[::-1])
    assert FaceSet.from_arrays(pixels, faces.faces, name="small").fingerprint() != faces.fingerprint()
    assert FaceSet.from_arrays(faces.images, relabelled, name="small").fingerprint() != faces.fingerprint()
    assert written.take(range(len(written) - 1)).fingerprint() != written.fingerprint()
    assert written.take(range(len(written))[::-1]).fingerprint() != written.fingerprint()


def test_a_failed_write_leaves_nothing_new_and_keeps_the_old_folder(tmp_path, monkeypatch):
    small().write(tmp_path / "fs")
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OutputError, match="disk full"):
        small().filter(pose="0").write(tmp_path / "fs")
    with pytest.raises(OutputError, match="disk full"):
        small().write(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert len(FaceSet.open(tmp_path / "fs")) == 18


@pytest.fixture()
def written(tmp_path: Path) -> Path:
    return small().write(tmp_path / "fs")


def test_open_refuses_a_missing_folder_or_file(tmp_path, written):
    with pytest.raises(DataError, match="no such FaceSet folder"):
        FaceSet.open(tmp_path / "absent")
    (written / FACES_FILE).unlink()
    with pytest.raises(DataError, match=r"faces.parquet: missing"):
        FaceSet.open(written)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / INFO_FILE).write_text("{not json"), r"faceset.json: unreadable JSON"),
    (lambda d: (d / INFO_FILE).write_text('{"name": "x"}'), r"faceset.json: not a valid faceset.json"),
    (lambda d: (d / INFO_FILE).write_text('{"name": "x", "image_size": [4, 3], "factors": [], "count": 18}'),
     r"faceset.json: not a valid faceset.json"),
    (lambda d: (d / IMAGES_FILE).write_bytes(b"garbage bytes"), r"images.npy: unreadable array"),
    (lambda d: (d / IMAGES_FILE).write_bytes((d / IMAGES_FILE).read_bytes()[:-20]), r"images.npy: unreadable array"),
    (lambda d: np.save(d / IMAGES_FILE, np.zeros((18, 4, 3), np.float32)), r"images.npy: expected uint8 \(N, H, W\)"),
    (lambda d: np.save(d / IMAGES_FILE, np.zeros((17, 4, 3), np.uint8)), r"faces.parquet: 18 rows for 17 images"),
    (lambda d: np.save(d / IMAGES_FILE, np.zeros((18, 5, 3), np.uint8)), r"faceset.json: says 18 images of \(4, 3\)"),
    (lambda d: (d / FACES_FILE).write_bytes(b"PAR1 garbage"), r"faces.parquet: unreadable parquet"),
    (lambda d: pd.read_parquet(d / FACES_FILE).drop(columns="identity").to_parquet(d / FACES_FILE),
     r"faces.parquet: no 'identity' column"),
    (lambda d: pd.read_parquet(d / FACES_FILE).assign(pose="+90").to_parquet(d / FACES_FILE),
     r"column 'pose' has values \['\+90'\] outside its vocabulary"),
    (lambda d: pd.read_parquet(d / FACES_FILE).drop(columns="pose").to_parquet(d / FACES_FILE),
     r"factor 'pose' is in the vocabulary but not a column"),
    (lambda d: pd.read_parquet(d / FACES_FILE).assign(identity=None).to_parquet(d / FACES_FILE),
     r"column 'identity' is empty at row 0"),
    (lambda d: pd.read_parquet(d / FACES_FILE).assign(split="dev").to_parquet(d / FACES_FILE),
     r"faces.parquet: column 'split' holds 'dev' \(valid: train, val, test\)"),
    (lambda d: pd.read_parquet(d / FACES_FILE).assign(split=["test"] + ["train"] * 17).to_parquet(d / FACES_FILE),
     r"faces.parquet: identity 'b' is in two splits \(test, train; splits are by identity\)"),
])
def test_open_refuses_corrupt_or_inconsistent_folders_naming_the_file(written, damage, message):
    damage(written)
    with pytest.raises(DataError, match=message):
        FaceSet.open(written)


def test_faceset_json_records_vocabularies_in_one_hot_order(written):
    record = json.loads((written / INFO_FILE).read_text())
    assert record["factors"] == {"pose": ["-15", "0", "+30"], "illumination": ["l0", "l1"]}
    assert record["count"] == 18 and record["image_size"] == [4, 3]


def test_faceset_json_records_the_val_people_of_the_view_written(tmp_path):
    faces = people(10).with_split_by_identity(8, val_identities=2)
    faces.write(tmp_path / "all")
    assert json.loads((tmp_path / "all" / INFO_FILE).read_text())["val_identities"] == ["p6", "p7"]
    faces.filter(identity=["p0", "p7"]).write(tmp_path / "part")
    assert FaceSet.open(tmp_path / "part").info.val_identities == ("p7",)
    faces.split("test").write(tmp_path / "test")
    assert json.loads((tmp_path / "test" / INFO_FILE).read_text())["val_identities"] == []


def test_a_faceset_written_before_val_existed_opens_with_no_val_split(tmp_path):
    small().with_split_by_identity(2, val_identities=0).write(tmp_path / "old")
    record = json.loads((tmp_path / "old" / INFO_FILE).read_text())
    del record["val_identities"]  # the format before val splits
    (tmp_path / "old" / INFO_FILE).write_text(json.dumps(record))
    old = FaceSet.open(tmp_path / "old")
    assert old.info.val_identities == () and not old.has_split("val")
    assert old.split("train").identities() == ["b", "a"] and old.split("test").identities() == ["c"]


def test_open_refuses_val_people_that_disagree_with_the_faces_table(tmp_path):
    people(10).with_split_by_identity(8, val_identities=2).write(tmp_path / "fs")
    record = json.loads((tmp_path / "fs" / INFO_FILE).read_text())
    (tmp_path / "fs" / INFO_FILE).write_text(json.dumps({**record, "val_identities": ["p7"]}))
    with pytest.raises(DataError, match=r"faceset.json: lists val identities \['p7'\] but faces.parquet has \['p6', 'p7'\]"):
        FaceSet.open(tmp_path / "fs")


def test_a_left_right_flip_mirrors_yaws_named_sides_and_light_azimuths_only():
    from facedata.faceset import mirror_value

    assert [mirror_value(v) for v in ("+45", "-30", "0", "left", "right", "up", "sunglasses")] == \
        ["-45", "+30", "0", "right", "left", "up", "sunglasses"]
    assert [mirror_value(v) for v in ("A+050E+20", "A-110E-20", "A+000E+90")] == ["A-050E+20", "A+110E-20", "A+000E+90"]
