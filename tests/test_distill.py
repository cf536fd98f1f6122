"""Distillation: a descriptor head on the refiner learns given descriptors beside the pixel loss."""

import json

import numpy as np
import pytest
import torch

from facedata.errors import UserError
from generator.distill import descriptor_targets, distill_loss
from generator.inference import Generator
from generator.train import TrainConfig, train
from test_training import quick, tiny_faceset


def test_targets_are_own_descriptors_where_found_else_the_identity_mean_else_nan():
    descriptors = np.arange(12, dtype=np.float32).reshape(6, 2)
    found = np.array([True, False, True, False, False, True])
    identities = np.array(["a", "a", "a", "b", "b", "c"])
    targets = descriptor_targets(descriptors, found, identities)
    np.testing.assert_array_equal(targets[[0, 2, 5]], descriptors[[0, 2, 5]])
    np.testing.assert_array_equal(targets[1], descriptors[[0, 2]].mean(axis=0))  # a's found faces
    assert np.isnan(targets[[3, 4]]).all()  # b has no found face: no target


def test_the_loss_skips_rows_without_a_target():
    predicted = torch.tensor([[1.0, 0.0], [5.0, 5.0], [0.0, 0.0]])
    targets = torch.tensor([[0.0, 0.0], [float("nan"), 0.0], [0.0, 2.0]])
    assert float(distill_loss(predicted, targets)) == pytest.approx((1.0 + 4.0) / 2)
    assert distill_loss(predicted, torch.full((3, 2), float("nan"))) is None


def identity_descriptors(faces, dim: int = 8) -> np.ndarray:
    """One random unit descriptor per identity, test rows NaN (never read)."""
    rng = np.random.default_rng(1)
    people = {p: v / np.linalg.norm(v) for p, v in zip(faces.identities(), rng.normal(size=(faces.num_identities, dim)))}
    out = np.stack([people[p] for p in faces.faces["identity"]]).astype(np.float32)
    out[(faces.faces["split"] == "test").to_numpy()] = np.nan
    return out


def test_a_distilled_run_learns_the_descriptors_and_serves_them_as_a_feature_layer(tmp_path):
    faces = tiny_faceset(identities=4, val_identities=1)
    descriptors = identity_descriptors(faces)
    config = quick(epochs=4, max_pairs=64, stages=(1, 2), distill_weight=1.0)
    train(faces, config, tmp_path / "run", progress=False, descriptors=descriptors,
          descriptor_source={"images": "given"})
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    stage2 = [h for h in log if h["stage"] == 2]
    assert stage2[-1]["train_distill_loss"] < 0.7 * stage2[0]["train_distill_loss"], stage2
    assert all(np.isfinite(h["val_stage2_distill"]) for h in stage2)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["distill"] == {"images": "given"}

    gen = Generator.load(tmp_path / "run", device="cpu")
    assert "stage2.descriptor" in gen.feature_layers and gen.feature_dim("stage2.descriptor") == 8
    out = gen.features(faces.images[:3], "0", layer="stage2.descriptor")
    assert out.shape == (3, 8) and np.isfinite(out).all()


def test_distillation_needs_descriptors_and_a_weight(tmp_path):
    faces = tiny_faceset(identities=3)
    with pytest.raises(UserError, match="needs both descriptors and --distill-weight"):
        train(faces, quick(stages=(1, 2), distill_weight=1.0), tmp_path / "a", progress=False)
    with pytest.raises(UserError, match="needs both descriptors and --distill-weight"):
        train(faces, quick(stages=(1, 2)), tmp_path / "b", progress=False, descriptors=identity_descriptors(faces))


def test_resuming_a_distilled_run_without_distillation_is_refused(tmp_path):
    faces = tiny_faceset(identities=3)
    train(faces, quick(epochs=1, stages=(1, 2), distill_weight=1.0), tmp_path / "run", progress=False,
          descriptors=identity_descriptors(faces))
    with pytest.raises(UserError, match="distill_weight: 1.0 → 0.0"):
        train(faces, quick(epochs=2, stages=(1, 2)), tmp_path / "run", progress=False)


def test_the_bench_ranks_a_distilled_model_by_its_head_too_and_may_choose_it_on_val(tmp_path):
    from fakes import save_untrained

    from facedata.faceset import FaceSet
    from retrieval.bench_methods import DISTILLED
    from retrieval.benchmark import BenchConfig, run_benchmark

    faces = FaceSet.open(tiny_faceset(identities=6, test_identities=2, val_identities=2).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model", descriptor_dim=8))
    config = BenchConfig(queries=30, generation_pairs=0, grid_queries=2, batch_size=64, all_values=True, ks=(1, 5))
    record = run_benchmark(generator, faces, tmp_path / "report", config)
    rows = {(r["method"], r["features"]) for r in record["results"]}
    assert {("ours, classifier pose", DISTILLED), ("ours, all poses, classifier pose", DISTILLED)} <= rows
    assert set(record["chosen"]["val_scores"]) == {f"views {v}, Deep weight 0" for v in
                                                   ("all", "target", "kept", "distilled all", "distilled target")}
