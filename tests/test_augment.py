"""Framing jitter (generator.augment): sources moved and scaled as a re-crop would, a run records it."""

import json

import numpy as np
import pytest
import torch
from test_training import quick, tiny_faceset

from facedata.errors import UserError
from generator.augment import jitter_sources
from generator.train import train


class FixedDraws:
    """An rng whose normal() hands out given numbers, so the re-crop is known."""

    def __init__(self, *draws):
        self.draws = [np.asarray(d, dtype=float) for d in draws]

    def normal(self, loc, scale, size):
        return self.draws.pop(0).reshape(size)


def column_image(x: int, size: int = 16) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[..., x] = 1.0
    return image


def test_no_jitter_returns_the_sources_unchanged():
    x = torch.randn(3, 1, 8, 8)
    assert jitter_sources(x, (0.0, 0.0), np.random.default_rng(0)) is x


def test_a_crop_moved_right_by_a_quarter_side_shows_the_face_a_quarter_side_left():
    moved = jitter_sources(column_image(10), (0.1, 0.0), FixedDraws([[0.25, 0.0]]))
    profile = moved[0, 0].mean(0)
    assert int(profile.argmax()) == 6 and float(profile.max()) > 0.9


def test_a_crop_twice_the_side_shows_the_face_half_as_far_from_the_centre():
    wider = jitter_sources(column_image(12), (0.0, 0.1), FixedDraws([np.log(2.0)]))
    profile = wider[0, 0].mean(0)
    assert int(profile.argmax()) in (9, 10)  # the column at 12.5 px is 4.5 px from the centre 8: 2.25 px at half size


def test_a_jittered_run_records_its_jitter_and_refuses_to_resume_with_another(tmp_path):
    faces = tiny_faceset(val_identities=1)
    train(faces, quick(epochs=1, stages=(1, 2), jitter=(0.05, 0.1)), tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["jitter"] == [0.05, 0.1]
    with pytest.raises(UserError, match=r"jitter: \[0.05, 0.1\] → \[0.0, 0.0\]"):
        train(faces, quick(epochs=2, stages=(1, 2)), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="--jitter"):
        train(faces, quick(jitter=(-0.1, 0.0)), tmp_path / "other", progress=False)


def test_the_command_line_reads_jitter_and_refuses_a_malformed_one(tmp_path):
    from click.testing import CliRunner

    from rbg.cli import cli

    result = CliRunner().invoke(cli, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--jitter", "0.1"])
    assert result.exit_code == 2 and "--jitter" in result.output and "OFFSET:SCALE" in result.output
