"""Manifest reader: a user's CSV/Parquet list of faces (files or an images.npy) in, a FaceSet out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import split_identities
from click.testing import CliRunner
from PIL import Image

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.manifest import read_manifest
from rbg.cli import cli

SHARED = Path("/work/shared/data")


def write_faces(folder: Path, rows: list[dict], hw=(12, 10)) -> pd.DataFrame:
    """Write one flat-gray PNG per row (level = 10 × row number + 5) under folder/img; return the table."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        row.setdefault("path", f"img/{i:03d}.png")
        size = row.pop("_hw", hw)
        Image.new("L", size[::-1], 10 * i + 5).save(folder / row["path"])
    return pd.DataFrame(rows)


def grid_rows(identities=("ann", "bob", "cy", "dee"), poses=("0", "30")) -> list[dict]:
    return [{"identity": who, "pose": pose, "note": "x"} for who in identities for pose in poses]


def test_csv_with_paths_keeps_rows_in_order_with_their_pixels_and_factors(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table.to_csv(tmp_path / "faces.csv", index=False)
    faces = read_manifest(tmp_path / "faces.csv", progress=False)
    assert len(faces) == 8 and faces.image_size == (12, 10)
    assert list(faces.faces["identity"]) == list(table["identity"])
    assert list(faces.faces["source"]) == list(table["path"])
    assert [int(faces.image(i)[0, 0]) for i in range(8)] == [10 * i + 5 for i in range(8)]
    assert faces.info.name == tmp_path.name


def test_numeric_poses_are_written_as_signed_degrees(tmp_path):
    rows = [{"identity": "a", "pose": p} for p in ("0", "30", "-15.0", "+45")]
    write_faces(tmp_path, rows).to_csv(tmp_path / "m.csv", index=False)
    faces = read_manifest(tmp_path / "m.csv", progress=False)
    assert faces.vocabulary("pose") == ("-15", "0", "+30", "+45")


def test_default_split_puts_seventy_percent_of_identities_by_first_appearance_in_train(tmp_path):
    ids = [f"p{i}" for i in (9, 3, 7, 1, 5, 0, 8, 2, 6, 4)]
    write_faces(tmp_path, grid_rows(ids, poses=("0",))).to_csv(tmp_path / "m.csv", index=False)
    faces = read_manifest(tmp_path / "m.csv", progress=False)
    assert faces.split("train").identities() == ids[:6]
    assert faces.split("val").identities() == [ids[6]]  # the last of the 7 train-side people
    assert faces.split("test").identities() == ids[7:]
    two_way = read_manifest(tmp_path / "m.csv", train_identities=2, val_identities=0, progress=False)
    assert two_way.split("train").identities() == ids[:2] and not two_way.has_split("val")
    three = read_manifest(tmp_path / "m.csv", train_identities=7, val_identities=3, progress=False)
    assert three.split("val").identities() == ids[4:7] and three.split("test").identities() == ids[7:]


def test_a_split_column_wins_over_train_identities_and_must_keep_identities_on_one_side(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table["split"] = ["test", "test", "train", "train", "val", "val", "train", "train"]
    table.to_csv(tmp_path / "m.csv", index=False)
    faces = read_manifest(tmp_path / "m.csv", train_identities=1, val_identities=0, progress=False)
    assert faces.split("train").identities() == ["bob", "dee"]
    assert faces.split("val").identities() == ["cy"] and faces.info.val_identities == ("cy",)
    table.loc[0, "split"] = "train"
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"m.csv: identity 'ann' is in two splits \(test, train; splits are by identity\)"):
        read_manifest(tmp_path / "m.csv", progress=False)
    table.loc[:, "split"] = "dev"
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="column 'split' holds 'dev' \\(valid: train, val, test\\)"):
        read_manifest(tmp_path / "m.csv", progress=False)


def test_extra_columns_are_kept_as_factors_after_the_canonical_ones(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table["session"] = ["A", "B"] * 4
    table.to_csv(tmp_path / "m.csv", index=False)
    faces = read_manifest(tmp_path / "m.csv", progress=False)
    assert faces.factors == ("pose", "note", "session")
    assert faces.vocabulary("session") == ("A", "B")
    assert faces.info.extra["ignored_columns"] == []
    faces.write(tmp_path / "fs")
    reopened = FaceSet.open(tmp_path / "fs")
    assert reopened.factors == ("pose", "note", "session")
    assert list(reopened.faces["session"]) == ["A", "B"] * 4


def test_factors_option_keeps_the_named_columns_and_lists_the_others_as_ignored(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table["session"] = ["A", "B"] * 4
    table.to_csv(tmp_path / "m.csv", index=False)
    faces = read_manifest(tmp_path / "m.csv", factors=["session", "pose"], progress=False)
    assert faces.factors == ("pose", "session")
    assert "note" not in faces.faces.columns
    assert faces.info.extra["ignored_columns"] == ["note"]
    with pytest.raises(DataError, match="factor 'tilt' is not a column"):
        read_manifest(tmp_path / "m.csv", factors=["tilt"], progress=False)
    with pytest.raises(DataError, match="'split' cannot be a factor"):
        read_manifest(tmp_path / "m.csv", factors=["split"], progress=False)


def test_images_option_reads_an_array_kept_elsewhere(tmp_path):
    pixels = np.arange(4 * 6 * 5, dtype=np.uint8).reshape(4, 6, 5)
    (tmp_path / "arrays").mkdir()
    np.save(tmp_path / "arrays" / "faces.npy", pixels)
    pd.DataFrame({"index": [3, 1], "identity": ["a", "b"], "pose": ["0", "30"]}).to_csv(tmp_path / "m.csv", index=False)
    faces = read_manifest(tmp_path / "m.csv", images=tmp_path / "arrays" / "faces.npy", progress=False)
    assert np.array_equal(faces.images, pixels[[3, 1]])
    assert list(faces.faces["source"]) == ["faces.npy[3]", "faces.npy[1]"]
    with pytest.raises(DataError, match="missing.npy: no such images file"):
        read_manifest(tmp_path / "m.csv", images=tmp_path / "missing.npy", progress=False)


def test_parquet_manifest_reads_paths_relative_to_its_folder(tmp_path):
    table = write_faces(tmp_path / "set", grid_rows())
    table["pose"] = table["pose"].astype(int)  # a typed column reads as text like the rest
    table.to_parquet(tmp_path / "set" / "faces.parquet", index=False)
    faces = read_manifest(tmp_path / "set" / "faces.parquet", name="mine", progress=False)
    assert len(faces) == 8 and faces.info.name == "mine"
    assert faces.vocabulary("pose") == ("0", "+30")


def test_images_npy_beside_the_manifest_with_an_index_column_picks_rows(tmp_path):
    images = (np.arange(6, dtype=np.uint8)[:, None, None] * 40 + np.zeros((6, 5, 4), np.uint8))
    np.save(tmp_path / "images.npy", images)
    pd.DataFrame({"index": [4, 0, 2], "identity": ["a", "b", "a"], "accessory": ["none", "hat", "hat"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    faces = read_manifest(tmp_path / "labels.csv", progress=False)
    assert [int(faces.image(i)[0, 0]) for i in range(3)] == [160, 0, 80]
    assert list(faces.faces["source"]) == ["images.npy[4]", "images.npy[0]", "images.npy[2]"]


def test_colour_images_npy_is_made_grayscale_and_resized_on_request(tmp_path):
    images = np.zeros((2, 8, 6, 3), np.uint8)
    images[0, ..., 0] = 255  # pure red → luma 76
    np.save(tmp_path / "images.npy", images)
    pd.DataFrame({"identity": ["a", "b"]}).to_csv(tmp_path / "labels.csv", index=False)
    faces = read_manifest(tmp_path / "labels.csv", size=(4, 3), progress=False)
    assert faces.image_size == (4, 3)
    assert int(faces.image(0)[2, 1]) == 76 and int(faces.image(1).max()) == 0


def test_images_npy_without_index_must_match_the_row_count(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((3, 4, 4), np.uint8))
    pd.DataFrame({"identity": ["a", "b"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match="2 rows but .*images.npy holds 3 images"):
        read_manifest(tmp_path / "labels.csv", progress=False)


def test_index_outside_or_repeated_is_a_data_error(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((3, 4, 4), np.uint8))
    pd.DataFrame({"index": [0, 3], "identity": ["a", "b"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"index 3 is outside images.npy \(0..2\)"):
        read_manifest(tmp_path / "labels.csv", progress=False)
    pd.DataFrame({"index": [1, 2, 1], "identity": ["a", "b", "c"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match="labels.csv: duplicate row 2: index 1 is listed twice"):
        read_manifest(tmp_path / "labels.csv", progress=False)


def test_duplicate_path_is_a_data_error(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table.loc[5, "path"] = "./img/../img/001.png"
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"m.csv: duplicate row 5: path './img/../img/001.png' is listed twice"):
        read_manifest(tmp_path / "m.csv", progress=False)


def test_missing_identity_column_or_cell_is_a_data_error_naming_it(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table.drop(columns="identity").to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"m.csv: no 'identity' column \(columns: pose, note, path\)"):
        read_manifest(tmp_path / "m.csv", progress=False)
    table.loc[3, "identity"] = ""
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"column 'identity' is empty at row 3 \(line 5\)"):
        read_manifest(tmp_path / "m.csv", progress=False)


def test_missing_or_corrupt_image_file_is_a_data_error_naming_it(tmp_path):
    table = write_faces(tmp_path, grid_rows())
    table.to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "img" / "006.png").unlink()
    with pytest.raises(DataError, match=r"img/006.png: no such image file"):
        read_manifest(tmp_path / "m.csv", progress=False)
    (tmp_path / "img" / "006.png").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match=r"img/006.png: unreadable or corrupt image"):
        read_manifest(tmp_path / "m.csv", progress=False)


def test_mixed_sizes_need_a_size_and_the_error_names_the_first_odd_file(tmp_path):
    rows = grid_rows()
    rows[2]["_hw"] = (20, 16)
    rows[5]["_hw"] = (20, 16)
    write_faces(tmp_path, rows).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"img/002.png: image is 20x16 \(HxW\) but .*img/000.png is 12x10"):
        read_manifest(tmp_path / "m.csv", progress=False)
    faces = read_manifest(tmp_path / "m.csv", size=8, progress=False)
    assert faces.image_size == (8, 8) and int(faces.image(2)[4, 4]) == 25


def test_a_file_that_is_not_a_manifest_is_refused(tmp_path):
    (tmp_path / "m.txt").write_text("identity\na\n")
    with pytest.raises(DataError, match=r"m.txt: a manifest is a .csv or .parquet file"):
        read_manifest(tmp_path / "m.txt", progress=False)
    with pytest.raises(DataError, match="no such manifest file"):
        read_manifest(tmp_path / "absent.csv", progress=False)
    (tmp_path / "e.csv").write_text("identity,path\n")
    with pytest.raises(DataError, match="e.csv: no rows"):
        read_manifest(tmp_path / "e.csv", progress=False)


@pytest.mark.skipif(not (SHARED / "cmu_faces" / "labels.csv").is_file(), reason="shared data absent")
def test_cmu_faces_import_with_20_people_4_poses_and_sunglasses():
    faces = read_manifest(SHARED / "cmu_faces" / "labels.csv", progress=False)
    assert len(faces) == 624 and faces.num_identities == 20 and faces.image_size == (60, 64)
    assert faces.vocabulary("pose") == ("forward", "left", "right", "up")
    assert faces.vocabulary("accessory") == ("none", "sunglasses")
    assert len(faces.vocabulary("expression")) == 4
    assert faces.split("train").num_identities == 13 and faces.split("val").num_identities == 1
    assert faces.split("test").num_identities == 6
    raw = np.load(SHARED / "cmu_faces" / "images.npy", mmap_mode="r")
    labels = pd.read_csv(SHARED / "cmu_faces" / "labels.csv")
    assert np.array_equal(faces.images, raw[labels["index"].to_numpy()])


@pytest.mark.skipif(not (SHARED / "extended_yaleb" / "labels.csv").is_file(), reason="shared data absent")
def test_extended_yale_b_imports_with_its_64_illuminations():
    faces = read_manifest(SHARED / "extended_yaleb" / "labels.csv", progress=False)
    assert len(faces) == 2414 and faces.num_identities == 38
    assert len(faces.vocabulary("illumination")) == 64
    assert faces.factors == ("illumination", "light_azimuth", "light_elevation")
    only = read_manifest(SHARED / "extended_yaleb" / "labels.csv", factors=["illumination"], progress=False)
    assert only.factors == ("illumination",)
    assert only.info.extra["ignored_columns"] == ["light_azimuth", "light_elevation"]


def test_cli_import_manifest_writes_and_prints_counts(tmp_path):
    write_faces(tmp_path, grid_rows()).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "manifest", str(tmp_path / "m.csv"), "--out", str(out),
                                      "--size", "6x5", "--name", "mine", "--train-identities", "3"])
    assert result.exit_code == 0, result.output
    assert "8 images of 6×5, 4 identities" in result.stdout
    assert split_identities(result.stdout) == {"train": 2, "val": 1, "test": 1}
    assert "0: 4, +30: 4" in result.stdout
    written = FaceSet.open(out)
    assert written.info.name == "mine" and written.image_size == (6, 5) and written.info.val_identities == ("cy",)
    result = CliRunner().invoke(cli, ["data", "import", "manifest", str(tmp_path / "m.csv"), "--out", str(out), "--force",
                                      "--size", "6x5", "--train-identities", "3", "--val-identities", "0"])
    assert result.exit_code == 0, result.output
    assert split_identities(result.stdout) == {"train": 3, "test": 1} and not FaceSet.open(out).has_split("val")


@pytest.mark.parametrize("args, message", [
    (["--size", "big"], "size 'big': expected N or HxW"),
    ([], "no 'identity' column"),
])
def test_cli_bad_manifest_input_exits_2_with_one_error_line_and_writes_nothing(tmp_path, args, message):
    table = write_faces(tmp_path, grid_rows())
    table.drop(columns="identity" if not args else []).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "manifest", str(tmp_path / "m.csv"), "--out", str(out), *args])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output
    assert not out.exists()
