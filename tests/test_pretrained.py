"""The shipped weights load and do their job on faces they never saw (identities past the train split)."""

from dataclasses import replace
import numpy as np
import pytest

from facedata.synth.presets import synth_config
from facedata.synth.render import frame_for, light_rig, render_identity
from generator.inference import Generator

UNSEEN = 3  # test identities rendered per model


def unseen_faces(preset: str, **overrides) -> tuple[np.ndarray, object]:
    """Renders of the first few test identities of `preset`: (identities, accessories, poses, size, size) uint8."""
    config = replace(synth_config(preset), **overrides)
    frame = frame_for(config)
    rig = light_rig(config, frame)
    first = config.train_identities
    blocks = [render_identity(config, i, frame, rig)[0, :, 0, :, 0] for i in range(first, first + UNSEEN)]
    return np.stack(blocks), config


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@pytest.mark.slow
def test_shipped_pose_model_turns_unseen_faces_far_better_than_copying_them():
    generator = Generator.load("synthpie-pose", device="cpu")
    assert generator.task == "pose" and list(generator.vocabulary) == ["-45", "-30", "-15", "0", "+15", "+30", "+45"]
    faces, config = unseen_faces("paper", illumination_subset=("07",))
    poses = config.pose_labels
    frontal = faces[:, 0, poses.index("0")]
    for target in ("-45", "-15", "+30"):
        truth = faces[:, 0, poses.index(target)]
        _, stage2 = generator.generate(frontal, [target] * UNSEEN)
        generated, copied = mse(stage2, truth), mse(frontal, truth)
        assert generated < 150 and generated < copied / 3, (target, generated, copied)


@pytest.mark.slow
def test_shipped_accessory_model_puts_on_and_takes_off_accessories_of_unseen_faces():
    generator = Generator.load("synthpie-accessory", device="cpu")
    assert generator.task == "accessory" and "sunglasses" in generator.vocabulary
    faces, config = unseen_faces("accessory")
    accessories = config.accessories
    for source, target in (("none", "sunglasses"), ("none", "cap"), ("beanie", "none")):
        start, truth = faces[:, accessories.index(source), 0], faces[:, accessories.index(target), 0]
        _, stage2 = generator.generate(start, [target] * UNSEEN)
        generated, copied = mse(stage2, truth), mse(start, truth)
        assert generated < 100 and generated < copied / 3, (source, target, generated, copied)
