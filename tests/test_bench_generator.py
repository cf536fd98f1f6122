"""The generator speed benchmark measures the paper's network and the skip architecture in one run."""

from bench_generator import BenchConfig, run


def test_both_architectures_are_measured_side_by_side():
    record = run(BenchConfig(batches=(2,), min_seconds=0.01, repeats=1, train_batch=2, image_size=(16, 16)))
    assert set(record["gflop_per_image"]) == {"paper", "skip"}
    assert record["gflop_per_image"]["skip"]["stage1"] != record["gflop_per_image"]["paper"]["stage1"]
    for arch in ("paper", "skip"):
        rows = [r for r in record["rows"] if r["arch"] == arch]
        assert {r["what"] for r in rows} == {"inference", "train stage 1", "train stage 2"}
        assert all(r["per_s"] > 0 for r in rows)
