"""Several attributes at once: pose and accessory edited together by one generator, one one-hot block each."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from facedata.combined import combined_vocabulary, edited_factors, with_factor
from facedata.errors import DataError, UserError
from facedata.faceset import FaceSet
from facedata.pairs import make_pairs
from generator.checkpoint import read_info
from generator.inference import Generator
from generator.model import ModelConfig, TwoStageGenerator, attribute_code
from generator.tasks import get_task
from generator.train import TrainConfig, train
from retrieval.search import edit_target

POSES = ("-15", "0", "+15")
ACCESSORIES = ("none", "glasses")


def pose_accessory_faceset(identities: int = 4, size: int = 16, test_identities: int = 1, val_identities: int = 1,
                           seed: int = 0) -> FaceSet:
    """Disc faces whose centre moves with pose, with a dark bar over the eyes for glasses; radius by identity."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, rows = [], []
    for i in range(identities):
        radius = 0.25 + 0.1 * rng.random()
        split = "test" if i >= identities - test_identities else \
            "val" if i >= identities - test_identities - val_identities else "train"
        for pi, pose in enumerate(POSES):
            for accessory in ACCESSORIES:
                cx = 0.5 + (pi - 1) * 0.06
                face = (xx - cx) ** 2 + (yy - 0.5) ** 2 < radius ** 2
                image = 30 + 150 * face + rng.normal(0, 2, (size, size))
                if accessory == "glasses":
                    image[int(0.38 * size): int(0.46 * size), int((cx - 0.25) * size): int((cx + 0.25) * size)] = 10
                images.append(np.clip(image, 0, 255).astype(np.uint8))
                rows.append({"identity": f"id{i:02d}", "pose": pose, "accessory": accessory, "illumination": "07",
                             "split": split})
    return FaceSet.from_arrays(np.stack(images), pd.DataFrame(rows), name="tiny-pa",
                               factors={"pose": POSES, "accessory": ACCESSORIES})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A pose+accessory model trained for a few steps on the tiny set (both stages)."""
    out = tmp_path_factory.mktemp("multi") / "run"
    config = TrainConfig(task="pose+accessory", epochs=1, max_pairs=48, batch_size=16, val_pairs=12, threads=1,
                         device="cpu")
    train(pose_accessory_faceset(), config, out, progress=False)
    return out


def test_combined_vocabulary_varies_the_last_factor_fastest():
    assert combined_vocabulary([("a", "b"), ("x", "y", "z")]) == ("a/x", "a/y", "a/z", "b/x", "b/y", "b/z")
    assert edited_factors("pose+accessory") == ("pose", "accessory")
    assert edited_factors("pose") == ("pose",)


def test_with_factor_adds_the_combined_column_whose_codes_are_mixed_radix():
    faces = with_factor(pose_accessory_faceset(identities=2), "pose+accessory")
    codes = faces.codes("pose+accessory")
    assert np.array_equal(codes, faces.codes("pose") * len(ACCESSORIES) + faces.codes("accessory"))
    assert faces.vocabulary("pose+accessory")[0] == "-15/none"


def test_with_factor_refuses_a_factor_the_faces_lack():
    with pytest.raises(DataError, match="'expression' is not a factor"):
        with_factor(pose_accessory_faceset(identities=2), "pose+expression")


def test_pairs_of_several_factors_share_identity_and_differ_in_at_least_one_edited_factor():
    faces = pose_accessory_faceset(identities=2)
    pairs = make_pairs(faces, "pose+accessory")
    table = faces.faces.reset_index(drop=True)
    src, tgt = table.iloc[pairs[:, 0]].reset_index(drop=True), table.iloc[pairs[:, 1]].reset_index(drop=True)
    assert (src["identity"] == tgt["identity"]).all() and (src["illumination"] == tgt["illumination"]).all()
    assert ((src["pose"] != tgt["pose"]) | (src["accessory"] != tgt["accessory"])).all()
    values = len(POSES) * len(ACCESSORIES)
    assert len(pairs) == 2 * values * (values - 1)  # every ordered pair of the 6 combinations, per person
    assert ((src["pose"] != tgt["pose"]) & (src["accessory"] != tgt["accessory"])).any()


def test_pairs_cannot_match_on_an_edited_factor():
    with pytest.raises(DataError, match="cannot match on 'accessory'"):
        make_pairs(pose_accessory_faceset(identities=2), "pose+accessory", match=("accessory",))


def test_attribute_code_is_one_one_hot_block_per_factor():
    config = ModelConfig(num_values=6, image_size=(16, 16), factor_sizes=(3, 2))
    code = attribute_code(torch.tensor([0, 5, 3]), config, torch.float32)
    assert code.tolist() == [[1, 0, 0, 1, 0], [0, 0, 1, 0, 1], [0, 1, 0, 0, 1]]
    assert config.onehot_width == 5
    assert TwoStageGenerator(config).stage1.attribute_encoder[0].in_features == 5


def test_a_single_factor_config_keeps_the_papers_one_hot_and_manifest():
    config = ModelConfig(num_values=7)
    assert "factor_sizes" not in config.to_json()
    assert attribute_code(torch.tensor([2]), config, torch.float32).tolist() == [[0, 0, 1, 0, 0, 0, 0]]
    assert ModelConfig.from_json(ModelConfig(num_values=6, factor_sizes=(3, 2)).to_json()).factor_sizes == (3, 2)
    with pytest.raises(ValueError, match="multiply to num_values"):
        ModelConfig(num_values=7, factor_sizes=(3, 2))


def test_combined_task_names_and_their_refusals():
    assert get_task("pose+accessory").edit_factor == "pose+accessory"
    with pytest.raises(UserError, match="'completion' cannot be combined"):
        get_task("pose+completion")
    with pytest.raises(UserError, match="appears twice"):
        get_task("pose+pose")


def test_the_shipped_single_factor_models_load_as_before():
    generator = Generator.load("synthpie-pose", device="cpu")
    assert generator.factors == ("pose",) and generator.factor_vocabularies == {"pose": generator.vocabulary}
    manifest = json.loads((generator.path / "checkpoint.json").read_text())
    assert "factor_vocabularies" not in manifest and "factor_sizes" not in manifest["architecture"]


def test_a_checkpoint_records_a_vocabulary_per_factor(trained):
    _, info = read_info(trained)
    assert info.edit_factor == "pose+accessory"
    assert info.factor_vocabularies == {"pose": POSES, "accessory": ACCESSORIES}
    assert info.model_config.factor_sizes == (3, 2) and len(info.vocabulary) == 6


def test_generate_takes_one_value_per_factor(trained):
    generator = Generator.load(trained, device="cpu")
    faces = pose_accessory_faceset(identities=1)
    target = generator.combine_targets({"pose": "15", "accessory": "glasses"})
    assert target == "+15/glasses"
    stage1, stage2 = generator.generate(faces.images[:2], target)
    assert stage1.shape == stage2.shape == (2, 16, 16)
    assert generator.target_codes(["+15/glasses", "-15/none"]).tolist() == [5, 0]


def test_a_factor_left_out_keeps_the_sources_value_or_must_be_given(trained):
    generator = Generator.load(trained, device="cpu")
    assert edit_target(generator, pose="+15", known={"accessory": "glasses"}) == "+15/glasses"
    assert edit_target(generator, pose="+15", accessory="none") == "+15/none"
    with pytest.raises(UserError, match="give --accessory VALUE"):
        edit_target(generator, pose="+15")
    with pytest.raises(UserError, match="unknown accessory 'hat'"):
        edit_target(generator, pose="+15", accessory="hat")
    with pytest.raises(UserError, match="--occluded does not apply"):
        edit_target(generator, pose="+15", occluded="no")


def rbg(*args):
    from click.testing import CliRunner

    from rbg.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(trained, tmp_path_factory):
    """The tiny set on disk and a classifier-normalized index of its test person, built by the trained model."""
    root = tmp_path_factory.mktemp("multi-world")
    pose_accessory_faceset().write(root / "faces")
    result = rbg("index", "build", "--paper", "--model", trained, "--data", root / "faces", "--out", root / "index",
                 "--normalize", "classifier")
    assert result.exit_code == 0, result.output
    return root


def test_index_build_normalizes_over_both_factors_with_one_classifier_each(world):
    from index.faiss_index import GalleryIndex
    from index.factor_classifiers import FactorClassifiers

    index = GalleryIndex.load(world / "index")
    assert isinstance(index.pose_classifier, FactorClassifiers)
    assert index.pose_classifier.factors == ("pose", "accessory")
    assert set(index.faces["kept_pose+accessory"]) <= set(combined_vocabulary([POSES, ACCESSORIES]))
    assert (index.faces["pose+accessory"] == index.faces["pose"] + "/" + index.faces["accessory"]).all()


def test_full_normalization_generates_every_combination(trained, tmp_path):
    from index.pose_normalize import pose_normalize

    generator = Generator.load(trained, device="cpu")
    faces = pose_accessory_faceset(identities=1)
    normalized = pose_normalize(generator, faces.images[:2])
    assert normalized.kept.shape == (2,) and normalized.kept.max() < len(POSES) * len(ACCESSORIES)


def test_query_takes_a_pose_and_an_accessory_together(world):
    result = rbg("query", "--index", world / "index", f"{world / 'faces'}:0", "--pose", "+15", "--accessory",
                 "glasses", "-k", "3")
    assert result.exit_code == 0, result.output
    assert "(id00, pose+accessory -15/none) → pose+accessory +15/glasses" in result.output


def test_query_keeps_a_faceset_rows_accessory_when_only_the_pose_is_given(world):
    row = 1  # id00, pose -15, glasses
    result = rbg("query", "--index", world / "index", f"{world / 'faces'}:{row}", "--pose", "0", "-k", "2")
    assert result.exit_code == 0, result.output
    assert "→ pose+accessory 0/glasses" in result.output


def test_generate_writes_the_face_in_both_targets(trained, world, tmp_path):
    out = tmp_path / "edited.png"
    result = rbg("generate", "--model", trained, f"{world / 'faces'}:0", "--pose", "+15", "--accessory", "glasses",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file()


@pytest.mark.parametrize("args, names", [
    (("--pose", "+15"), "give --accessory VALUE"),
    (("--pose", "+15", "--accessory", "hat"), "unknown accessory 'hat'"),
    (("--pose", "+15", "--accessory", "none", "--occluded", "no"), "--occluded does not apply"),
])
def test_generate_refuses_a_missing_or_wrong_factor_in_one_line(trained, tmp_path, args, names):
    image = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(pose_accessory_faceset(identities=1).images[0]).save(image)
    result = rbg("generate", "--model", trained, image, *args, "--out", tmp_path / "out.png")
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert len(lines) == 1 and names in lines[0], result.output
    assert not (tmp_path / "out.png").exists()


def test_train_refuses_an_uncombinable_task_in_one_line(world, tmp_path):
    result = rbg("train", "--data", world / "faces", "--task", "pose+completion", "--out", tmp_path / "run")
    assert result.exit_code == 2 and result.output.count("Error:") == 1, result.output
    assert "'completion' cannot be combined" in result.output


def test_bench_scores_criterion1_as_identity_and_every_target_value(trained, tmp_path):
    from retrieval.benchmark import BenchConfig, run_benchmark

    faces = pose_accessory_faceset(identities=5, test_identities=2)
    config = BenchConfig(queries=12, generation_pairs=6, grid_queries=2, batch_size=64, ks=(1, 5))
    record = run_benchmark(Generator.load(trained, device="cpu"), faces, tmp_path / "report", config,
                           cache=tmp_path / "cache")
    assert record["model"]["edit"] == "pose+accessory"
    assert (tmp_path / "report" / "report.json").is_file()


def test_the_chained_baseline_runs_on_the_same_queries_as_ours(trained, world, tmp_path):
    import bench_chained

    singles = {}
    for task in ("pose", "accessory"):
        config = TrainConfig(task=task, epochs=1, max_pairs=24, batch_size=12, val_pairs=0, threads=1, device="cpu")
        train(FaceSet.open(world / "faces"), config, tmp_path / task, progress=False)
        singles[task] = tmp_path / task
    bench_chained.main(["--data", str(world / "faces"), "--model", str(trained), "--pose-model", str(singles["pose"]),
                        "--accessory-model", str(singles["accessory"]), "--queries", "10", "--out", str(tmp_path / "c")])
    record = json.loads((tmp_path / "c" / "chained.json").read_text())
    assert [row["method"].split(" (")[0] for row in record["rows"]] == ["ours", "chained", "chained, known skips"]
    assert record["queries"] == 10 and record["gallery"] == 6
    text = bench_chained.markdown(record)  # as the docs pages render it from the JSON file
    assert "10 queries" in text and "| ours (one pose+accessory model) |" in text


def test_the_chained_baseline_refuses_models_of_other_factors(trained, world):
    import bench_chained

    with pytest.raises(UserError, match="give models of pose and accessory"):
        bench_chained.run(bench_chained.ChainedConfig(str(world / "faces"), str(trained), str(trained), str(trained)))


@pytest.fixture(scope="module")
def served(trained, world):
    """The HTTP app over the pose+accessory index of the tiny set."""
    from fastapi.testclient import TestClient

    from index.faiss_index import GalleryIndex
    from rbg.serve.app import create_app
    from rbg.serve.engine import QueryEngine

    index = GalleryIndex.load(world / "index")
    engine = QueryEngine(Generator.load(trained, device="cpu"), index, FaceSet.open(world / "faces"))
    with TestClient(create_app(engine)) as client:
        yield client


def test_serve_info_lists_a_vocabulary_per_factor(served):
    info = served.get("/info").json()
    assert info["edit_factor"] == "pose+accessory"
    assert info["factors"] == {"pose": list(POSES), "accessory": list(ACCESSORIES)}


def test_serve_takes_a_target_per_factor_and_marks_hits_on_both(served):
    answer = served.post("/query", data={"row": "0", "pose": "+15", "accessory": "glasses", "k": "3"}).json()
    assert answer["target"] == "+15/glasses"
    assert all(hit["correct"] is not None for hit in answer["results"])


def test_serve_keeps_a_rows_own_accessory_when_only_the_pose_is_given(served):
    assert served.post("/query", data={"row": "1", "pose": "0", "k": "2"}).json()["target"] == "0/glasses"


def test_serve_refuses_an_upload_without_every_factor(served):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pose_accessory_faceset(identities=1).images[0]).save(buffer, format="PNG")
    response = served.post("/query", files={"image": ("face.png", buffer.getvalue(), "image/png")},
                           data={"pose": "+15", "align": "no"})
    assert response.status_code == 400 and "give accessory VALUE" in response.json()["error"]


def test_table1_of_a_model_of_several_factors(trained, world, tmp_path):
    result = rbg("eval", "generation", "--model", trained, "--data", world / "faces", "--out", tmp_path / "t1",
                 "--pairs", "20")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "t1" / "table.json").read_text())
    assert record["task"] == "pose+accessory" and record["pairs"] == 20
    from PIL import Image

    grid = Image.open(tmp_path / "t1" / "figure8_value_grid.png")  # a row per accessory, a column per pose (+ input)
    strip = Image.open(tmp_path / "t1" / "figure8_all_targets.png")
    generator = Generator.load(trained, device="cpu")
    poses, accessories = (len(generator.factor_vocabularies[f]) for f in ("pose", "accessory"))
    assert round(strip.width / grid.width * (poses + 1)) == poses * accessories + 1  # same cell width
    assert grid.height > grid.width / (poses + 1) * accessories  # a row of cells per accessory, under labels


def test_index_add_grows_an_index_of_several_factors(trained, world, tmp_path):
    import shutil

    shutil.copytree(world / "index", tmp_path / "index")
    more = pose_accessory_faceset(identities=2, seed=3)
    more.write(tmp_path / "more")
    result = rbg("index", "add", "--index", tmp_path / "index", "--data", tmp_path / "more")
    assert result.exit_code == 0, result.output
    from index.faiss_index import GalleryIndex

    assert len(GalleryIndex.load(tmp_path / "index")) == 6 + len(more.split("test"))  # the test split is added


def test_the_bench_filter_of_several_factors_is_one_classifier_per_factor(trained):
    from index.factor_classifiers import FactorClassifiers
    from retrieval.protocol import sample_queries
    from retrieval.two_step import fit_pose_filter

    faces = with_factor(pose_accessory_faceset(identities=5, test_identities=2), "pose+accessory")
    gallery = faces.split("test")
    found = fit_pose_filter(faces.split("train"), gallery, sample_queries(gallery, "pose+accessory", 8))
    assert isinstance(found.classifier, FactorClassifiers)
    assert set(found.gallery_pred) <= set(faces.vocabulary("pose+accessory"))


def test_query_draws_its_grid_from_the_gallery_of_an_index_of_several_factors(world, tmp_path):
    result = rbg("query", "--index", world / "index", f"{world / 'faces'}:0", "--pose", "+15", "--accessory", "glasses",
                 "-k", "2", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").is_file()
