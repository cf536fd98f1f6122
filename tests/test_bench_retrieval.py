"""benchmarks/bench_retrieval.py on a tiny gallery: every factory measured, its size and recall what the index holds."""

from bench_retrieval import RetrievalBenchConfig, run
from fakes import FakeGenerator, tiny_gallery

HEADERS = 2048  # FAISS's per-index headers and small fields, on top of the arrays an index must store


def stored_bytes(factory: str, n: int, d: int, params: dict) -> int:
    """The float32 and code arrays a factory must write for n vectors of d dimensions (FAISS's layouts)."""
    p, m, nbits, nlist = params["pca"], params["m"], params["nbits"], params["nlist"]
    return {
        "Flat": n * d * 4,
        f"PCA{p},Flat": 2 * p * d * 4 + n * p * 4,  # the projection (A and its PCA matrix), then p-wide vectors
        f"IVF{nlist},PQ{m}x{nbits}": n * (m * nbits // 8 + 8) + m * 2**nbits * (d // m) * 4 + nlist * d * 4,  # codes+ids, codebooks, centroids
        "HNSW32": n * d * 4 + n * 2 * 32 * 4,  # the vectors and the level-0 links (2·M neighbours each)
    }[factory]


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
        low = stored_bytes(name, n, d, record["factory_params"])
        assert low <= row["index_bytes"] <= low + HEADERS, (name, row["index_bytes"], low)
        assert row["vs_flat"]["index_bytes"] == round(row["index_bytes"] / rows["Flat"]["index_bytes"], 4)
        assert row["peak_rss_bytes"] >= row["rss_growth_bytes"] >= 0
        assert row["latency_ms"] > 0 and row["batch_qps"] > 0
        recall = [row["recall_c1"][k] for k in ("1", "5", "20")]
        assert recall == sorted(recall) and all(row["recall_c2"][k] <= row["recall_c1"][k] for k in ("1", "5", "20"))
    assert rows["Flat"]["vs_flat"] == {"search_qps": 1.0, "index_bytes": 1.0, "latency": 1.0}
    assert rows["IVF1,PQ64x4"]["index_bytes"] < rows["Flat"]["index_bytes"]
