"""The Generator API and its commands: targets, batched generation, features, input checks, Table 1."""

import json
import re
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fakes import save_untrained
from PIL import Image
from test_training import tiny_faceset

from facedata.errors import UserError
from generator.evaluate import pair_errors
from generator.inference import Generator, ImageConversionWarning
from generator.model import TwoStageGenerator
from generator.normalize import Normalization, fit_normalization
from rbg.cli import cli


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_untrained(tmp_path_factory.mktemp("model") / "ckpt")


@pytest.fixture(scope="module")
def gen(model_dir):
    return Generator.load(model_dir, device="cpu")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)


def test_target_codes_accept_values_signed_degrees_and_codes(gen):
    assert gen.target_codes("+30").tolist() == [5]
    assert gen.target_codes("30", n=3).tolist() == [5, 5, 5]
    assert gen.target_codes(["0", "-0", "-45", 6]).tolist() == [3, 3, 0, 6]
    assert gen.target_codes(np.array([1, 2])).tolist() == [1, 2]


@pytest.mark.parametrize("bad", ["+60", "left", 7, -1])
def test_an_unknown_target_lists_the_valid_ones(gen, bad):
    with pytest.raises(UserError, match=r"valid.*-45, -30, -15, 0, \+15, \+30, \+45"):
        gen.target_codes(bad)


def test_generate_returns_both_stages_on_the_0_255_scale(gen, images):
    stage1, stage2 = gen.generate(images, "+15")
    assert stage1.shape == stage2.shape == (5, 16, 16) and stage1.dtype == stage2.dtype == np.float32
    norm = gen.normalization
    x = (torch.from_numpy(images).float().unsqueeze(1) - norm.mean) / norm.std
    reference = TwoStageGenerator(gen.model.config)
    reference.load_state_dict(gen.model.state_dict())
    with torch.no_grad():
        c, r = reference(x, torch.full((5,), 4))
    np.testing.assert_allclose(stage1, (c[:, 0] * norm.std + norm.mean).numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(stage2, (r[:, 0] * norm.std + norm.mean).numpy(), rtol=1e-4, atol=1e-3)


def test_batch_size_does_not_change_the_output(gen, images):
    whole = gen.generate(images, ["0", "+15", "+30", "-15", "+45"], batch_size=256)
    single = gen.generate(images, ["0", "+15", "+30", "-15", "+45"], batch_size=1)
    np.testing.assert_allclose(whole[1], single[1], rtol=1e-4, atol=1e-3)


def test_images_of_another_size_or_with_colour_are_converted_with_a_warning(gen, images):
    big = np.kron(images, np.ones((2, 2), np.uint8))  # (5, 32, 32)
    with pytest.warns(ImageConversionWarning, match="resized to the model's 16×16"):
        stage1, _ = gen.generate(big, "0")
    assert stage1.shape == (5, 16, 16)
    rgb = np.repeat(images[..., None], 3, axis=3)
    with pytest.warns(ImageConversionWarning, match="3 channels; converted to grayscale"):
        converted = gen.generate(rgb, "0")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(converted, gen.generate(images, "0")[1], atol=1e-3)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 16, 16), np.float32), "must be uint8"),
    (np.zeros((16, 16), np.uint8), r"must be \(n, H, W\)"),
    (np.zeros((2, 16, 16, 2), np.uint8), r"must be \(n, H, W\)"),
])
def test_images_of_another_type_or_rank_are_refused(gen, bad, message):
    with pytest.raises(UserError, match=message):
        gen.generate(bad, "0")


def test_a_wrong_number_of_targets_is_refused(gen, images):
    with pytest.raises(UserError, match="3 targets for 5 images"):
        gen.generate(images, ["0", "0", "0"])


def test_features_have_the_documented_widths(gen, images):
    assert gen.default_feature_layer == "stage2.mid"
    widths = {"stage2.mid": 64 * 8 * 8, "stage2.mid128": 128 * 8 * 8, "stage2.pixels": 256, "stage1.pixels": 256,
              "stage1.fusion": 64 * 8 * 8}
    assert set(widths) == set(gen.feature_layers) == set(gen.FEATURE_LAYERS) - {"stage2.descriptor"}
    for layer, width in widths.items():
        feats = gen.features(images, "+30", layer=layer)
        assert feats.shape == (5, width) and feats.dtype == np.float32 and gen.feature_dim(layer) == width
    np.testing.assert_allclose(gen.features(images, "+30", layer="stage2.pixels"),
                               np.clip(gen.generate(images, "+30")[1], 0, 255).reshape(5, -1), atol=1e-3)
    with pytest.raises(UserError, match="unknown feature layer 'fc7'"):
        gen.features(images, "0", layer="fc7")
    with pytest.raises(UserError, match="no descriptor head: train it with --distill-images"):
        gen.features(images, "0", layer="stage2.descriptor")


def test_attribute_maps_are_one_set_per_value(gen):
    assert gen.attribute_maps().shape == (7, 7, 8, 8)


@pytest.mark.parametrize("mode", ["dataset", "per_image"])
def test_normalization_inverts_exactly(mode, images):
    norm = fit_normalization([images[:3], images[3:]], mode=mode)
    raw = torch.from_numpy(images).float().unsqueeze(1)
    stats = norm.stats(raw)
    back = norm.invert(norm.apply(raw, stats), stats)
    assert torch.equal(back.round(), raw)
    if mode == "dataset":
        assert norm.mean == pytest.approx(images.mean()) and norm.std == pytest.approx(images.std())


def test_per_image_normalization_uses_only_the_source(images):
    norm = Normalization(mode="per_image")
    raw = torch.from_numpy(images).float().unsqueeze(1)
    mean, std = norm.stats(raw)
    assert mean[2].item() == pytest.approx(images[2].mean(), rel=1e-5)
    assert std[2].item() == pytest.approx(images[2].std(), rel=1e-5)


def test_pair_errors_are_per_pixel_on_clipped_outputs():
    target = np.full((2, 2, 2), 100, np.uint8)
    out = np.full((2, 2, 2), 110, np.float32)
    out[1] = 300.0  # clipped to 255
    errors = pair_errors(out, out, target)
    assert errors["stage1_mse"] == pytest.approx((100 + 155**2) / 2)
    assert errors["stage1_mae"] == pytest.approx((10 + 155) / 2)


def test_cuda_without_a_gpu_is_a_user_error(model_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no CUDA GPU"):
        Generator.load(model_dir, device="cuda")


# -- commands -----------------------------------------------------------------------------------
def test_generate_command_writes_the_stage_two_png(model_dir, tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "face.jpg")
    result = CliRunner().invoke(cli, ["generate", "--model", str(model_dir), str(tmp_path / "face.jpg"), "--no-align",
                                      "--pose", "+30", "--out", str(tmp_path / "out.png"), "--both-stages", "--scale", "2"])
    assert result.exit_code == 0, result.output
    assert "resized" in result.output
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    assert (tmp_path / "out_stage1.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--pose", "+60"], r"unknown pose '\+60' \(valid: -45"),
    (["--accessory", "hat"], "edits pose only: --accessory does not apply"),
])
def test_generate_command_rejects_targets_it_cannot_apply(model_dir, tmp_path, args, message):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "face.png")
    result = CliRunner().invoke(cli, ["generate", "--model", str(model_dir), str(tmp_path / "face.png"), *args,
                                      "--out", str(tmp_path / "out.png")])
    assert result.exit_code == 2
    assert result.output.startswith("Error:") and re.search(message, result.output), result.output


def test_a_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    path = save_untrained(tmp_path / "ckpt")
    (path / "model.safetensors").write_bytes(b"\0" * 100)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "face.png")
    result = CliRunner().invoke(cli, ["generate", "--model", str(path), str(tmp_path / "face.png"), "--pose", "0",
                                      "--out", str(tmp_path / "out.png")])
    assert result.exit_code == 2 and "model.safetensors" in result.output and "Traceback" not in result.output


def test_generate_command_takes_a_shipped_model_by_name_in_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)).save("face.png")
    result = CliRunner().invoke(cli, ["generate", "--model", "synthpie-pose", "face.png", "--no-align", "--pose", "+30",
                                      "--out", "face+30.png"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "face+30.png").size == (32, 32)


def test_generate_command_refuses_an_unknown_model_name_listing_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save("face.png")
    result = CliRunner().invoke(cli, ["generate", "--model", "synthpie-pse", "face.png", "--pose", "+30", "--out", "out.png"])
    assert result.exit_code == 2 and not (tmp_path / "out.png").exists()
    assert result.output == "Error: synthpie-pse: no such checkpoint folder, nor a shipped model's name (synthpie-accessory, synthpie-illumination, synthpie-pose, synthpie-pose-accessory)\n"


def test_eval_generation_writes_table_1_and_the_figures(model_dir, tmp_path):
    tiny_faceset().write(tmp_path / "faces")
    result = CliRunner().invoke(cli, ["eval", "generation", "--model", str(model_dir), "--data", str(tmp_path / "faces"),
                                      "--out", str(tmp_path / "eval"), "--pairs", "30"])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "eval" / "table.json").read_text())
    assert table["pairs"] == 30 and table["paper"]["stage2_mse"] == 369.16
    assert table["stage1_mse"] > 0 and table["provenance"]["seed"] == 0
    assert "| second stage |" in (tmp_path / "eval" / "table.md").read_text()
    for name in ("figure5_pairs.png", "figure8_all_targets.png", "figure4_attribute_maps.png"):
        assert Image.open(tmp_path / "eval" / name).size[0] > 64


def test_eval_generation_refuses_data_of_another_vocabulary(tmp_path):
    path = save_untrained(tmp_path / "ckpt")
    faces = tiny_faceset()
    faces.faces["pose"] = faces.faces["pose"].map(lambda p: "left" if p.startswith("-") else "right")
    faces.info.factors["pose"] = ("left", "right")
    faces.write(tmp_path / "faces")
    result = CliRunner().invoke(cli, ["eval", "generation", "--model", str(path), "--data", str(tmp_path / "faces"),
                                      "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2 and "the data has pose over ['left', 'right']" in result.output
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("layer", ["stage2.mid", "stage2.mid128", "stage2.pixels", "stage1.pixels", "stage1.fusion"])
def test_one_pass_gives_the_same_face_and_features_as_separate_generate_and_features_calls(tmp_path, layer):
    generator = Generator.load(save_untrained(tmp_path / "model"), "cpu")
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    targets = ["+30", "-45", "0", "+15", "+30"]
    stage2, features = generator.generate_with_features(images, targets, layer, batch_size=2)
    np.testing.assert_allclose(stage2, generator.generate(images, targets)[1], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(features, generator.features(images, targets, layer=layer), rtol=1e-4, atol=1e-4)
    assert generator.generate_with_features(images[:0], "0", layer)[1].shape == (0, generator.feature_dim(layer))
