"""CAS-PEAL-R1 reader: accessory file names in, the paper's 7-class accessory FaceSet out (§4.2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fakes import split_identities
from click.testing import CliRunner
from PIL import Image

from facedata.caspeal import CASPEAL_ACCESSORY_VALUES, read_caspeal
from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.imageio import EyesTemplate, align_on_eyes
from facedata.pairs import expected_pair_count, make_pairs
from rbg.cli import cli

FRAME = (48, 36)  # (H, W), the 480×360 frames scaled down by 10
PEOPLE = ("000064", "000101", "000230", "000007")


def name(person: str, code: str, prefix: str = "MY") -> str:
    return f"{prefix}_{person}_IEU+00_PM+00_EN_{code}_D0_T0_BB_M0_R1_S0.tif"


def build_tree(root: Path, people=PEOPLE, extra_normal=("000999",)) -> Path:
    """FRONTAL/Accessory (A1–A6 per person) and FRONTAL/Normal (A0), flat grays encoding (person, class)."""
    for p, person in enumerate(people):
        for a in range(7):
            folder = root / ("Normal" if a == 0 else "Accessory")
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("L", FRAME[::-1], 30 + 40 * p + 3 * a).save(folder / name(person, f"A{a}"))
    for person in extra_normal:  # someone photographed for the Normal subset only
        Image.new("L", FRAME[::-1], 7).save(root / "Normal" / name(person, "A0", prefix="FY"))
    return root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "FRONTAL")


def read(tree: Path, **kwargs) -> FaceSet:
    kwargs.setdefault("train_identities", 3)
    return read_caspeal([tree / "Accessory", tree / "Normal"], size=8, progress=False, **kwargs)


def test_accessory_codes_become_the_seven_classes(tree):
    faces = read(tree)
    assert faces.vocabulary("accessory") == ("none", "hat1", "hat2", "hat3", "glasses1", "glasses2", "glasses3")
    by_source = dict(zip(faces.faces["source"], faces.faces["accessory"]))
    assert by_source["Accessory/" + name("000064", "A1")] == "hat1"
    assert by_source["Accessory/" + name("000064", "A6")] == "glasses3"
    assert by_source["Normal/" + name("000064", "A0")] == "none"
    assert faces.faces.groupby("identity")["accessory"].nunique().eq(7).all()


def test_identity_is_person_id_and_first_ids_in_sorted_order_are_train(tree):
    faces = read(tree)
    assert faces.identities() == ["000007", "000064", "000101", "000230"]
    split = faces.faces.groupby("identity")["split"].agg(set).to_dict()
    assert split == {"000007": {"train"}, "000064": {"train"}, "000101": {"val"}, "000230": {"test"}}
    faces = read(tree, val_identities=2)
    assert faces.split("val").identities() == ["000064", "000101"] and faces.split("test").identities() == ["000230"]


def test_people_without_any_accessory_image_are_dropped_and_counted(tree):
    faces = read(tree)
    assert "000999" not in set(faces.faces["identity"])
    assert faces.info.extra["dropped_identities"] == 1
    assert len(faces) == 4 * 7


def test_pixels_are_their_own_file_and_pairs_cover_all_class_changes(tree):
    faces = read(tree)
    for i in range(len(faces)):
        row = faces.faces.iloc[i]
        expected = 30 + 40 * PEOPLE.index(row["identity"]) + 3 * CASPEAL_ACCESSORY_VALUES.index(row["accessory"])
        assert np.abs(faces.image(i).astype(int) - expected).max() <= 1
    assert len(make_pairs(read(tree, val_identities=0).split("train"), "accessory")) == expected_pair_count(3, 1, 7)


def test_accessory_folder_alone_has_six_classes_and_says_which_is_missing(tree):
    faces = read_caspeal(tree / "Accessory", size=8, train_identities=2, progress=False)
    assert set(faces.faces["accessory"]) == set(CASPEAL_ACCESSORY_VALUES) - {"none"}
    assert faces.info.extra["missing_classes"] == ["none"]


def test_unknown_accessory_code_is_a_data_error_naming_the_file(tree):
    Image.new("L", FRAME[::-1]).save(tree / "Accessory" / name("000064", "A7"))
    with pytest.raises(DataError, match=r"MY_000064_IEU\+00_PM\+00_EN_A7_D0_T0_BB_M0_R1_S0\.tif: unknown accessory code A7"):
        read(tree)


def test_a_file_name_that_is_not_cas_peal_is_a_data_error(tree):
    Image.new("L", FRAME[::-1]).save(tree / "Accessory" / "portrait.tif")
    with pytest.raises(DataError, match=r"portrait\.tif: not a CAS-PEAL file name"):
        read(tree)


def test_corrupt_tif_is_a_data_error_naming_it(tree):
    (tree / "Accessory" / name("000101", "A2")).write_bytes(b"II*\x00 garbage")
    with pytest.raises(DataError, match=r"MY_000101_.*_A2_.*\.tif: unreadable or corrupt image"):
        read(tree)


def test_the_same_image_given_twice_is_refused(tree):
    with pytest.raises(DataError, match="the same image as"):
        read_caspeal([tree, tree / "Normal"], size=8, progress=False)


def test_missing_or_empty_folders_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_caspeal(tmp_path / "absent", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files found"):
        read_caspeal(tmp_path / "empty", progress=False)


def test_eye_alignment_puts_both_eyes_at_the_template_whatever_their_order():
    frame = np.zeros((120, 100), dtype=np.uint8)
    eyes = [(62.0, 52.0), (30.0, 44.0)]  # right eye listed first, head tilted
    for x, y in eyes:
        frame[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    out = align_on_eyes(frame, eyes[0], eyes[1], 40)
    ys, xs = np.nonzero(out > 60)
    left, right = xs < 20, xs >= 20
    found = [np.array([np.average(xs[m], weights=out[ys[m], xs[m]]), np.average(ys[m], weights=out[ys[m], xs[m]])]) for m in (left, right)]
    template = EyesTemplate()
    assert np.allclose(found[0] + 0.5, np.array(template.left) * 40, atol=1.0)
    assert np.allclose(found[1] + 0.5, np.array(template.right) * 40, atol=1.0)


def test_eye_file_aligns_each_image_and_a_missing_entry_names_the_file(tmp_path, tree):
    images = sorted((tree / "Accessory").glob("*.tif")) + sorted((tree / "Normal").glob("*.tif"))
    lines = [f"{p.stem} 12 22 24 22" for p in images]
    lines[0] = f"{images[0].name} 300 22 312 22"  # with extension, and far outside the frame: a black face
    eye_file = tmp_path / "FaceFP_2.txt"
    eye_file.write_text("\n".join(lines) + "\n")
    faces = read(tree, eyes=eye_file)
    sources = list(faces.faces["source"])
    assert faces.image(sources.index("Accessory/" + images[0].name)).max() == 0
    assert faces.image(sources.index("Accessory/" + images[1].name)).min() > 0
    eye_file.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=rf"{re.escape(images[0].name)}: no eye coordinates for it in .*FaceFP_2\.txt"):
        read(tree, eyes=eye_file)


def test_malformed_eye_file_line_is_refused_with_its_line_number(tmp_path, tree):
    eye_file = tmp_path / "FaceFP_2.txt"
    eye_file.write_text("a 1 2 3 4\nb 1 2 x 4\n")
    with pytest.raises(DataError, match=r"FaceFP_2\.txt:2: eye coordinates must be numbers"):
        read(tree, eyes=eye_file)


def test_cli_import_caspeal_takes_several_folders_and_prints_counts(tmp_path, tree):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "caspeal", str(tree / "Accessory"), str(tree / "Normal"),
                                      "--out", str(out), "--size", "8", "--train-identities", "3"])
    assert result.exit_code == 0, result.output
    assert "28 images of 8×8, 4 identities" in result.stdout
    assert split_identities(result.stdout) == {"train": 2, "val": 1, "test": 1}
    assert "none: 4, hat1: 4," in result.stdout
    assert "dropped: 1 identities" in result.stdout
    assert len(FaceSet.open(out)) == 28


def test_cli_unknown_accessory_code_exits_2_with_one_error_line_and_writes_nothing(tmp_path, tree):
    Image.new("L", FRAME[::-1]).save(tree / "Accessory" / name("000230", "A9"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "caspeal", str(tree), "--out", str(out)])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "unknown accessory code A9 (valid: A0..A6)" in errors[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_train_count_not_below_the_people_count_is_refused(tree):
    with pytest.raises(DataError, match="4 people found; cannot put 350 of them in train"):
        read(tree, train_identities=350)
    with pytest.raises(DataError, match="cannot hold out 3 of the 3 train people for validation"):
        read(tree, val_identities=3)
