"""benchmarks/bench_retrieval.py on a tiny gallery: every factory measured, its size and recall what the index holds."""

from bench_retrieval import RetrievalBenchConfig, run
from fakes import FakeGenerator, tiny_gallery
from index_sizes import HEADERS, stored_bytes


def test_the_retrieval_benchmark_measures_every_factory_with_the_recall_it_gives(tmp_path):
    config = RetrievalBenchConfig(queries=30, latency_runs=2, batch=8, build_batch=16)
    record = run(FakeGenerator(), tiny_gallery(), config, tmp_path, progress=False)
    rows = {r["factory"]: r for r in record["factories"]}
    assert list(rows) == ["Flat", "PCA42,Flat", "IVF1,PQ64x4", "HNSW32"]
    n, d = record["gallery"]["count"], record["gallery"]["dimension"]
    assert (n, d) == (42, 192) and record["build"]["images_per_s"] > 0 and record["queries"]["count"] == 30
    assert rows["Flat"]["recall_c1"]["1"] == 100.0 and rows["Flat"]["recall_c2"]["1"] == 100.0  # the fake generates exactly
    for name, row in rows.items():
        assert "skipped" not in row, row
        low = stored_bytes(name, n, d)
        assert low <= row["index_bytes"] <= low + HEADERS, (name, row["index_bytes"], low)
        assert row["vs_flat"]["index_bytes"] == round(row["index_bytes"] / rows["Flat"]["index_bytes"], 4)
        assert row["peak_rss_bytes"] >= row["rss_growth_bytes"] >= 0
        assert row["latency_ms"] > 0 and row["batch_qps"] > 0
        recall = [row["recall_c1"][k] for k in ("1", "5", "20")]
        assert recall == sorted(recall) and all(row["recall_c2"][k] <= row["recall_c1"][k] for k in ("1", "5", "20"))
    assert rows["Flat"]["vs_flat"] == {"search_qps": 1.0, "index_bytes": 1.0, "latency": 1.0}
    assert rows["IVF1,PQ64x4"]["index_bytes"] < rows["Flat"]["index_bytes"]
