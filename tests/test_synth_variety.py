"""SynthPIE's variety knobs: expressions, sex and age, skin texture, backdrops, exposure, tilt, noise, framing."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.synth import SynthConfig, render_faceset, synth_config
from facedata.synth.heads import sample_head
from facedata.synth.presets import EXPRESSION_NAMES
from facedata.synth.render import frame_for, identity_head, light_rig, render_identity
from facedata.synth.variety import draw_person, express

PLAIN = dict(identities=2, train_identities=1, poses=(-45.0, 0.0, 45.0), illumination_subset=("07",), image_size=24, supersample=2)


def plain(**overrides) -> SynthConfig:
    return SynthConfig(**{**PLAIN, **overrides})


def images_of(config: SynthConfig, index: int = 0) -> np.ndarray:
    """(expressions, accessories, occlusion, poses, illuminations, H, W) uint8."""
    frame = frame_for(config)
    return render_identity(config, index, frame, light_rig(config, frame))


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_every_knob_at_zero_renders_the_plain_images():
    base = plain()
    explicit = plain(expressions=("neutral",), sex_and_age=False, skin_texture=0.0, backdrop="flat", exposure=0.0, tilt=0.0, noise=0.0)
    assert np.array_equal(images_of(base), images_of(explicit))


def test_varied_preset_counts_and_factors():
    config = synth_config("varied")
    assert config.expressions == EXPRESSION_NAMES and len(EXPRESSION_NAMES) == 7
    assert config.image_count == 400 * 7 * 7 * 5
    assert config.varied and config.sex_and_age


def test_expressions_change_the_lower_face_most():
    config = plain(expressions=("neutral", "happy", "surprised"), image_size=32)
    block = images_of(config)[:, 0, 0, 1, 0]  # frontal
    neutral = block[0]
    for changed in block[1:]:
        d = diff(changed, neutral)
        assert d.max() > 30  # the mouth opens
        assert d[20:26].mean() > 3 * d[:8].mean() + 1  # mouth rows change more than the top of the head


def test_expression_is_a_factor_column_of_the_faceset():
    config = plain(expressions=("neutral", "angry"))
    faceset = render_faceset(config, progress=False)
    assert faceset.vocabulary("expression") == ("neutral", "angry")
    assert list(faceset.faces.columns) == ["identity", "pose", "illumination", "expression", "split", "source"]
    first = faceset.faces.iloc[: len(config.poses)]
    assert set(first["expression"]) == {"neutral"}  # render order: identity, expression, ..., pose, light


def test_expressions_keep_identity_shape_and_only_move_the_named_parameters():
    p = sample_head(0, 3, 0.6)
    for name in EXPRESSION_NAMES:
        moved = {k for k in vars(p) if getattr(express(p, name), k) != getattr(p, k)}
        assert moved <= {"mouth_curve", "mouth_open", "teeth", "cheek_raise", "eye_open", "mouth_width", "brow_y", "brow_inner",
                         "lip_fullness", "nose_wrinkle"}, (name, moved)
    assert express(p, "neutral") == p


def test_sex_and_age_leave_the_sampled_shape_stream_alone():
    config = plain(sex_and_age=True, identities=40)
    sexes = {draw_person(config.seed, i).sex for i in range(40)}
    assert sexes == {-1, 1}
    for i in range(40):
        person = draw_person(config.seed, i)
        head = identity_head(config, i)
        base = sample_head(config.seed, i, config.identity_spread)
        assert head.skin_tone == base.skin_tone and head.eye_spacing == base.eye_spacing  # not touched
        if person.sex < 0:
            assert head.beard == 0.0 and head.hair_length >= 0.3
            assert head.jaw_width < base.jaw_width
        else:
            assert head.jaw_width > base.jaw_width
        assert (head.wrinkles > 0) == (person.age > 0.3)


def test_long_hair_darkens_the_sides_below_the_ears():
    config = plain(image_size=32)
    p = identity_head(config, 0)
    short = replace(p, hair_tone=0.05)
    long = replace(short, hair_length=1.0, hair_volume=short.hair_volume + 0.1)
    from facedata.synth import render as render_module

    frame = frame_for(config)
    rig = light_rig(config, frame)
    shots = []
    for head in (short, long):
        eyes = render_module.eye_centers(head)
        surfaces = render_module.identity_scenes(config, head, frame)[0]
        yaws = np.radians(np.asarray([0.0]))
        display = render_module.shade(render_module.splat(surfaces, yaws, eyes, frame), rig, config, frame.margin)
        shots.append(render_module.downsample(display, frame.supersample)[0, 0].astype(float))
    beside_jaw = (slice(17, 24), np.r_[2:8, 24:30])  # rows below the ears, columns beside the face
    assert shots[1][beside_jaw].mean() < shots[0][beside_jaw].mean() - 10


def test_skin_texture_changes_the_face_but_not_the_backdrop():
    smooth, textured = images_of(plain()), images_of(plain(skin_texture=2.0))
    d = diff(smooth, textured)[0, 0, 0, 1, 0]
    assert d[8:18, 8:16].mean() > 0.5 and d[0, 0] == 0 and d[0, -1] == 0


def test_varied_backdrop_is_fixed_within_a_session_and_differs_between_sessions():
    config = plain(backdrop="varied", expressions=("neutral", "happy"), identities=3, head_scale=0.25)
    blocks = [images_of(config, i) for i in range(3)]
    corners = [b[e, 0, 0, :, 0, 0, 0] for b in blocks for e in range(2)]  # top-left pixel of every pose
    for per_pose in corners:
        assert len(set(per_pose.tolist())) == 1  # same backdrop in all poses of a session
    assert len({int(c[0]) for c in corners}) > 2


def test_tilt_and_noise_are_deterministic_and_bounded():
    config = plain(tilt=10.0, noise=6.0, exposure=0.2)
    first, again = images_of(config), images_of(config)
    assert np.array_equal(first, again)
    quiet = images_of(plain())
    assert diff(first, quiet).mean() > 2
    other_seed = images_of(replace(config, seed=1))
    assert not np.array_equal(first, other_seed)


def test_noise_alone_keeps_the_picture():
    clean, noisy = images_of(plain()), images_of(plain(noise=4.0))
    d = noisy.astype(float) - clean.astype(float)
    assert 0.3 < d.std() < 4.0 and abs(d.mean()) < 0.5


def test_framing_moves_and_shrinks_the_head():
    big, small = images_of(plain(image_size=32)), images_of(plain(image_size=32, head_scale=0.25))
    background = images_of(plain(image_size=32))[0, 0, 0, 1, 0, 0, 0]
    head_big = (diff(big[0, 0, 0, 1, 0], np.full((32, 32), background)) > 8).sum()
    head_small = (diff(small[0, 0, 0, 1, 0], np.full((32, 32), background)) > 8).sum()
    assert head_small < 0.75 * head_big


def test_a_raised_head_shows_its_face_higher_and_a_lowered_one_lower():
    level, raised, lowered = (images_of(plain(image_size=32, pitch=p)) for p in (0.0, 30.0, -30.0))
    assert np.array_equal(level, images_of(plain(image_size=32)))
    background = level[0, 0, 0, 1, 0, 0, 0]

    def head_rows(images: np.ndarray) -> np.ndarray:  # the frontal head's rows, weighted by how much of it each holds
        mask = diff(images[0, 0, 0, 1, 0], np.full((32, 32), background)) > 8
        return (mask.sum(1) * np.arange(32)).sum() / mask.sum()

    assert head_rows(raised) < head_rows(level) < head_rows(lowered)


def test_varied_config_round_trips_through_json():
    config = synth_config("varied", identities=5)
    assert SynthConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"expressions": ("neutral", "smug")}, "smug"),
        ({"expressions": ()}, "expression"),
        ({"backdrop": "jungle"}, "backdrop 'jungle'"),
        ({"tilt": 90.0}, "tilt=90.0"),
        ({"pitch": 60.0}, "pitch=60.0"),
        ({"noise": -1.0}, "noise=-1.0"),
        ({"exposure": 3.0}, "exposure=3.0"),
        ({"skin_texture": 9.0}, "skin_texture=9.0"),
        ({"head_scale": 0.9}, "head_scale=0.9"),
        ({"eye_row": 0.05}, "eye_row=0.05"),
    ],
)
def test_bad_variety_settings_raise_data_error_naming_them(overrides, message):
    with pytest.raises(DataError, match=message):
        synth_config("small", **overrides)


def test_cli_synth_varied_with_poses(tmp_path):
    from rbg.cli import cli

    out = tmp_path / "faces"
    args = ["data", "synth", "--preset", "varied", "--identities", "2", "--size", "16", "--poses=-90,0,90", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    faceset = FaceSet.open(out)
    assert faceset.vocabulary("pose") == ("-90", "0", "+90")
    assert len(faceset.vocabulary("expression")) == 7 and len(faceset) == 2 * 7 * 3 * 5


def test_cli_synth_bad_poses_exit_2_with_one_line(tmp_path):
    from rbg.cli import cli

    result = CliRunner().invoke(cli, ["data", "synth", "--poses", "left,right", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--poses" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()
