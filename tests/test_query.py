"""Queries end to end on a tiny gallery: what is found, the result table, query images, batch CSVs, the grid."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import POSES, SIZE, FakeGenerator, face, tiny_gallery
from PIL import Image

from facedata.errors import DataError, UserError
from facedata.faceset import FaceSet
from index.faiss_index import build_index
from retrieval.figures import (
    GREEN,
    GREY,
    RED,
    GridStyle,
    draw_query_grid,
    write_query_grid,
)
from retrieval.search import edit_target
from retrieval.query import (
    QueryImage,
    QueryImageWarning,
    keep_ranks,
    load_query_image,
    open_gallery,
    query_csv,
    query_images,
    read_query_csv,
    retrieved_images,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 3-identity × 7-pose × 2-light marker gallery on disk and its index built by the exact fake generator."""
    root = tmp_path_factory.mktemp("query")
    tiny_gallery().write(root / "gallery")
    gallery = FaceSet.open(root / "gallery")
    index = build_index(FakeGenerator(), gallery, root / "index", batch_size=16, progress=False)
    return root, gallery, index


def query(identity: int, pose: str, light: int = 0) -> QueryImage:
    return QueryImage(label=f"id{identity}-{pose}", image=face(identity, POSES.index(pose), light), truth={})


def test_a_query_generated_in_the_target_pose_finds_that_person_in_that_pose_first(built):
    _, _, index = built
    result = query_images(FakeGenerator(), index, [query(1, "0", light=1), query(2, "-45")], ["+30", "0"], k=3)
    top = result.table[result.table["rank"] == 1]
    assert top["identity"].tolist() == ["id01", "id02"]
    assert top["pose"].tolist() == ["+30", "0"]
    assert top["illumination"].tolist() == ["01", "00"]
    assert top["distance"].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_the_result_table_has_one_row_per_query_and_rank_with_distances_ascending(built):
    _, _, index = built
    result = query_images(FakeGenerator(), index, [query(0, "0"), query(1, "+15")], "-15", k=4)
    table = result.table
    assert len(table) == 8
    assert table["query"].tolist() == [0] * 4 + [1] * 4 and table["rank"].tolist() == [1, 2, 3, 4] * 2
    for _, rows in table.groupby("query"):
        assert np.all(np.diff(rows["distance"].to_numpy()) >= 0)
    assert {"label", "target", "gallery_row", "image_row", "identity", "pose", "kept_pose", "source", "correct"} <= set(table.columns)
    assert result.generated.shape == (2, *SIZE) and result.generated.dtype == np.uint8
    np.testing.assert_array_equal(result.generated[0], face(0, POSES.index("-15")))


def test_targets_are_written_in_the_vocabulary_spelling(built):
    _, _, index = built
    assert query_images(FakeGenerator(), index, [query(0, "0")], "+30", k=1).targets == ("+30",)


def test_a_target_outside_the_vocabulary_is_refused_listing_the_valid_values(built):
    _, _, index = built
    with pytest.raises(UserError, match=r"unknown pose '\+60'.*-45, -30, -15, 0, \+15, \+30, \+45"):
        query_images(FakeGenerator(), index, [query(0, "0")], "+60", k=1)


def test_k_larger_than_the_gallery_is_refused_before_anything_is_generated(built):
    _, gallery, index = built
    generator = FakeGenerator()
    with pytest.raises(UserError, match=f"k={len(gallery) + 1} is out of range.*1 ≤ k ≤ {len(gallery)}"):
        query_images(generator, index, [query(0, "0")], "+30", k=len(gallery) + 1)
    assert generator.generated == 0


def test_an_index_built_by_another_model_is_refused(built):
    _, _, index = built
    with pytest.raises(UserError, match="built with model aaaaaaaaaaaa"):
        query_images(FakeGenerator(checkpoint_hash="e" * 64), index, [query(0, "0")], "+30", k=1)


def test_a_faceset_row_query_knows_its_truth_and_marks_each_found_face(built):
    root, gallery, index = built
    spec = f"{root / 'gallery'}:16"  # id01, pose "-30", light "00"
    image = load_query_image(spec, SIZE)
    assert image.truth["identity"] == "id01" and image.truth["pose"] == gallery.faces["pose"][16]
    np.testing.assert_array_equal(image.image, gallery.image(16))
    result = query_images(FakeGenerator(), index, [image], "-45", k=3)
    first = result.table.iloc[0]
    assert first["correct"] is np.True_ or first["correct"] == True  # noqa: E712 (a pandas nullable bool)
    assert result.table["correct"].notna().all()
    assert result.table["query_identity"].eq("id01").all()


def test_a_file_query_has_no_truth_so_correctness_is_unknown(built, tmp_path):
    _, _, index = built
    Image.fromarray(face(2, 3)).save(tmp_path / "q.png")
    result = query_images(FakeGenerator(), index, [load_query_image(str(tmp_path / "q.png"), SIZE)], "0", k=2)
    assert result.table["correct"].isna().all() and result.table["query_identity"].eq("").all()


def test_a_faceset_row_out_of_range_is_refused_with_the_valid_rows(built):
    root, gallery, _ = built
    with pytest.raises(DataError, match=f"row 999 is out of range.*0..{len(gallery) - 1}"):
        load_query_image(f"{root / 'gallery'}:999", SIZE)


def test_without_alignment_a_colour_image_of_another_size_is_converted_with_a_warning(tmp_path):
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "red.png")
    with pytest.warns(QueryImageWarning) as caught:
        image = load_query_image(str(tmp_path / "red.png"), SIZE, align=False)
    assert image.image.shape == SIZE and image.image.dtype == np.uint8
    messages = " ".join(str(w.message) for w in caught)
    assert "RGB image converted to grayscale" in messages and "20×40 image resized to the model's 6×16" in messages


def test_an_unreadable_image_file_is_refused_naming_it(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: unreadable or corrupt image"):
        load_query_image(str(tmp_path / "broken.png"), SIZE)
    with pytest.raises(DataError, match="missing.png: no such image file"):
        load_query_image(str(tmp_path / "missing.png"), SIZE)


def test_an_image_too_small_to_hold_a_face_is_refused(tmp_path):
    Image.new("L", (3, 3)).save(tmp_path / "dot.png")
    with pytest.raises(DataError, match="3×3 image is too small"):
        load_query_image(str(tmp_path / "dot.png"), (32, 32))


def test_the_target_option_must_name_the_edited_factor():
    assert edit_target(FakeGenerator(), pose="+30", accessory=None) == "+30"
    with pytest.raises(UserError, match=r"edits pose only: --accessory does not apply.*valid: -45"):
        edit_target(FakeGenerator(), pose=None, accessory="glasses")


def test_a_query_csv_needs_path_and_target_columns(tmp_path):
    (tmp_path / "q.csv").write_text("image,pose\na.png,+30\n")
    with pytest.raises(DataError, match=r"q.csv: no column 'path', 'target' \(columns: path, target\[, k\]"):
        read_query_csv(tmp_path / "q.csv")
    (tmp_path / "k.csv").write_text("path,target,k\na.png,+30,two\n")
    with pytest.raises(DataError, match="k.csv:2: k must be a positive integer, got 'two'"):
        read_query_csv(tmp_path / "k.csv")


def test_a_query_csv_takes_relative_paths_from_its_folder_and_each_lines_k(built, tmp_path):
    root, _, index = built
    Image.fromarray(face(0, 3)).save(tmp_path / "frontal.png")
    (tmp_path / "queries.csv").write_text(f"path,target,k\nfrontal.png,+45,2\n{root / 'gallery'}:0,0,\n")
    result = query_csv(FakeGenerator(), index, tmp_path / "queries.csv", k=5)
    assert result.table.groupby("query").size().tolist() == [2, 5]
    assert result.table["identity"].iloc[0] == "id00" and result.table["pose"].iloc[0] == "+45"
    assert result.labels == ("frontal.png", f"{root / 'gallery'}:0")


def test_keep_ranks_cuts_each_query_to_its_own_k(built):
    _, _, index = built
    result = query_images(FakeGenerator(), index, [query(0, "0"), query(1, "0")], "0", k=3)
    assert keep_ranks(result, [1, None]).table.groupby("query").size().tolist() == [1, 3]


def test_the_found_faces_pixels_come_from_the_gallery_the_index_records(built):
    _, gallery, index = built
    result = query_images(FakeGenerator(), index, [query(1, "0")], "+15", k=2)
    pixels = retrieved_images(result, open_gallery(index))
    assert pixels.shape == (1, 2, *SIZE)
    np.testing.assert_array_equal(pixels[0, 0], gallery.image(int(result.table["image_row"].iloc[0])))


def test_another_gallery_is_refused_as_the_index_pixel_source(built, tmp_path):
    _, _, index = built
    other = tiny_gallery()
    faces = other.faces.assign(identity=other.faces["identity"].to_numpy()[::-1])  # same pixels, other people
    FaceSet.from_arrays(other.images, faces, name="other", factors={"pose": POSES}).write(tmp_path / "other")
    with pytest.raises(UserError, match="identity values differ"):
        open_gallery(index, tmp_path / "other")


def test_the_grid_frames_correct_faces_green_wrong_ones_red_and_unknown_ones_grey(built, tmp_path):
    root, gallery, index = built
    style = GridStyle(cell=32, border=3)
    queries = [load_query_image(f"{root / 'gallery'}:16", SIZE), query(0, "0")]
    result = query_images(FakeGenerator(), index, queries, "-45", k=3)
    assert result.table["correct"].iloc[:3].tolist() == [True, True, False]  # id01 has two faces at -45
    pixels = retrieved_images(result, open_gallery(index))
    path = write_query_grid(result, pixels, tmp_path / "grid.png", style, title="test grid")
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[0] > 2 * 32 and picture.shape[1] > 5 * 32
    colours = {tuple(int(v) for v in c) for c in picture.reshape(-1, 3)}
    assert {GREEN, RED, GREY} <= colours


def test_the_grid_shows_at_most_max_rows_queries(built):
    _, _, index = built
    result = query_images(FakeGenerator(), index, [query(i % 3, "0") for i in range(5)], "0", k=1)
    pixels = retrieved_images(result, open_gallery(index))
    small = draw_query_grid(result, pixels, GridStyle(cell=16, max_rows=2))
    large = draw_query_grid(result, pixels, GridStyle(cell=16, max_rows=5))
    assert small.height < large.height and small.width == large.width
