"""The SynthPIE calibration tunes on val people that no benchmark FaceSet of the paper preset holds."""

import sys
from pathlib import Path

import numpy as np

from facedata.faceset import FaceSet
from facedata.synth import synth_config
from facedata.synth.dataset import faces_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from calibrate_synthpie import calibration_config, calibration_splits, paper_train_people  # noqa: E402


def test_calibration_fits_on_the_paper_train_people_and_searches_val_people_after_every_benchmark_person():
    config = calibration_config(val_people=3, identity_spread=0.4)
    assert config.identity_spread == 0.4 and config.poses == synth_config("paper").poses
    table = faces_table(config)
    faces = FaceSet.from_arrays(np.zeros((len(table), 1, 1), np.uint8), table, name="calibration")
    train, gallery = calibration_splits(faces, paper_train_people())
    assert train.identities() == [f"id{i:04d}" for i in range(90)]  # the benchmark's train split
    assert gallery.identities() == ["id0249", "id0250", "id0251"]
    benchmark = faces_table(synth_config("paper"))
    assert not set(gallery.identities()) & set(benchmark["identity"])
    assert not faces.has_split("test")
