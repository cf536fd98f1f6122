"""Contact sheets and summaries: laid out from whatever factors a FaceSet has, written atomically."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facedata.contact_sheet import (
    contact_sheet,
    factor_counts,
    layout,
    reference_values,
    summarize,
)
from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.outputs import OutputError


def real_like(height: int = 20, width: int = 16, drop: tuple[str, str, str] | None = None) -> FaceSet:
    """A cmu_faces-like set: named poses, sunglasses or not, non-square images, each pixel says its row."""
    rows = list(itertools.product(["an2i", "at33", "boland"], ["left", "right", "straight", "up"], ["none", "sunglasses"]))
    rows = [r for r in rows if r != drop]
    faces = pd.DataFrame(rows, columns=["identity", "pose", "accessory"])
    images = np.stack([np.full((height, width), i, np.uint8) for i in range(len(faces))])
    return FaceSet.from_arrays(images, faces, name="real-like")


def test_summary_counts_images_identities_splits_and_factor_values():
    text = summarize(real_like())
    assert "24 images of 20×16, 3 identities" in text
    assert "left: 6" in text and "sunglasses: 12" in text
    assert factor_counts(real_like())["pose"] == {"left": 6, "right": 6, "straight": 6, "up": 6}


def test_reference_prefers_hints_then_neutral_values():
    faceset = real_like()
    assert reference_values(faceset)["accessory"] == "none"
    hinted = FaceSet.from_arrays(faceset.images, faceset.faces, name="hinted", extra={"reference": {"pose": "up"}})
    assert reference_values(hinted)["pose"] == "up"


def test_layout_has_one_block_per_varying_factor_holding_the_others_fixed():
    faceset = real_like()
    blocks = layout(faceset, rows=2)
    assert [b.factor for b in blocks] == ["pose", "accessory"]
    pose_block = blocks[0]
    assert pose_block.columns == ("left", "right", "straight", "up")
    assert pose_block.identities == ("an2i", "boland")  # spread over the set: first and last
    shown = faceset.faces.iloc[pose_block.cells.ravel()]
    assert set(shown["accessory"]) == {"none"}
    assert list(shown["pose"]) == ["left", "right", "straight", "up"] * 2


def test_missing_combination_falls_back_to_the_closest_match_or_stays_blank():
    faceset = real_like(drop=("boland", "straight", "sunglasses"))
    accessory_block = layout(faceset, rows=3)[1]
    assert accessory_block.held == {"pose": "straight"}
    boland = faceset.faces.iloc[accessory_block.cells[2]]
    assert list(boland["accessory"]) == ["none", "sunglasses"]
    assert list(boland["pose"]) == ["straight", "left"]  # no straight face with sunglasses: the first other pose
    only_left = real_like()
    only_left = only_left.where((only_left.faces["identity"] != "at33") | (only_left.faces["pose"] == "left"))
    pose_block = layout(only_left, rows=3)[0]
    assert (pose_block.cells[1] >= 0).tolist() == [True, False, False, False]


def test_contact_sheet_writes_a_labelled_png_sized_from_the_layout(tmp_path):
    path = contact_sheet(real_like(), tmp_path / "sheet.png", rows=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L"
        width, height = image.size
    # 4 pose columns of 16·5 px upscaled cells; two blocks of 3 rows of 20·5 px cells
    assert width > 4 * 80 and height > 2 * 3 * 100
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]


def test_contact_sheet_upscales_small_faces_with_their_pixels_intact(tmp_path):
    faceset = real_like(height=8, width=8)
    path = contact_sheet(faceset, tmp_path / "sheet.png", rows=1)
    sheet = np.asarray(Image.open(path))
    block = layout(faceset, rows=1)[0]
    first_value = faceset.faces.index[block.cells[0, 0]]
    assert (sheet == first_value).sum() >= (8 * 12) ** 2  # an 8×8 face shown at 12× as one flat square


def test_a_failed_write_leaves_no_sheet_and_no_temporary(tmp_path, monkeypatch):
    def broken_save(self, fp, format=None, **params):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OutputError, match="disk full"):
        contact_sheet(real_like(), tmp_path / "sheet.png")
    assert list(tmp_path.iterdir()) == []


def test_a_set_where_nothing_varies_still_gets_a_sheet(tmp_path):
    faces = pd.DataFrame({"identity": ["a", "a", "b"]})
    faceset = FaceSet.from_arrays(np.zeros((3, 10, 10), np.uint8), faces, name="plain")
    blocks = layout(faceset, rows=4)
    assert len(blocks) == 1 and blocks[0].factor is None
    assert (blocks[0].cells >= 0).sum() == 3
    assert contact_sheet(faceset, tmp_path / "plain.png").is_file()


def test_zero_rows_is_refused():
    with pytest.raises(DataError, match="rows=0"):
        layout(real_like(), rows=0)
