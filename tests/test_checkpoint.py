"""Checkpoints: safetensors + JSON round-trip exactly; anything missing, corrupt or mismatched is refused."""

import json
import re
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_training import POSES, tiny_faceset

import generator
from facedata.faceset import FaceSet
from generator.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    check_vocabulary,
    data_fingerprint,
    load_checkpoint,
    model_hash,
    optimizer_tensors,
    read_info,
    restore_optimizer,
    save_checkpoint,
    sha256_file,
)
from generator.inference import Generator
from generator.model import ModelConfig, TwoStageGenerator
from generator.normalize import Normalization
from generator.shipped import shipped_model, shipped_names


def make_info(vocabulary=POSES, size=(16, 16)) -> CheckpointInfo:
    config = ModelConfig(num_values=len(vocabulary), image_size=size)
    return CheckpointInfo(architecture=config.to_json(), task="pose", edit_factor="pose", vocabulary=tuple(vocabulary),
                          normalization=Normalization(mean=100.0, std=50.0).to_json(), trained_epochs={"1": 1, "2": 1})


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    info = make_info()
    model = TwoStageGenerator(info.model_config)
    written = save_checkpoint(tmp_path / "ckpt", model, info)
    return tmp_path / "ckpt", model, written


def test_round_trip_restores_weights_and_manifest_exactly(saved):
    path, model, written = saved
    loaded, info, folder = load_checkpoint(path)
    assert folder == path and info == written
    assert info.weights_sha256 == sha256_file(path / "model.safetensors")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    record = json.loads((path / "checkpoint.json").read_text())
    assert record["architecture"]["name"] == "ghodrati2016-two-stage" and record["vocabulary"] == list(POSES)


def test_generator_load_accepts_a_run_folder_holding_checkpoint(saved, tmp_path):
    path, _, written = saved
    path.rename(tmp_path / "ckpt-run")
    (tmp_path / "run").mkdir()
    (tmp_path / "ckpt-run").rename(tmp_path / "run" / "checkpoint")
    generator_ = Generator.load(tmp_path / "run", device="cpu")
    assert generator_.checkpoint_hash == written.model_sha256 and generator_.image_size == (16, 16)


def test_another_vocabulary_is_refused(saved):
    _, _, info = saved
    check_vocabulary(info, "pose", POSES, "data")
    with pytest.raises(CheckpointError, match=r"edits pose over .*'-45'.* the data has pose over \['left', 'right'\]"):
        check_vocabulary(info, "pose", ("left", "right"), "data")
    with pytest.raises(CheckpointError, match="the data has accessory"):
        check_vocabulary(info, "accessory", POSES, "data")


def test_another_architecture_is_refused(saved):
    path, _, _ = saved
    record = json.loads((path / "checkpoint.json").read_text())
    record["architecture"]["name"] = "unet"
    (path / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="architecture unet"):
        load_checkpoint(path)


def test_weights_of_another_shape_are_refused(tmp_path):
    small = make_info(vocabulary=("a", "b"))
    written = save_checkpoint(tmp_path / "ckpt", TwoStageGenerator(small.model_config), small)
    record = written.to_json()
    record["vocabulary"], record["architecture"]["num_values"] = ["a", "b", "c"], 3
    record["model_sha256"] = model_hash(CheckpointInfo.from_json(record, Path("edited")))  # a consistent manifest
    (tmp_path / "ckpt" / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"do not fit .*attribute_encoder.0.weight is \(512, 2\), expected \(512, 3\)"):
        load_checkpoint(tmp_path / "ckpt")


def test_missing_files_are_named(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "nowhere")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors: missing"):
        load_checkpoint(path)
    (path / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing checkpoint.json"):
        load_checkpoint(path)


def test_corrupt_files_are_named(saved):
    path, _, _ = saved
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model.safetensors: sha256 differs"):
        load_checkpoint(path)
    record = json.loads((path / "checkpoint.json").read_text())
    record["weights_sha256"] = ""  # no hash to compare: the safetensors reader must catch it
    record["model_sha256"] = model_hash(CheckpointInfo.from_json(record, Path("edited")))
    (path / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt safetensors file"):
        load_checkpoint(path)
    (path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoint.json: unreadable JSON"):
        load_checkpoint(path)


def test_optimizer_state_round_trips_through_tensors_and_json():
    param = torch.nn.Parameter(torch.ones(4))
    adam = torch.optim.Adam([param], lr=0.1)
    param.sum().backward()
    adam.step()
    tensors, record = optimizer_tensors(adam)
    json.dumps(record)
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.ones(4))], lr=0.5)
    restore_optimizer(fresh, tensors, json.loads(json.dumps(record)))
    assert fresh.param_groups[0]["lr"] == 0.1
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], adam.state_dict()["state"][0]["exp_avg"])


def test_data_fingerprint_follows_the_faces_table(tmp_path):
    faces = tiny_faceset()
    assert data_fingerprint(faces) == data_fingerprint(tiny_faceset())
    assert data_fingerprint(faces) != data_fingerprint(faces.with_split_by_identity(2))
    on_disk = data_fingerprint(FaceSet.open(faces.write(tmp_path / "fs")))
    assert set(on_disk) >= {"name", "faceset.json", "faces.parquet"}
    two_way, with_val = faces.with_split_by_identity(3, val_identities=0), faces.with_split_by_identity(3, val_identities=1)
    assert data_fingerprint(two_way) != data_fingerprint(with_val)  # moving people into val is other data
    written = [data_fingerprint(FaceSet.open(f.write(tmp_path / name))) for f, name in ((two_way, "a"), (with_val, "b"))]
    assert written[0]["faceset.json"] != written[1]["faceset.json"]
    assert written[0]["faces.parquet"] != written[1]["faces.parquet"]


def test_the_generator_package_never_unpickles():
    for source in Path(generator.__file__).parent.glob("*.py"):
        text = source.read_text()
        for banned in ("torch.load(", "torch.save(", "import pickle", "weights_only"):
            assert banned not in text, (source.name, banned)


@pytest.mark.parametrize("field, edit", [
    ("vocabulary", lambda r: r.update(vocabulary=list(reversed(r["vocabulary"])))),
    ("image size", lambda r: r["architecture"].update(image_size=[32, 32])),
    ("normalization", lambda r: r["normalization"].update(std=r["normalization"]["std"] * 2)),
    ("task", lambda r: r.update(task="accessory")),
])
def test_an_edited_manifest_is_refused_by_the_model_hash(saved, field, edit):
    path, _, _ = saved
    record = json.loads((path / "checkpoint.json").read_text())
    edit(record)
    (path / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="differ from the model hash it records"):
        load_checkpoint(path)


def test_the_model_hash_changes_with_each_field_it_covers_and_not_with_the_metrics(saved):
    _, _, written = saved
    base = model_hash(written)
    assert base == written.model_sha256
    assert model_hash(replace(written, vocabulary=written.vocabulary[::-1])) != base
    assert model_hash(replace(written, normalization={**written.normalization, "mean": 1.0})) != base
    assert model_hash(replace(written, metrics={"val_stage2_mse": 1.0}, trained_epochs={"1": 9})) == base


def test_a_checkpoint_written_before_the_model_hash_loads_with_a_warning(saved):
    path, _, written = saved
    record = json.loads((path / "checkpoint.json").read_text())
    del record["model_sha256"]
    record["format_version"] = 1
    (path / "checkpoint.json").write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="before the model hash"):
        _, info, _ = load_checkpoint(path)
    assert info.model_sha256 == written.model_sha256


@pytest.mark.parametrize("version", [2, None])
def test_a_checkpoint_without_its_model_hash_is_refused_unless_it_is_of_format_1(saved, version):
    path, _, _ = saved
    record = json.loads((path / "checkpoint.json").read_text())
    assert record["format_version"] == 2
    del record["model_sha256"]
    record["vocabulary"] = record["vocabulary"][::-1]  # the edit the hash would have caught
    record["format_version"] = version
    if version is None:
        del record["format_version"]
    (path / "checkpoint.json").write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match=re.escape(f"{path / 'checkpoint.json'}: its model hash (model_sha256) is missing")):
            load_checkpoint(path)


@pytest.mark.parametrize("name", ["synthpie-pose", "synthpie-accessory", "synthpie-illumination", "synthpie-pose-accessory"])
def test_the_shipped_checkpoints_carry_a_model_hash_that_checks(name):
    folder = shipped_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info, _ = load_checkpoint(folder)
    assert info.model_sha256 == model_hash(info) and len(info.model_sha256) == 64
    assert sha256_file(folder / "model.safetensors") == info.weights_sha256


# -- shipped checkpoints by name ------------------------------------------------------------------
def test_the_package_ships_the_pose_and_accessory_models_inside_the_generator_package():
    assert shipped_names() == ("synthpie-accessory", "synthpie-illumination", "synthpie-pose", "synthpie-pose-accessory")
    package = Path(generator.__file__).resolve().parent
    for name in shipped_names():
        assert shipped_model(name).resolve() == package / "shipped" / name
        assert (shipped_model(name) / "model.safetensors").stat().st_size > 1_000_000
    assert shipped_model("synthpie") is None and shipped_model("../shipped") is None


def test_the_four_shipped_models_together_stay_within_20_mb():
    sizes = {name: (shipped_model(name) / "model.safetensors").stat().st_size for name in shipped_names()}
    assert len(sizes) == 4 and sum(sizes.values()) <= 20_000_000, sizes


def test_the_shipped_two_factor_model_edits_pose_and_accessory_together():
    generator = Generator.load("synthpie-pose-accessory", device="cpu")
    assert generator.factors == ("pose", "accessory") and len(generator.vocabulary) == 20
    assert generator.factor_vocabularies["accessory"] == ("none", "glasses", "sunglasses", "cap")


def test_a_shipped_name_loads_its_checkpoint_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, info, folder = load_checkpoint("synthpie-accessory")
    assert folder == shipped_model("synthpie-accessory") and info.task == "accessory" and "sunglasses" in info.vocabulary
    assert Generator.load("synthpie-pose", device="cpu").path == shipped_model("synthpie-pose")


def test_a_folder_that_exists_wins_over_a_shipped_name(saved, tmp_path, monkeypatch):
    path, _, written = saved
    monkeypatch.chdir(tmp_path)
    path.rename(tmp_path / "synthpie-pose")
    folder, info = read_info("synthpie-pose")
    assert folder == Path("synthpie-pose") and info.model_sha256 == written.model_sha256
    (tmp_path / "synthpie-pose" / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="synthpie-pose: missing checkpoint.json"):
        read_info("synthpie-pose")


@pytest.mark.parametrize("name", ["synthpie", "pretrained/synthpie-pose", "synthpie-pose/checkpoint"])
def test_a_name_that_is_neither_a_folder_nor_shipped_is_refused_listing_the_shipped_names(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=rf"^{name}: no such checkpoint folder, nor a shipped model's name "
                                              r"\(synthpie-accessory, synthpie-illumination, synthpie-pose, "
                                              r"synthpie-pose-accessory\)$"):
        load_checkpoint(name)


def test_an_index_records_a_shipped_model_by_name_and_finds_it_again(tmp_path):
    from generator.shipped import shipped_model
    from index.faiss_index import GalleryIndex, model_record

    assert model_record(shipped_model("synthpie-pose"), tmp_path / "ix") == "synthpie-pose"
    assert model_record(tmp_path / "run", tmp_path / "ix") == "../run"  # a local folder stays a relative path
    index = GalleryIndex.__new__(GalleryIndex)
    index.path = tmp_path / "ix"
    assert index.locate("synthpie-pose") == shipped_model("synthpie-pose")
    assert index.locate("../run") == tmp_path / "ix" / "../run"


def test_weights_stored_as_float16_take_half_the_bytes_and_load_back_as_float32(tmp_path):
    from fakes import save_untrained
    from safetensors.torch import load_file

    from generator.checkpoint import store_half

    folder = save_untrained(tmp_path / "model")
    (folder / "README.md").write_text("kept\n")
    before = (folder / "model.safetensors").stat().st_size
    full = Generator.load(folder, "cpu")
    images = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8).numpy()
    expected = full.generate(images, "+30")[1]
    written = store_half(folder)
    assert all(t.dtype == torch.float16 for t in load_file(str(folder / "model.safetensors")).values())
    assert (folder / "model.safetensors").stat().st_size < 0.55 * before and (folder / "README.md").read_text() == "kept\n"
    half = Generator.load(folder, "cpu")  # the manifest's hashes match the new weights
    assert half.checkpoint_hash == written.model_sha256 != full.checkpoint_hash
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert abs(half.generate(images, "+30")[1] - expected).max() < 2.0  # 0–255 scale


def test_the_shipped_weights_are_float16_and_take_at_most_20_mb_together():
    from safetensors.torch import load_file

    from generator.shipped import shipped_names

    files = [shipped_model(name) / "model.safetensors" for name in shipped_names()]
    assert all(t.dtype == torch.float16 for f in files for t in load_file(str(f)).values())
    assert sum(f.stat().st_size for f in files) <= 20 * 1024 * 1024
