"""`rbg index build` and `rbg query` on a tiny untrained model: outputs, files, and every bad input's one-line error."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import faiss
import pandas as pd
import pytest
from click.testing import CliRunner
from fakes import save_untrained
from PIL import Image
from test_training import tiny_faceset

from index.faiss_index import GalleryIndex
from rbg.cli import cli


def rbg(*args) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *fragments: str) -> bool:
    """A user error: exit 2, one `Error:` line naming the problem, no traceback."""
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return (result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output
            and all(f in errors[0] for f in fragments))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 16×16 untrained checkpoint, a 4-identity FaceSet (2 test identities, 28 test images) and its index."""
    root = tmp_path_factory.mktemp("cli_retrieval")
    model = save_untrained(root / "model")
    tiny_faceset(identities=4, test_identities=2).write(root / "faces")
    result = rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", root / "index",
                 "--batch-size", 10, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    return root, model, result.output


def copy_index(root, name: str, **changes) -> str:
    """A copy of the built index with index.json fields changed."""
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / "index", target)
    record = json.loads((target / "index.json").read_text())
    for key, value in changes.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    (target / "index.json").write_text(json.dumps(record))
    return str(target)


def test_index_build_defaults_to_the_settings_chosen_on_val_and_paper_restores_the_paper_s():
    from index.gallery_build import gallery_settings

    assert gallery_settings(None, None, None, paper=False) == ("all", "classifier", "cnn")
    assert gallery_settings(None, None, None, paper=True) == ("kept", "full", "logreg")
    assert gallery_settings("kept", None, None, paper=False) == ("kept", "classifier", "cnn")
    assert gallery_settings(None, "full", None, paper=False) == ("all", "full", "logreg")  # full fits no classifier
    assert gallery_settings(None, "classifier", None, paper=True) == ("kept", "classifier", "logreg")
    assert gallery_settings("all", None, "cnn", paper=True) == ("all", "full", "cnn")  # refused later: full has none
    text = rbg("index", "build", "--help").output
    for said in ("[default: all; --paper: kept]", "[default: classifier; --paper: full]", "[default: cnn; --paper: logreg]"):
        assert said in " ".join(text.split())


def test_index_build_reports_count_dimension_kept_pose_accuracy_and_speed(setup):
    root, _, output = setup
    assert "28 test images of tiny × 4096-d features of stage2.mid, factory Flat" in output
    assert "kept-pose accuracy" in output and "images/s" in output
    assert GalleryIndex.load(root / "index").info.count == 28
    assert not (root / ".index.build").exists()  # the feature cache is gone once the index is in place


def test_query_prints_rank_distance_identity_factors_source_and_writes_the_grid(setup, tmp_path):
    root, model, _ = setup
    result = rbg("query", "--index", root / "index", "--model", model, f"{root / 'faces'}:30", "--pose", "+30",
                 "-k", 3, "--out", tmp_path / "grid.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "(id02, pose -15) → pose +30: top 3 of 28 gallery faces" in lines[0]
    assert lines[1].split() == ["rank", "distance", "identity", "pose", "illumination", "source", "correct"]
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]
    assert Image.open(tmp_path / "grid.png").size[0] > 5 * 96


def test_query_finds_the_model_that_index_json_records(setup):
    root, model, _ = setup
    recorded = copy_index(root, "recorded", provenance={"model": str(model)})
    result = rbg("query", "--index", recorded, f"{root / 'faces'}:30", "--pose", "0", "-k", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    unrecorded = copy_index(root, "unrecorded", provenance={"model": ""})
    assert refused(rbg("query", "--index", unrecorded, f"{root / 'faces'}:30", "--pose", "0"), "records no model path", "--model")


def test_with_no_align_a_colour_image_of_another_size_is_converted_with_a_warning(setup, tmp_path):
    root, model, _ = setup
    Image.new("RGB", (40, 30), (90, 160, 20)).save(tmp_path / "face.jpg")
    result = rbg("query", "--index", root / "index", "--model", model, tmp_path / "face.jpg", "--pose", "-45", "-k", 1,
                 "--device", "cpu", "--no-align")
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.stderr and "resized to the model's 16×16" in result.stderr
    assert "correct" not in result.stdout  # nothing known about a file's identity


def test_batch_queries_write_a_results_csv_and_a_grid(setup, tmp_path):
    root, model, _ = setup
    (tmp_path / "queries.csv").write_text(f"path,target,k\n{root / 'faces'}:28,+15,2\n{root / 'faces'}:40,-45,\n")
    result = rbg("query", "--index", root / "index", "--model", model, "--batch", tmp_path / "queries.csv", "-k", 4,
                 "--out", tmp_path / "results.csv", "--grid", tmp_path / "grid.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "results.csv")
    assert table.groupby("query").size().tolist() == [2, 4]
    assert {"label", "target", "rank", "distance", "identity", "pose", "source", "correct"} <= set(table.columns)
    assert (tmp_path / "grid.png").is_file() and "% of the 2 queries of known identity" in result.output


@pytest.mark.parametrize("args, fragments", [
    (["--pose", "+60"], ["unknown pose '+60'", "-45, -30, -15, 0, +15, +30, +45"]),
    (["--accessory", "sunglasses"], ["edits pose only", "--accessory does not apply"]),
    (["--pose", "0", "-k", "29"], ["k=29 is out of range", "1 ≤ k ≤ 28"]),
    (["--pose", "0", "-k", "0"], ["k=0 is out of range"]),
    (["--pose", "0", "--out", "grid.gif"], ["grid.gif", ".png"]),
])
def test_bad_query_options_are_one_line_errors(setup, args, fragments):
    root, model, _ = setup
    result = rbg("query", "--index", root / "index", "--model", model, f"{root / 'faces'}:0", *args, "--device", "cpu")
    assert refused(result, *fragments), result.output


def test_an_unreadable_query_image_is_a_one_line_error(setup, tmp_path):
    root, model, _ = setup
    (tmp_path / "face.png").write_bytes(b"not an image")
    result = rbg("query", "--index", root / "index", "--model", model, tmp_path / "face.png", "--pose", "0")
    assert refused(result, "face.png: unreadable or corrupt image"), result.output


def test_an_index_built_by_another_model_is_refused(setup):
    root, model, _ = setup
    other = copy_index(root, "other-model", checkpoint_hash="f" * 64)
    result = rbg("query", "--index", other, "--model", model, f"{root / 'faces'}:0", "--pose", "0")
    assert refused(result, "built with model ffffffffffff", "rebuild the index"), result.output


def test_a_truncated_index_file_is_refused(setup):
    root, model, _ = setup
    damaged = copy_index(root, "truncated")
    data = (root / "truncated" / "index.faiss").read_bytes()
    (root / "truncated" / "index.faiss").write_bytes(data[: len(data) // 2])
    result = rbg("query", "--index", damaged, "--model", model, f"{root / 'faces'}:0", "--pose", "0")
    assert refused(result, "index.faiss: unreadable FAISS index, truncated or corrupt"), result.output


def test_an_empty_gallery_is_refused(setup):
    root, model, _ = setup
    built = GalleryIndex.load(root / "index")
    empty = GalleryIndex(faiss.IndexFlatL2(built.info.dimension), built.faces.iloc[:0], replace(built.info, count=0))
    empty.save(root / "empty")
    result = rbg("query", "--index", root / "empty", "--model", model, f"{root / 'faces'}:0", "--pose", "0")
    assert refused(result, "the gallery is empty"), result.output


def test_index_build_on_a_split_with_no_faces_is_refused(setup, tmp_path):
    root, model, _ = setup
    tiny_faceset(identities=2, test_identities=1).split("train").write(tmp_path / "train-only")
    result = rbg("index", "build", "--paper", "--model", model, "--data", tmp_path / "train-only", "--out", tmp_path / "idx")
    assert refused(result, "no faces left after split=test"), result.output
    assert not (tmp_path / "idx").exists()


def test_query_needs_exactly_one_of_image_and_batch(setup, tmp_path):
    root, model, _ = setup
    assert refused(rbg("query", "--index", root / "index", "--model", model, "--pose", "0"), "not both or neither")
    (tmp_path / "q.csv").write_text("path,target\nx.png,0\n")
    assert refused(rbg("query", "--index", root / "index", "--model", model, "--batch", tmp_path / "q.csv"), "--out RESULTS.csv")


@pytest.mark.parametrize("mode", ["classifier", "none"])
def test_a_cheap_normalization_saves_its_pose_classifier_and_queries_as_usual(setup, mode):
    root, model, _ = setup
    out = root / f"index-{mode}"
    result = rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", out, "--normalize", mode,
                 "--batch-size", 10, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"normalization {mode}" in result.output
    index = GalleryIndex.load(out)
    assert index.config.normalize == mode and index.pose_classifier is not None
    assert index.info.pose_classifier["fitted_on"] == "tiny" and index.info.pose_classifier["faces"] == 28
    found = rbg("query", "--index", out, f"{root / 'faces'}:0", "--pose", "+15", "-k", 3, "--device", "cpu")
    assert found.exit_code == 0, found.output


def test_an_index_keeps_a_cnn_pose_classifier_that_predicts_as_it_did_at_build(setup, tmp_path):
    root, model, _ = setup
    from facedata.faceset import FaceSet

    out = tmp_path / "index-cnn"
    result = rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", out, "--normalize", "classifier",
                 "--pose-classifier", "cnn", "--batch-size", 10, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    index = GalleryIndex.load(out)
    assert index.pose_classifier.config.model == "cnn" and index.info.pose_classifier["config"]["model"] == "cnn"
    images = FaceSet.open(root / "faces").images  # image_row: the position in images.npy
    kept = index.faces["kept_pose"].to_numpy().astype(str)  # the saved classifier's predictions, face by face
    assert (kept == index.pose_classifier.predict(images[index.faces["image_row"].to_numpy()])).all()
    found = rbg("query", "--index", out, f"{root / 'faces'}:0", "--pose", "+15", "-k", 3, "--device", "cpu")
    assert found.exit_code == 0, found.output


def test_a_cheap_normalization_without_labelled_train_faces_is_refused(setup, tmp_path):
    root, model, _ = setup
    from facedata.faceset import FaceSet

    test_only = FaceSet.open(root / "faces").split("test")
    test_only.write(tmp_path / "test-only")
    result = rbg("index", "build", "--paper", "--model", model, "--data", tmp_path / "test-only", "--out", tmp_path / "i",
                 "--normalize", "classifier", "--device", "cpu", "--quiet")
    assert refused(result, "no train split with pose labels")
    assert refused(rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", tmp_path / "j",
                       "--classifier-data", root / "faces"), "--classifier-data goes with --normalize")
    built = rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", tmp_path / "k",
                "--normalize", "classifier", "--device", "cpu", "--quiet")
    assert built.exit_code == 0, built.output
    (tmp_path / "k" / "pose_classifier.safetensors").unlink()
    assert refused(rbg("query", "--index", tmp_path / "k", f"{root / 'faces'}:0", "--pose", "+15"),
                   "pose_classifier.safetensors: missing")


def test_index_add_appends_a_split_and_queries_show_its_faces(setup, tmp_path):
    root, model, _ = setup
    grown = copy_index(root, "grown")
    result = rbg("index", "add", "--index", grown, "--data", root / "faces", "--split", "train", "--model", model,
                 "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "added 28 train images of tiny (gallery 1): 56 faces in all, factory Flat" in result.output
    assert "kept-pose accuracy of the added faces" in result.output and "time:" in result.output
    (tmp_path / "queries.csv").write_text(f"path,target\n{root / 'faces'}:3,+15\n")  # row 3: id00, a train face
    result = rbg("query", "--index", grown, "--model", model, "--batch", tmp_path / "queries.csv", "-k", 1,
                 "--out", tmp_path / "results.csv", "--grid", tmp_path / "grid.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "results.csv")
    assert table[["gallery", "image_row", "identity"]].values.tolist() == [[1, 3, "id00"]]  # itself, in the added rows
    again = rbg("index", "add", "--index", grown, "--data", root / "faces", "--split", "train", "--model", model, "--quiet")
    assert refused(again, "is in it already (gallery 1"), again.output


def test_an_all_views_index_is_compact_by_default_and_flat_when_the_gallery_is_too_small(setup, tmp_path):
    from index.faiss_factory import default_factory

    assert default_factory("kept", 10**6) == "Flat" and default_factory("all", 63) == "Flat"
    assert default_factory("all", 64) == default_factory("all", 127) == "VIEWPCA64,Flat"
    assert default_factory("all", 128) == default_factory("all", 255) == "VIEWPCA128,SQ8"
    assert default_factory("all", 256) == default_factory("all", 10**6) == "VIEWPCA256,SQ8"
    root, model, _ = setup
    tiny_faceset(identities=5, test_identities=5).write(tmp_path / "faces")  # 70 test faces
    built = rbg("index", "build", "--paper", "--model", model, "--data", tmp_path / "faces", "--out", tmp_path / "all",
                "--views", "all", "--batch-size", 35, "--device", "cpu", "--quiet")
    assert built.exit_code == 0, built.output
    assert "factory VIEWPCA64,Flat" in built.output and GalleryIndex.load(tmp_path / "all").info.factory == "VIEWPCA64,Flat"
    small = rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", tmp_path / "small",
                "--views", "all", "--batch-size", 10, "--device", "cpu", "--quiet")  # 28 test faces
    assert small.exit_code == 0 and GalleryIndex.load(tmp_path / "small").info.factory == "Flat"
    found = rbg("query", "--index", tmp_path / "all", f"{tmp_path / 'faces'}:0", "--pose", "+15", "-k", 3, "--device", "cpu")
    assert found.exit_code == 0, found.output


def test_index_build_and_add_read_the_pose_from_pose_images(setup, tmp_path):
    """--pose-images: the classifier is fitted on the larger faces and the index says so; `index add` of an index
    whose classifier reads them needs them too, and refuses the crops in one line."""
    from facedata.faceset import FaceSet

    root, model, _ = setup
    faces = FaceSet.open(root / "faces")
    big = FaceSet.from_arrays(faces.images.repeat(2, axis=1).repeat(2, axis=2), faces.faces.drop(columns="source"),
                              "big", extra_factors=[f for f in faces.factors if f != "pose"]).write(tmp_path / "big")
    result = rbg("index", "build", "--model", model, "--data", root / "faces", "--pose-images", big, "--out",
                 tmp_path / "index", "--pose-classifier", "logreg", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    built = GalleryIndex.load(tmp_path / "index")
    assert built.info.pose_classifier["reads"] == str(big) and built.pose_classifier.image_size == (32, 32)
    refusal = rbg("index", "add", "--index", tmp_path / "index", "--data", root / "faces", "--split", "train",
                  "--device", "cpu", "--quiet")
    assert refused(refusal, "reads 32×32 faces", "--pose-images"), refusal.output
    added = rbg("index", "add", "--index", tmp_path / "index", "--data", root / "faces", "--split", "train",
                "--pose-images", big, "--device", "cpu", "--quiet")
    assert added.exit_code == 0, added.output
    assert GalleryIndex.load(tmp_path / "index").info.count == len(faces)
    assert refused(rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--pose-images", big,
                       "--out", tmp_path / "other"), "--pose-images goes with --normalize classifier or none")
