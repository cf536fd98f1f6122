"""SynthPIE: configs and presets, determinism, pose/light/identity behaviour, accessories, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.synth import PRESETS, SynthConfig, render_faceset, synth_config
from facedata.synth.dataset import faces_table
from facedata.synth.heads import mean_head, sample_head
from facedata.synth.lights import light_directions
from facedata.synth.render import frame_for, light_rig, render_identity
from facedata.synth.shadows import EMPTY, cast_shadow, shadow_rays

TINY = dict(image_size=16, supersample=2)


def tiny(**overrides) -> SynthConfig:
    """A config that renders in a fraction of a second."""
    settings = dict(identities=2, train_identities=1, poses=(-30.0, 0.0, 30.0), illumination_subset=("00", "04", "10"), **TINY)
    settings.update(overrides)
    return SynthConfig(**settings)


def images_of(config: SynthConfig, index: int = 0) -> np.ndarray:
    """Identity `index`'s neutral images: (accessories, occlusion, poses, illuminations, H, W) uint8."""
    frame = frame_for(config)
    return render_identity(config, index, frame, light_rig(config, frame))[0]


# -- configuration -----------------------------------------------------------------------------


def test_paper_preset_is_249_identities_by_7_poses_by_20_lights():
    config = synth_config("paper")
    assert config.image_count == 34_860 == 249 * 7 * 20
    faces = faces_table(config)
    assert len(faces) == 34_860
    assert faces.groupby("split")["identity"].nunique().to_dict() == {"train": 90, "val": 10, "test": 149}
    assert list(faces.columns) == ["identity", "pose", "illumination", "split", "source"]
    assert sorted(faces["pose"].unique(), key=float) == ["-45", "-30", "-15", "0", "+15", "+30", "+45"]
    assert sorted(faces["illumination"].unique()) == [f"{i:02d}" for i in range(20)]


def test_accessory_preset_is_438_identities_by_7_classes_frontal():
    config = synth_config("accessory")
    faces = faces_table(config)
    assert config.image_count == len(faces) == 438 * 7
    assert set(faces["accessory"]) == {"none", "glasses", "tinted_glasses", "sunglasses", "cap", "brimmed_hat", "beanie"}
    assert set(faces["pose"]) == {"0"}
    assert faces.groupby("split")["identity"].nunique().to_dict() == {"train": 315, "val": 35, "test": 88}


def test_completion_preset_adds_occluded_column():
    faces = faces_table(synth_config("completion", identities=3))
    assert set(faces["occluded"]) == {"no", "yes"}
    assert "accessory" not in faces.columns


def test_small_preset_counts():
    config = synth_config("small")
    assert (config.identities, len(config.poses), len(config.illumination_names), config.train_identities) == (24, 7, 4, 16)
    assert config.image_count == 672


def test_changing_identities_keeps_the_preset_train_share():
    assert synth_config("paper", identities=50).train_identities == 20
    assert synth_config("paper", identities=50, train_identities=30).train_identities == 30


def test_val_people_are_the_last_tenth_of_the_train_side_and_the_test_people_stay():
    demo = faces_table(synth_config("paper", identities=115, train_identities=100))
    people = demo.groupby("identity", sort=False)["split"].first()
    assert list(people[people == "train"].index) == [f"id{i:04d}" for i in range(90)]
    assert list(people[people == "val"].index) == [f"id{i:04d}" for i in range(90, 100)]
    assert list(people[people == "test"].index) == [f"id{i:04d}" for i in range(100, 115)]
    config = synth_config("paper", identities=115, train_identities=100, val_identities=0)
    assert config.val_identities == 0 and set(faces_table(config)["split"]) == {"train", "test"}
    assert synth_config("paper", identities=50).val_identities == 2  # re-resolved for the 20 train people


def test_a_config_saved_before_val_splits_reads_back_with_none():
    record = synth_config("paper").to_json()
    del record["val_identities"]
    assert SynthConfig.from_json(record).val_identities == 0


def test_config_round_trips_through_json():
    config = synth_config("completion", identities=7, image_size=24)
    assert SynthConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("nope", {}, "unknown preset"),
        ("small", {"image_size": 4}, "at least 8"),
        ("small", {"identities": -3}, "identities=-3"),
        ("small", {"identities": 0}, "identities=0"),
        ("small", {"accessories": ("none", "monocle")}, "monocle"),
        ("small", {"poses": (0.0, 120.0)}, r"\+120"),
        ("small", {"identity_spread": -1.0}, "identity_spread"),
        ("small", {"train_identities": 30}, "train_identities"),
        ("small", {"val_identities": 16}, r"val_identities=16: must be between 0 and 15"),
        ("small", {"val_identities": -1}, "val_identities=-1"),
        ("small", {"illumination_subset": ("42",)}, "'42'"),
        ("small", {"seed": -1}, "seed"),
        ("small", {"colour": 3}, "colour"),
    ],
)
def test_bad_settings_raise_data_error_naming_them(preset, overrides, message):
    with pytest.raises(DataError, match=message):
        synth_config(preset, **overrides)


def test_twenty_illuminations_are_ambient_plus_frontal_hemisphere_flashes():
    directions = light_directions(20, 90.0)
    assert directions.shape == (20, 3)
    assert not directions[0].any()
    assert np.allclose(np.linalg.norm(directions[1:], axis=1), 1.0)
    assert (directions[1:, 2] >= -1e-6).all()  # in front of the face
    assert directions[1:, 0].min() < -0.9 and directions[1:, 0].max() > 0.9  # from far left to far right


# -- identities ----------------------------------------------------------------------------------


def test_identity_parameters_depend_only_on_seed_and_index():
    assert sample_head(3, 5, 1.0) == sample_head(3, 5, 1.0)
    assert sample_head(3, 5, 1.0) != sample_head(3, 6, 1.0)
    assert sample_head(3, 5, 1.0) != sample_head(4, 5, 1.0)
    assert sample_head(3, 5, 0.0) == mean_head()


def test_same_seed_renders_the_same_images_and_another_seed_does_not():
    first = render_faceset(tiny(seed=7), progress=False).images
    again = render_faceset(tiny(seed=7), progress=False).images
    other = render_faceset(tiny(seed=8), progress=False).images
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_adding_identities_leaves_earlier_identities_unchanged():
    two = render_faceset(tiny(identities=2), progress=False)
    three = render_faceset(tiny(identities=3), progress=False)
    assert np.array_equal(two.images, three.images[: len(two)])
    assert list(three.faces["identity"].unique()) == ["id0000", "id0001", "id0002"]


def test_zero_identity_spread_renders_every_identity_alike():
    faceset = render_faceset(tiny(identities=3, identity_spread=0.0), progress=False)
    per_identity = faceset.images.reshape(3, -1, 16, 16)
    assert np.array_equal(per_identity[0], per_identity[1]) and np.array_equal(per_identity[0], per_identity[2])


def test_identities_differ_at_default_spread():
    faceset = render_faceset(tiny(identities=2), progress=False)
    per_identity = faceset.images.reshape(2, -1, 16, 16).astype(int)
    assert np.abs(per_identity[0] - per_identity[1]).mean() > 2.0


# -- pose and light ------------------------------------------------------------------------------


def test_pose_changes_the_image():
    images = images_of(tiny()).astype(int)[0, 0]  # (P, L, H, W)
    assert np.abs(images[0, 0] - images[1, 0]).mean() > 3.0
    assert np.abs(images[1, 0] - images[2, 0]).mean() > 3.0


def test_turning_left_mirrors_turning_right_for_the_mean_face_under_ambient_light():
    images = images_of(tiny(identity_spread=0.0, image_size=32, supersample=3))[0, 0]
    left, right = images[0, 0].astype(int), images[2, 0].astype(int)  # -30 and +30, ambient "00"
    assert np.abs(left - right[:, ::-1]).mean() < 0.5
    assert np.abs(left - right).mean() > 3.0  # and they are not simply the same image


def test_flashes_are_fixed_in_the_camera_frame_so_lighting_mirrors_with_pose():
    images = images_of(tiny(identity_spread=0.0, image_size=32, supersample=3))[0, 0]
    lit_left_turned_left, lit_right_turned_right = images[0, 1].astype(int), images[2, 2].astype(int)
    assert np.abs(lit_left_turned_left - lit_right_turned_right[:, ::-1]).mean() < 0.5


def test_light_from_the_left_brightens_the_left_half_of_the_face():
    images = images_of(tiny(image_size=32, supersample=3))[0, 0].astype(float)
    frontal_from_left, frontal_from_right = images[1, 1], images[1, 2]  # pose 0; lights "04" (az -45), "10" (az +45)
    face = slice(8, 28)
    left, right = slice(6, 16), slice(16, 26)
    assert frontal_from_left[face, left].mean() > frontal_from_left[face, right].mean() + 10
    assert frontal_from_right[face, right].mean() > frontal_from_right[face, left].mean() + 10


def test_a_tall_occluder_shadows_the_side_away_from_the_light():
    height, width = 12, 12
    heights = np.full((1, height * width), 0.0, np.float32)
    block = np.zeros((height, width), bool)
    block[4:8, 5:7] = True
    heights[0, block.ravel()] = 30.0
    from_left = shadow_rays(np.array([-0.6, 0.0, 0.8]), height, width)
    shadow = cast_shadow(heights, from_left, 0.1).reshape(height, width)
    assert shadow[5, 8:].min() == 1.0  # right of the block: in its shadow
    assert shadow[5, :5].max() == 0.0  # left of the block: toward the light
    assert shadow[0, :].max() == 0.0  # rows the block does not cover
    assert shadow_rays(np.array([0.0, 0.0, 1.0]), height, width) is None  # on-axis light casts nothing visible


def test_empty_pixels_cast_no_shadow():
    heights = np.full((1, 64), EMPTY, np.float32)
    heights[0, 36] = 0.0
    rays = shadow_rays(np.array([0.7, 0.1, 0.7]), 8, 8)
    assert cast_shadow(heights, rays, 0.1)[0, 36] == 0.0


# -- accessories and occlusion -------------------------------------------------------------------


def test_every_accessory_changes_the_face():
    config = tiny(poses=(0.0,), illumination_subset=("07",), accessories=PRESETS["accessory"].accessories)
    images = images_of(config).astype(int)[:, 0, 0, 0]  # (A, H, W)
    for a in range(1, len(images)):
        assert np.abs(images[a] - images[0]).mean() > 1.0, config.accessories[a]


def test_sunglasses_darken_the_eyes_and_hats_cover_the_top():
    config = tiny(poses=(0.0,), illumination_subset=("07",), accessories=("none", "sunglasses", "beanie"), image_size=32, supersample=3)
    none, sunglasses, beanie = images_of(config).astype(float)[:, 0, 0, 0]
    eyes, top = (slice(12, 15), slice(8, 24)), (slice(0, 5), slice(6, 26))
    assert sunglasses[eyes].mean() < none[eyes].mean() - 20
    assert np.abs(beanie[top] - none[top]).mean() > 10


def test_eye_bar_blacks_out_the_eyes_in_every_pose():
    config = tiny(occlusion=("no", "yes"), image_size=32, supersample=3)
    images = images_of(config)[0]  # (O, P, L, H, W)
    clear, barred = images[0], images[1]
    eye_row = int(0.42 * 32)
    assert (barred[:, :, eye_row, 12:20] == 0).all()
    assert (clear[:, :, eye_row, 12:20] > 0).any()
    assert np.array_equal(barred[:, :, -6:], clear[:, :, -6:])  # the mouth and chin stay as they were


# -- FaceSet output ------------------------------------------------------------------------------


def test_rendered_faceset_has_the_documented_columns_and_types(tmp_path):
    config = tiny(accessories=("none", "cap"))
    faceset = render_faceset(config, progress=False)
    assert faceset.images.shape == (config.image_count, 16, 16) and faceset.images.dtype == np.uint8
    assert list(faceset.faces.columns) == ["identity", "pose", "illumination", "accessory", "split", "source"]
    assert faceset.vocabulary("pose") == ("-30", "0", "+30")
    assert faceset.vocabulary("accessory") == ("none", "cap")
    assert set(faceset.faces["source"]) == {"synthpie"}
    assert faceset.faces.groupby("identity")["split"].first().to_dict() == {"id0000": "train", "id0001": "test"}
    assert config.val_identities == 0  # one train person stays train
    written = FaceSet.open(faceset.write(tmp_path / "set"))
    assert np.array_equal(written.images, faceset.images)
    assert SynthConfig.from_json(written.info.extra["synth_config"]) == config
    assert written.info.extra["render_seconds"] > 0
    assert written.info.provenance["seed"] == config.seed


def test_output_size_is_any_size_asked_for():
    faceset = render_faceset(tiny(image_size=20, poses=(0.0,), illumination_subset=("07",)), progress=False)
    assert faceset.image_size == (20, 20)


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_synth_then_show(tmp_path):
    from rbg.cli import cli

    out = tmp_path / "faces"
    result = CliRunner().invoke(cli, ["data", "synth", "--preset", "small", "--identities", "2", "--size", "16", "--eye-bar",
                                      "--train-identities", "2", "--val-identities", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rendered 112 images in" in result.output
    assert "occluded" in result.output and "pose" in result.output
    faceset = FaceSet.open(out)
    assert len(faceset) == 2 * 7 * 4 * 2 and faceset.vocabulary("occluded") == ("no", "yes")
    assert faceset.info.val_identities == ("id0001",) and not faceset.has_split("test")
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(cli, ["data", "show", str(out), "--out", str(sheet)])
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "112 images of 16×16, 2 identities" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--size", "4"], "at least 8"),
        (["--identities", "-2"], "identities=-2"),
        (["--identities", "4", "--train-identities", "3", "--val-identities", "3"], "val_identities=3: must be between 0 and 2"),
    ],
)
def test_cli_synth_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    from rbg.cli import cli

    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_small_preset_renders_672_faces_of_32_pixels():
    faceset = render_faceset(synth_config("small"), progress=False)
    assert faceset.images.shape == (672, 32, 32) and faceset.images.dtype == np.uint8
    assert faceset.num_identities == 24
    assert faceset.faces.groupby("split")["identity"].nunique().to_dict() == {"train": 14, "val": 2, "test": 8}
    assert faceset.images.std() > 20  # faces, not blank frames
