"""benchmarks/bench_scale.py on a small synthetic stream: distractors, recall with distractors, each factory measured."""

import faiss
import numpy as np
import pytest
from bench_scale import (
    ScaleBenchConfig,
    load_ground_truth,
    main,
    markdown,
    measure_factory,
    prepare,
    recall_percent,
    run,
)
from distractors import DistractorConfig, StreamLayout, SyntheticGallery
from fakes import FakeGenerator, tiny_gallery
from index_sizes import HEADERS, stored_bytes

from facedata.faceset import FaceSet
from index.faiss_index import build_index

SMALL = ScaleBenchConfig(total=600, queries=24, exact_queries=10, factories=("PCA16,Flat", "PCA16,IVF4,PQ4", "PCA16,HNSW8"),
                         pca_train=300, quantizer_train=400, nprobe=(1, 2, 4), ef_search=(8, 16), latency_runs=2, batch=8,
                         ef_construction=(8, 40), read_block=128, isolate=False, distractors=DistractorConfig(block=64))


def synthetic(total=500, seed=3, block=64):
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 32)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    identities = np.repeat([f"id{i}" for i in range(8)], 5)
    groups = np.tile(["a", "b", "c", "d", "e"], 8)
    return SyntheticGallery(real, identities, groups, StreamLayout.place(40, total, seed), seed, DistractorConfig(block=block))


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    tiny_gallery(identities=3, lights=2).write(root / "faces")
    gallery = FaceSet.open(root / "faces").split("test")
    build_index(FakeGenerator(), gallery, root / "flat", factory="Flat", batch_size=8, progress=False)
    return load_ground_truth(root / "flat")


def test_distractors_are_the_same_whichever_way_the_stream_is_read():
    one, two = synthetic(), synthetic()
    whole = np.concatenate([v for _, v in one.iter_blocks()])
    assert whole.shape == (500, 32)
    assert np.array_equal(whole[128:192], two.block(2))  # one block on its own: the same rows
    assert np.array_equal(one.head(100), whole[:100])
    other_seed = np.concatenate([v for _, v in synthetic(seed=4).iter_blocks()])
    assert not np.array_equal(whole, other_seed)


def test_real_faces_sit_where_the_layout_says_and_distractors_copy_none_of_them():
    gallery = synthetic()
    whole = np.concatenate([v for _, v in gallery.iter_blocks()])
    real_at = gallery.layout.real_at
    assert sorted(real_at[real_at >= 0]) == list(range(40)) and gallery.layout.distractor_count() == 460
    assert np.array_equal(whole[real_at >= 0], gallery.real[real_at[real_at >= 0]])
    distractors = whole[real_at < 0]
    assert np.allclose(np.linalg.norm(distractors, axis=1), 1.0, atol=1e-5)
    nearest = faiss.knn(distractors, gallery.real, 1)[0][:, 0]
    assert nearest.min() > 0.1  # squared L2: no distractor is (nearly) a real face


def test_a_distractor_mixes_two_identities_of_one_kept_value():
    gallery = synthetic()
    from distractors import make_distractors

    _, sources = make_distractors(gallery.real, gallery.identities, gallery.groups, 300, np.random.default_rng(1), gallery.config)
    assert np.all(gallery.identities[sources[:, 0]] != gallery.identities[sources[:, 1]])
    assert np.all(gallery.groups[sources[:, 0]] == gallery.groups[sources[:, 1]])


def test_recall_counts_a_distractor_as_wrong_and_a_real_match_as_right():
    layout = StreamLayout(np.array([-1, 0, -1, 1, 2]))  # rows 1, 3, 4 hold real faces 0, 1, 2
    g_keys = np.array([7, 8, 7])  # real faces 0 and 2 answer key 7
    q_keys = np.array([7, 8, 7])
    ranked = np.array([[0, 1, 2, 3, 4]] * 3)  # every query: distractor first, then real faces 0, (distractor), 1, 2
    ranked = np.repeat(ranked, 4, axis=1)[:, :20]
    recall = recall_percent(ranked, layout, q_keys, g_keys)
    assert recall["1"] == 0.0 and recall["20"] == 100.0
    assert np.array_equal(layout.real_rows(np.array([[4, -1, 0]])), [[2, -1, -1]])


def test_a_saved_and_reloaded_index_finds_what_it_found_before(truth, tmp_path):
    pack, figures = prepare(truth, FakeGenerator(), SMALL, tmp_path, progress=False)
    row = measure_factory("PCA16,IVF4,PQ4", pack, SMALL, FakeGenerator(), progress=False)
    assert row["reload_same_results"] is True
    saved = tmp_path / "index-PCA16_IVF4_PQ4.faiss"  # the index written, then read back and searched
    assert row["index_bytes"] == saved.stat().st_size == len(faiss.serialize_index(faiss.read_index(str(saved))))
    low = stored_bytes("PCA16,IVF4,PQ4", SMALL.total, truth.vectors.shape[1])
    assert low <= row["index_bytes"] <= low + HEADERS, (row["index_bytes"], low)
    assert 0 <= row["loaded_rss_bytes"] <= row["index_bytes"] + 2**20  # what loading it added, not the process's RSS
    assert [s["setting"] for s in row["sweep"]] == [1, 2, 4] and row["setting"] in (1, 2, 4)
    assert figures["exact"]["real_only"]["recall_c1"]["1"] == 100.0  # the fake generates exactly


def test_the_smoke_run_measures_every_factory_next_to_exact_search(truth, tmp_path):
    record = run(truth, FakeGenerator(), SMALL, tmp_path, progress=False)
    assert record["gallery"] == {"rows": 600, "real": 42, "synthetic_distractors": 558}
    rows = {(r["factory"], r["ef_construction"]): r for r in record["factories"]}
    assert list(rows) == [("PCA16,Flat", None), ("PCA16,IVF4,PQ4", None), ("PCA16,HNSW8", 8), ("PCA16,HNSW8", 40)]
    flat = rows["PCA16,Flat", None]
    assert flat["recall_c1"] == record["exact"]["pca"]["recall_c1"] and flat["top1_as_exact_pca"] == 100.0
    for (factory, _), row in rows.items():
        low = stored_bytes(factory, 600, truth.vectors.shape[1])
        assert low <= row["index_bytes"] <= low + HEADERS, (factory, row["index_bytes"], low)
        assert row["latency_ms"] > 0 and row["batch_qps"] > 0 and row["train_add_s"] >= row["own_train_add_s"]
        assert set(row["targets_met"]) == {"index_bytes", "latency_ms", "recall_vs_exact_pca", "recall_vs_exact_full"}
    assert len(record["machine"]["load_average_start"]) == 3 and record["provenance"]["seed"] == 0
    assert record["exact"]["full"]["queries"] == 10
    assert "efSearch 8, efConstruction 40" in markdown(record) or "efSearch 16, efConstruction 40" in markdown(record)


def test_a_factory_without_a_leading_pca_is_refused_with_one_line(truth, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--index", str(truth.path), "--total", "600", "--factories", "HNSW32", "--out", "/nonexistent/x.json"])
    assert "Error: factory 'HNSW32': must start with PCA" in str(exit_info.value)


def test_an_index_that_is_not_flat_is_refused(tmp_path):
    tiny_gallery(identities=3, lights=2).write(tmp_path / "faces")
    build_index(FakeGenerator(), FaceSet.open(tmp_path / "faces"), tmp_path / "hnsw", factory="HNSW8", progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--index", str(tmp_path / "hnsw"), "--out", str(tmp_path / "x.json")])
    assert "Error:" in str(exit_info.value) and "Flat" in str(exit_info.value)


def test_an_hnsw_index_is_built_at_the_configured_depth():
    from index.faiss_factory import IndexConfig, fill_index

    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    index, _ = fill_index(IndexConfig(factory="PCA4,HNSW8", ef_construction=77), 8, 50,
                          lambda positions: vectors[positions], lambda: iter([vectors]))
    assert faiss.downcast_index(index.index).hnsw.efConstruction == 77 and index.ntotal == 50


def test_the_shared_pca_is_the_same_in_two_runs_though_its_svd_is_randomized(tmp_path):
    import torch

    from bench_scale import fit_shared_pca

    rng = np.random.default_rng(0)
    real = rng.standard_normal((2100, 2100)).astype(np.float32)  # min(n, d) > 2048: the randomized SVD
    gallery = SyntheticGallery(real / np.linalg.norm(real, axis=1, keepdims=True), np.arange(2100) % 30, np.arange(2100) % 7,
                               StreamLayout.place(2100, 2200, 0), 0, DistractorConfig())
    first = fit_shared_pca(gallery, 16, 2100, tmp_path / "a.faiss")[0]
    torch.randn(100)  # other work drawing from torch's generator in between
    second = fit_shared_pca(gallery, 16, 2100, tmp_path / "b.faiss")[0]
    assert np.array_equal(first.apply(real[:5]), second.apply(real[:5]))
