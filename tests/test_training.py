"""Training (§3.4): loss goes down, runs are deterministic, resume continues exactly, NaN stops cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facedata.errors import UserError
from facedata.faceset import FaceSet
from generator import train as train_module
from generator.checkpoint import load_checkpoint, read_info
from generator.inference import Generator
from generator.tasks import get_task, task_pairs
from generator.train import TrainConfig, TrainingDiverged, make_optimizer, train

POSES = ("-45", "-30", "-15", "0", "+15", "+30", "+45")


def tiny_faceset(identities: int = 4, illuminations: int = 2, size: int = 16, test_identities: int = 1,
                 occlusion: bool = False, seed: int = 0, val_identities: int = 0) -> FaceSet:
    """Disc 'faces' whose centre moves with pose, brightness with light, radius with identity.

    The last `test_identities` people are test, the `val_identities` before them val.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, rows = [], []
    for i in range(identities):
        radius = 0.25 + 0.1 * rng.random()
        for li in range(illuminations):
            for pi, pose in enumerate(POSES):
                cx = 0.5 + (pi - 3) * 0.04
                face = (xx - cx) ** 2 + (yy - 0.5) ** 2 < radius**2
                eyes = np.minimum((xx - cx + 0.1) ** 2, (xx - cx - 0.1) ** 2) + (yy - 0.42) ** 2 < 0.004
                image = 30 + (120 + 60 * li) * face - 80 * eyes + rng.normal(0, 2, (size, size))
                for occluded in ("no", "yes") if occlusion else ("no",):
                    shown = image.copy()
                    if occluded == "yes":
                        shown[int(0.35 * size) : int(0.5 * size)] = 0
                    images.append(np.clip(shown, 0, 255).astype(np.uint8))
                    split = "test" if i >= identities - test_identities else \
                        "val" if i >= identities - test_identities - val_identities else "train"
                    row = {"identity": f"id{i:02d}", "pose": pose, "illumination": f"L{li}", "split": split}
                    rows.append({**row, "occluded": occluded} if occlusion else row)
    return FaceSet.from_arrays(np.stack(images), pd.DataFrame(rows), name="tiny", factors={"pose": POSES})


def quick(**overrides) -> TrainConfig:
    """A config small enough for a unit test: 64 pairs, 16×16 images, one thread."""
    base = dict(epochs=2, max_pairs=64, batch_size=16, val_pairs=20, threads=1, device="cpu", stages=(1,))
    return TrainConfig(**{**base, **overrides})


def weights_hash(run: Path) -> str:
    return read_info(run)[1].weights_sha256


@pytest.fixture(scope="module")
def faces():
    return tiny_faceset(val_identities=1)


def test_a_few_epochs_lower_the_training_loss(faces, tmp_path):
    train(faces, quick(epochs=3, max_pairs=48, stages=(1, 2)), tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [(h["stage"], h["epoch"]) for h in log] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    for stage in (1, 2):
        losses = [h["train_loss"] for h in log if h["stage"] == stage]
        assert losses[-1] < 0.8 * losses[0], losses
    assert all(np.isfinite(h["val_stage1_mse"]) and h["val_pairs"] == 20 for h in log)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_pairs"] == 48 and config["lr"] == 1e-3 and config["schedule"] == "cosine"
    assert config["normalization"] == config["normalization_stats"]["mode"] == "dataset"
    assert config["provenance"]["seed"] == 0
    assert config["validation"]["split"] == "val" and config["validation"]["identities"] == 1


def test_validation_runs_on_the_val_people_and_never_on_the_test_people(tmp_path, monkeypatch, capsys):
    built = []
    real = train_module.pair_set

    def recording(faces, *args, **kwargs):
        built.append(faces.identities())
        return real(faces, *args, **kwargs)

    monkeypatch.setattr(train_module, "pair_set", recording)
    faces = tiny_faceset(identities=5, test_identities=1, val_identities=1)
    train(faces, quick(epochs=1), tmp_path / "run", progress=False)
    assert built == [["id00", "id01", "id02"], ["id03"]]  # train pairs, then val pairs; id04 (test) is never read
    assert "tiny: validation on 20 pairs of the 1 val people" in capsys.readouterr().err
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["val_pairs"] == 20 and np.isfinite(log[-1]["val_stage1_mse"])


def test_without_val_people_training_says_so_once_and_does_not_validate_on_test(tmp_path, capsys):
    train(tiny_faceset(), quick(epochs=2), tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert err.count("tiny: validation off: no val split") == 1
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and not any(k.startswith("val_") for h in log for k in h)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["validation"]["split"] is None and config["val_pairs_used"] == 0


def test_training_is_deterministic_with_a_seed(faces, tmp_path):
    train(faces, quick(epochs=1), tmp_path / "a", progress=False)
    train(faces, quick(epochs=1), tmp_path / "b", progress=False)
    train(faces, quick(epochs=1, seed=1), tmp_path / "c", progress=False)
    assert weights_hash(tmp_path / "a") == weights_hash(tmp_path / "b") != weights_hash(tmp_path / "c")


def test_rerunning_with_more_epochs_continues_to_the_same_weights(faces, tmp_path):
    # a constant schedule: with cosine, the decay is laid over the epochs asked for
    train(faces, quick(epochs=2, schedule="constant"), tmp_path / "straight", progress=False)
    train(faces, quick(epochs=1, schedule="constant"), tmp_path / "resumed", progress=False)
    train(faces, quick(epochs=2, schedule="constant"), tmp_path / "resumed", progress=False)
    assert weights_hash(tmp_path / "straight") == weights_hash(tmp_path / "resumed")
    log = (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def test_interruption_within_an_epoch_resumes_at_the_saved_step(faces, tmp_path, monkeypatch):
    train(faces, quick(epochs=1), tmp_path / "straight", progress=False)
    calls = {"n": 0}
    real_loss = train_module.pixel_loss

    def interrupted(task, output, target):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_loss(task, output, target)

    monkeypatch.setattr(train_module, "pixel_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(faces, quick(epochs=1, checkpoint_minutes=1e-9), tmp_path / "cut", progress=False)
    state = json.loads((tmp_path / "cut" / "resume" / "state.json").read_text())
    assert state["current"]["step"] == 2 and state["trained_epochs"]["1"] == 0
    monkeypatch.setattr(train_module, "pixel_loss", real_loss)
    train(faces, quick(epochs=1, checkpoint_minutes=1e-9), tmp_path / "cut", progress=False)
    assert weights_hash(tmp_path / "straight") == weights_hash(tmp_path / "cut")


def test_resuming_with_other_settings_is_refused(faces, tmp_path):
    train(faces, quick(epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match=r"lr: 0.001 → 0.01"):
        train(faces, quick(epochs=2, lr=1e-2), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="other data"):
        train(tiny_faceset(seed=1, identities=5), quick(epochs=2), tmp_path / "run", progress=False)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(faces, tmp_path, monkeypatch):
    train(faces, quick(epochs=1), tmp_path / "run", progress=False)
    before = weights_hash(tmp_path / "run")
    monkeypatch.setattr(train_module, "pixel_loss", lambda task, output, target: output.sum() * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at stage 1, epoch 2.*kept"):
        train(faces, quick(epochs=2), tmp_path / "run", progress=False)
    _, info, _ = load_checkpoint(tmp_path / "run")
    assert info.trained_epochs["1"] == 1 and weights_hash(tmp_path / "run") == before


def test_stage_two_alone_needs_a_trained_stage_one(faces, tmp_path):
    with pytest.raises(UserError, match="no trained stage 1"):
        train(faces, quick(stages=(2,)), tmp_path / "run", progress=False)


def test_an_unrelated_output_folder_is_refused(faces, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a training run folder"):
        train(faces, quick(), tmp_path, progress=False)


def test_paper_optimizer_scales_the_lr_to_the_mean_reduced_loss():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(params, TrainConfig(optimizer="paper").resolved(), pixels=32 * 32)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["lr"] == pytest.approx(1e-5 * 1024) and sgd.param_groups[0]["momentum"] == 0.95


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(UserError, match="valid: pose, accessory, completion"):
        TrainConfig(task="age").resolved()


def test_illumination_pairs_change_the_light_alone_and_train_a_relighting_model(tmp_path):
    faces = tiny_faceset(illuminations=3)
    pairs = task_pairs(get_task("illumination"), faces)
    table = faces.faces.reset_index(drop=True)
    source, target = table.iloc[pairs[:, 0]], table.iloc[pairs[:, 1]]
    assert len(pairs) == len(faces) * 2  # each face to the 2 other lights
    assert (source["illumination"].to_numpy() != target["illumination"].to_numpy()).all()
    assert (source[["identity", "pose"]].to_numpy() == target[["identity", "pose"]].to_numpy()).all()
    train(faces, quick(task="illumination", epochs=1, max_pairs=16), tmp_path / "run", progress=False)
    generator = Generator.load(tmp_path / "run", "cpu")
    assert generator.edit_factor == "illumination" and generator.vocabulary == ("L0", "L1", "L2")
    assert generator.generate(faces.images[:2], "L2")[1].shape == (2, 16, 16)


def test_completion_pairs_go_from_occluded_to_clear_and_train_with_mae(tmp_path):
    faces = tiny_faceset(occlusion=True)
    task = get_task("completion")
    pairs = task_pairs(task, faces)
    occluded = faces.faces["occluded"].to_numpy()
    assert len(pairs) == len(faces) // 2
    assert (occluded[pairs[:, 0]] == "yes").all() and (occluded[pairs[:, 1]] == "no").all()
    metrics = train(faces, quick(task="completion", epochs=1, max_pairs=16), tmp_path / "run", progress=False)
    assert metrics["loss"] == "mae"
    _, info, _ = load_checkpoint(tmp_path / "run")
    assert info.edit_factor == "occluded" and info.vocabulary == ("no", "yes")


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues_losing_at_most_one_epoch(tmp_path):
    tiny_faceset(identities=3, size=32).write(tmp_path / "faces")
    command = [sys.executable, "-c", "from rbg.cli import main; main()", "train", "--data",
               str(tmp_path / "faces"), "--out", str(tmp_path / "run"), "--epochs", "4", "--stage", "1",
               "--threads", "1", "--device", "cpu", "--val-pairs", "10", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 1):
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = log.read_text().count("\n")
    assert 1 <= done_before < 4
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert read_info(tmp_path / "run")[1].trained_epochs == {"1": 4, "2": 0}


def test_self_pairs_add_each_train_face_once_to_itself(faces):
    from generator.tasks import get_task
    from generator.train import pair_set

    train_faces = faces.split("train")
    plain = pair_set(train_faces, get_task("pose"), None, 0)
    with_self = pair_set(train_faces, get_task("pose"), None, 0, self_pairs=True)
    same = with_self.pairs[with_self.pairs[:, 0] == with_self.pairs[:, 1]]
    assert len(with_self.pairs) == len(plain.pairs) + len(train_faces)
    assert sorted(same[:, 0].tolist()) == list(range(len(train_faces)))


def test_skip_arch_trains_and_is_recorded_in_the_checkpoint(faces, tmp_path):
    from generator.checkpoint import read_info

    train(faces, TrainConfig(arch="skip", epochs=1, val_pairs=4, threads=1), tmp_path / "run", progress=False)
    _, info = read_info(tmp_path / "run" / "checkpoint")
    assert info.model_config.arch == "skip"


def test_mirror_adds_every_pair_flipped_with_the_mirrored_pose(faces):
    from generator.train import mirrored_codes, pair_set

    train_faces = faces.split("train")
    plain = pair_set(train_faces, get_task("pose"), None, 0)
    mirrored = pair_set(train_faces, get_task("pose"), None, 0, mirror=True)
    n = len(train_faces)
    assert len(mirrored.pairs) == 2 * len(plain.pairs) and len(mirrored.images) == 2 * n
    assert torch.equal(mirrored.images[n:], torch.flip(mirrored.images[:n], dims=[2]))
    vocabulary = train_faces.vocabulary("pose")
    flipped = [vocabulary[c] for c in mirrored.codes[n:]]
    assert flipped == [vocabulary[len(vocabulary) - 1 - c] for c in plain.codes]  # -45 ↔ +45 …
    assert mirrored_codes(("forward", "left", "right", "up"), "pose").tolist() == [0, 2, 1, 3]
    with pytest.raises(UserError, match="'\\+30' has none"):
        mirrored_codes(("0", "+30"), "pose")


def test_pair_match_is_recorded_and_changes_which_pairs_train(faces, tmp_path):
    from generator.checkpoint import read_info

    train(faces, TrainConfig(epochs=1, val_pairs=4, threads=1, pair_match=()), tmp_path / "run", progress=False)
    _, info = read_info(tmp_path / "run" / "checkpoint")
    assert info.training["pair_match"] == []
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_pairs"] > len(task_pairs(get_task("pose"), faces.split("train")))


def test_a_residual_refiner_trains_on_a_given_checkpoints_stage_one(faces, tmp_path):
    from generator.checkpoint import load_checkpoint

    train(faces, TrainConfig(epochs=1, stages=(1,), val_pairs=4, threads=1), tmp_path / "base", progress=False)
    train(faces, TrainConfig(epochs=1, stages=(2,), refiner="residual", val_pairs=4, threads=1), tmp_path / "res",
          init=tmp_path / "base", progress=False)
    base, _, _ = load_checkpoint(tmp_path / "base")
    refined, info, _ = load_checkpoint(tmp_path / "res")
    assert info.model_config.refiner == "residual" and info.trained_epochs == {"1": 1, "2": 1}
    for name, tensor in base.stage1.state_dict().items():
        assert torch.equal(tensor, refined.stage1.state_dict()[name]), name


def test_training_says_its_pairs_per_epoch_and_estimates_its_time(faces, tmp_path, capsys):
    train(faces, quick(epochs=2, max_pairs=48, batch_size=8, stages=(1, 2)), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "stage 1: 48 training pairs per epoch (6 batches of 8), epochs 1–2" in err
    assert "stage 2: 48 training pairs per epoch" in err
    estimates = [line for line in err.splitlines() if line.startswith("estimate at ")]
    assert len(estimates) == 2 and "for the rest of stage 1" in estimates[0] and "for the run" in estimates[0]
    assert "for the rest of stage 2" in estimates[1] and "for the run" not in estimates[1]
