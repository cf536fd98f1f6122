"""KDEF as distributed (AF01/AF01ANFL.JPG …): names parsed into pose, expression and session factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import split_identities
from click.testing import CliRunner
from PIL import Image

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.kdef import KDEF_CROP_CENTRE_Y, kdef_crop, parse_kdef_name, read_kdef
from rbg.cli import cli


def portrait(level: int, seed: int) -> Image.Image:
    """A 562×762 RGB portrait: a textured grey field (std well above a blank placeholder's)."""
    noise = np.random.default_rng(seed).integers(-40, 40, (762, 562, 1))
    return Image.fromarray(np.clip(level + noise, 0, 255).repeat(3, axis=2).astype(np.uint8))


def kdef_tree(root: Path, people=("F01", "F02", "M01"), angles=("FL", "S", "FR"), expressions=("NE", "HA"),
              blank: str | None = None) -> Path:
    """Write a small KDEF-like tree: one folder per session and person, one JPEG per expression × angle."""
    for p, person in enumerate(people):
        for session in ("A", "B"):
            folder = root / f"{session}{person}"
            folder.mkdir(parents=True, exist_ok=True)
            for e, expression in enumerate(expressions):
                for a, angle in enumerate(angles):
                    name = f"{session}{person}{expression}{angle}.JPG"
                    image = portrait(60 + 40 * p, seed=hash(name) % 2**32)
                    if name == blank:
                        image = Image.new("RGB", (562, 762))
                    image.save(folder / name, quality=95)
    (root / "README.txt").write_text("not an image")
    return root


def test_names_give_identity_session_expression_and_angle():
    assert parse_kdef_name(Path("AF01ANFL.JPG")) == ("F01", "A", "angry", "FL")
    assert parse_kdef_name(Path("bm35sus.jpg")) == ("M35", "B", "surprised", "S")
    assert parse_kdef_name(Path("AF01ANXX.JPG")) is None


def test_tree_reads_into_pose_expression_session_factors_split_by_person(tmp_path):
    faces = read_kdef(kdef_tree(tmp_path / "KDEF"), size=16, train_identities=2, progress=False)
    assert len(faces) == 3 * 2 * 2 * 3 and faces.image_size == (16, 16)
    assert faces.factors == ("pose", "expression", "session")
    assert faces.vocabulary("pose") == ("-90", "-45", "0", "+45", "+90")
    assert faces.identities() == ["F01", "F02", "M01"]
    assert faces.split("train").identities() == ["F01"] and faces.split("val").identities() == ["F02"]
    assert faces.split("test").identities() == ["M01"]
    two_way = read_kdef(kdef_tree(tmp_path / "KDEF"), size=8, train_identities=2, val_identities=0, progress=False)
    assert two_way.split("train").identities() == ["F01", "F02"] and not two_way.has_split("val")
    first = faces.faces.iloc[0]
    assert (first["identity"], first["session"], first["expression"], first["pose"]) == ("F01", "A", "happy", "-90")
    assert first["source"] == "AF01/AF01HAFL.JPG"


def test_blank_placeholders_are_skipped_and_counted(tmp_path):
    faces = read_kdef(kdef_tree(tmp_path / "KDEF", blank="BF02NEFR.JPG"), size=8, train_identities=2, progress=False)
    assert len(faces) == 35
    assert faces.info.extra["skipped_blank"] == ["BF02NEFR.JPG"]


def test_crop_is_the_full_width_square_around_the_head():
    frame = np.zeros((762, 562), np.uint8)
    top = KDEF_CROP_CENTRE_Y - 281
    frame[top : top + 562, :] = 200
    assert (kdef_crop(frame, (32, 32)) == 200).all()


def test_bad_trees_are_refused_with_the_folder_named(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_kdef(tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no KDEF images"):
        read_kdef(tmp_path / "empty", progress=False)
    with pytest.raises(DataError, match="3 people found; cannot put 3"):
        read_kdef(kdef_tree(tmp_path / "KDEF", expressions=("NE",)), train_identities=3, progress=False)
    with pytest.raises(DataError, match="cannot hold out 2 of the 2 train people for validation"):
        read_kdef(tmp_path / "KDEF", train_identities=2, val_identities=2, progress=False)


def test_cli_import_kdef_writes_the_faceset(tmp_path):
    root = kdef_tree(tmp_path / "KDEF", expressions=("NE",))
    result = CliRunner().invoke(cli, ["data", "import", "kdef", str(root), "--out", str(tmp_path / "out"),
                                      "--size", "8", "--train-identities", "2", "--val-identities", "0"])
    assert result.exit_code == 0, result.output
    assert "18 images of 8×8, 3 identities" in result.stdout
    assert split_identities(result.stdout) == {"train": 2, "test": 1}
    assert "A: 9, B: 9" in result.stdout
    assert FaceSet.open(tmp_path / "out").factors == ("pose", "expression", "session")
