"""The gallery FAISS index: factories, save/load/refusal, bad k, empty gallery, interrupted builds."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
from fakes import POSES, FakeGenerator, face, tiny_gallery

import index.faiss_factory as faiss_factory
from facedata.errors import UserError
from facedata.faceset import FaceSet
from facedata.outputs import exclusive_lock
from index.faiss_factory import IndexConfig, fit_pca
from index.faiss_index import GalleryIndex, build_index, order_ties


def low_rank_vectors(n: int = 400, d: int = 32, rank: int = 8, seed: int = 0) -> np.ndarray:
    """n vectors in a rank-`rank` subspace, so PCA to ≥ rank dimensions loses nothing."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))).astype(np.float32)


@pytest.mark.parametrize("factory", ["Flat", "PCA16,Flat", "IVF4,Flat", "HNSW32", "IVF4,PQ8"])
def test_every_supported_factory_finds_each_gallery_vector_first(factory):
    vectors = low_rank_vectors()
    gallery = GalleryIndex.from_vectors(vectors, config=IndexConfig(factory=factory, nprobe=4))
    distances, rows = gallery.search(vectors[:50], 3)
    assert rows.shape == distances.shape == (50, 3)
    hits = np.mean(rows[:, 0] == np.arange(50))
    assert hits >= (0.9 if "PQ" in factory else 1.0), hits
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_pca_fitted_by_svd_matches_faiss_pca_up_to_sign(monkeypatch):
    vectors = low_rank_vectors(n=300, d=40, rank=12)
    reference = faiss.PCAMatrix(40, 6)
    reference.train(vectors)
    expected = np.abs(reference.apply(vectors))
    for limit in (10_000, 0):  # exact SVD, then the randomized one used for large d
        monkeypatch.setattr(faiss_factory, "EXACT_SVD_LIMIT", limit)
        index = faiss.index_factory(40, "PCA6,Flat")
        faiss_factory.train_index(index, vectors)
        pca = faiss.downcast_VectorTransform(index.chain.at(0))
        np.testing.assert_allclose(np.abs(pca.apply(vectors)), expected, rtol=1e-3, atol=1e-3)
    mean, components, eigenvalues = fit_pca(vectors, 6)
    assert mean.shape == (40,) and components.shape == (6, 40) and np.all(np.diff(eigenvalues) <= 0)


def test_ivf_factory_on_a_gallery_smaller_than_39_points_per_list_is_a_user_error():
    with pytest.raises(UserError, match=r"IVF4,Flat.*≥ 156"):
        GalleryIndex.from_vectors(low_rank_vectors(n=150), config=IndexConfig(factory="IVF4,Flat"))


def test_training_sample_cap_is_named_when_it_is_what_falls_short():
    with pytest.raises(UserError, match="train_size=100"):
        GalleryIndex.from_vectors(low_rank_vectors(n=400), config=IndexConfig(factory="IVF4,Flat", train_size=100))


def test_an_unknown_factory_string_is_a_user_error():
    with pytest.raises(UserError, match="index factory 'Nonsense"):
        GalleryIndex.from_vectors(low_rank_vectors(), config=IndexConfig(factory="Nonsense42"))


def test_search_with_k_larger_than_the_gallery_names_k_and_the_gallery_size():
    gallery = GalleryIndex.from_vectors(low_rank_vectors(n=10))
    with pytest.raises(UserError, match=r"k=11 .* 10 images"):
        gallery.search(low_rank_vectors(n=1), 11)
    with pytest.raises(UserError, match="k=0"):
        gallery.search(low_rank_vectors(n=1), 0)


def test_query_vectors_of_another_width_are_a_user_error():
    with pytest.raises(UserError, match="32-d"):
        GalleryIndex.from_vectors(low_rank_vectors(n=10)).search(np.zeros((1, 7), np.float32), 1)


def test_an_empty_gallery_is_a_user_error():
    with pytest.raises(UserError, match="empty"):
        GalleryIndex.from_vectors(np.zeros((0, 8), np.float32))
    empty = FaceSet.from_arrays(np.zeros((0, 6, 16), np.uint8), pd.DataFrame({"identity": pd.Series([], dtype=str)}), name="none")
    with pytest.raises(UserError, match="empty"):
        build_index(FakeGenerator(), empty, Path("/nonexistent/never-written"), progress=False)


def test_missing_results_go_last_with_infinite_distance_and_ties_go_by_row():
    distances, rows = order_ties(np.array([[0.5, 0.2, 3e38, 0.2]], np.float32), np.array([[4, 9, -1, 2]]))
    assert rows.tolist() == [[2, 9, 4, -1]]
    assert distances[0, :3].tolist() == pytest.approx([0.2, 0.2, 0.5]) and np.isinf(distances[0, 3])


# -- built from a generator and saved --------------------------------------------------------------
def test_built_index_saves_its_folder_and_records_what_made_it(tmp_path):
    gallery = tiny_gallery()
    built = build_index(FakeGenerator(), gallery, tmp_path / "idx", factory="Flat", batch_size=8, progress=False)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["faces.parquet", "index.faiss", "index.json"]
    assert not (tmp_path / ".idx.build").exists()
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert info["checkpoint_hash"] == "a" * 64 and info["layer"] == "mid" and info["factory"] == "Flat"
    assert info["count"] == len(gallery) and info["dimension"] == 2 * 6 * 16 and info["vocabulary"] == list(POSES)
    assert info["kept_accuracy"] == 1.0 and "command" in info["provenance"]
    faces = pd.read_parquet(tmp_path / "idx" / "faces.parquet")
    assert faces["kept_pose"].tolist() == faces["pose"].tolist()
    assert faces["image_row"].tolist() == list(range(len(gallery)))
    loaded = GalleryIndex.load(tmp_path / "idx", generator=FakeGenerator(), layer="mid")
    probe = FakeGenerator().features(gallery.images[:5], list(gallery.faces["pose"][:5]))
    for result in (built.search(probe, 3), loaded.search(probe, 3)):
        assert result[1][:, 0].tolist() == [0, 1, 2, 3, 4]


def test_loading_refuses_an_index_built_with_another_model(tmp_path):
    build_index(FakeGenerator(), tiny_gallery(identities=1), tmp_path / "idx", progress=False)
    with pytest.raises(UserError, match="another model|not this model"):
        GalleryIndex.load(tmp_path / "idx", generator=FakeGenerator(checkpoint_hash="b" * 64))


def test_loading_refuses_an_index_built_from_another_layer(tmp_path):
    build_index(FakeGenerator(), tiny_gallery(identities=1), tmp_path / "idx", layer="pixels", progress=False)
    assert GalleryIndex.load(tmp_path / "idx").layer == "pixels"
    with pytest.raises(UserError, match="layer 'pixels', not 'mid'"):
        GalleryIndex.load(tmp_path / "idx", generator=FakeGenerator(), layer="mid")


def test_loading_refuses_a_truncated_index_file(tmp_path):
    build_index(FakeGenerator(), tiny_gallery(identities=1), tmp_path / "idx", progress=False)
    path = tmp_path / "idx" / "index.faiss"
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 4):
        path.write_bytes(data[:cut])
        with pytest.raises(UserError, match="index.faiss"):
            GalleryIndex.load(tmp_path / "idx")


def test_loading_refuses_an_index_whose_count_disagrees_with_index_json(tmp_path):
    build_index(FakeGenerator(), tiny_gallery(identities=1), tmp_path / "idx", progress=False)
    info_file = tmp_path / "idx" / "index.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "count": info["count"] + 1}))
    with pytest.raises(UserError, match="index.json says"):
        GalleryIndex.load(tmp_path / "idx")


def test_loading_a_folder_without_an_index_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such index folder"):
        GalleryIndex.load(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="index.json: missing"):
        GalleryIndex.load(tmp_path / "half")


def test_an_interrupted_build_leaves_the_previous_index_and_resumes_from_cached_chunks(tmp_path):
    gallery = tiny_gallery()  # 42 images → 6 chunks of 8
    out = tmp_path / "idx"
    build_index(FakeGenerator(), gallery.take(range(7)), out, progress=False)  # an older, smaller index
    broken = FakeGenerator(fail_after=4)  # call 1 probes the dimension, calls 2–3 fill chunks 0–1
    with pytest.raises(KeyboardInterrupt):
        build_index(broken, gallery, out, batch_size=8, progress=False)
    assert len(GalleryIndex.load(out)) == 7  # the previous index is intact and loads
    assert cached_chunks(tmp_path / ".idx.build") == ["chunk-000000", "chunk-000001"]
    resumed = FakeGenerator()
    build_index(resumed, gallery, out, batch_size=8, progress=False)
    assert resumed.feature_calls == 1 + 4  # the probe, then only chunks 2–5
    fresh = build_index(FakeGenerator(), gallery, tmp_path / "fresh", batch_size=8, progress=False)
    loaded = GalleryIndex.load(out, generator=resumed)
    assert len(loaded) == len(gallery)
    np.testing.assert_array_equal(faiss.rev_swig_ptr(loaded.index.get_xb(), len(gallery) * loaded.info.dimension),
                                  faiss.rev_swig_ptr(fresh.index.get_xb(), len(gallery) * fresh.info.dimension))


def test_a_cache_left_by_another_model_is_discarded_not_reused(tmp_path):
    gallery = tiny_gallery(identities=2)  # 28 images → 4 chunks of 8
    with pytest.raises(KeyboardInterrupt):
        build_index(FakeGenerator(fail_after=3), gallery, tmp_path / "idx", batch_size=8, progress=False)
    other = FakeGenerator(checkpoint_hash="c" * 64)
    build_index(other, gallery, tmp_path / "idx", batch_size=8, progress=False)
    assert other.feature_calls == 1 + 4  # the probe and all 4 chunks, computed afresh
    assert GalleryIndex.load(tmp_path / "idx").info.checkpoint_hash == "c" * 64


def cached_chunks(cache) -> list[str]:
    """The chunk numbers whose vectors a build cache holds (whatever model key they carry)."""
    return sorted(p.name.split(".")[0] for p in cache.glob("chunk-*.npy") if not p.name.endswith(".kept.npy"))


def test_chunks_of_another_model_are_never_reused_even_under_a_matching_build_json(tmp_path):
    gallery = tiny_gallery(identities=2)  # 28 images → 4 chunks of 8
    with pytest.raises(KeyboardInterrupt):
        build_index(FakeGenerator(fail_after=3), gallery, tmp_path / "idx", batch_size=8, progress=False)
    cache = tmp_path / ".idx.build"
    assert cached_chunks(cache) == ["chunk-000000"]
    state = json.loads((cache / "build.json").read_text())
    (cache / "build.json").write_text(json.dumps({**state, "checkpoint_hash": "c" * 64}))  # as if another model had rewritten it
    other = FakeGenerator(checkpoint_hash="c" * 64)
    build_index(other, gallery, tmp_path / "idx", batch_size=8, progress=False)
    assert other.feature_calls == 1 + 4  # chunk 0 carries the first model's key: computed again


def test_a_second_build_into_the_same_out_is_refused_while_the_first_holds_the_lock(tmp_path):
    gallery = tiny_gallery(identities=1)
    with exclusive_lock(tmp_path / ".idx.build.lock", what="first build"):
        with pytest.raises(UserError, match="another run is writing it now"):
            build_index(FakeGenerator(), gallery, tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()
    build_index(FakeGenerator(), gallery, tmp_path / "idx", progress=False)  # the lock is gone with its holder
    assert not (tmp_path / ".idx.build.lock").exists()


def test_an_index_is_never_written_over_its_gallery_or_a_folder_of_something_else(tmp_path):
    gallery = tiny_gallery(identities=1)
    gallery.write(tmp_path / "faces")
    opened = FaceSet.open(tmp_path / "faces")
    with pytest.raises(UserError, match="is the input"):
        build_index(FakeGenerator(), opened, tmp_path / "faces", progress=False, force=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="without index.json"):
        build_index(FakeGenerator(), opened, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    build_index(FakeGenerator(), opened, tmp_path / "mine", progress=False, force=True)
    assert GalleryIndex.load(tmp_path / "mine").info.count == len(opened)
    build_index(FakeGenerator(), opened, tmp_path / "mine", progress=False)  # an index replaces an index


def test_index_json_records_the_gallery_relative_to_the_index_folder(tmp_path, monkeypatch):
    tiny_gallery(identities=1).write(tmp_path / "data" / "faces")
    monkeypatch.chdir(tmp_path / "data")
    built = build_index(FakeGenerator(), FaceSet.open("faces"), "runs/idx", progress=False)
    assert built.info.gallery["path"] == "../../faces"
    monkeypatch.chdir(tmp_path)
    loaded = GalleryIndex.load("data/runs/idx")
    assert loaded.locate(loaded.info.gallery["path"]).resolve() == (tmp_path / "data" / "faces").resolve()


def test_a_trained_factory_builds_from_a_generator_gallery(tmp_path):
    gallery = tiny_gallery(identities=4, lights=6)  # 168 images ≥ 39 × 4
    built = build_index(FakeGenerator(), gallery, tmp_path / "ivf", factory="IVF4,Flat", nprobe=4, batch_size=32, progress=False)
    assert built.info.train_count == len(gallery)
    probe = FakeGenerator().features(gallery.images[:5], list(gallery.faces["pose"][:5]))
    _, rows = GalleryIndex.load(tmp_path / "ivf").search(probe, 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_a_gallery_of_another_image_size_is_refused(tmp_path):
    faces = pd.DataFrame({"identity": ["a", "b"], "pose": ["0", "0"]})
    gallery = FaceSet.from_arrays(np.zeros((2, 8, 8), np.uint8), faces, name="wrong-size")
    with pytest.raises(UserError, match="model expects"):
        build_index(FakeGenerator(), gallery, tmp_path / "idx", progress=False)


def test_an_unknown_feature_layer_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(UserError, match="valid: mid, pixels"):
        build_index(FakeGenerator(), tiny_gallery(identities=1), tmp_path / "idx", layer="fc7", progress=False)


def test_face_helper_marks_the_pose():
    assert np.argmax(face(0, 3)[0]) == 3


def test_an_index_of_all_views_ranks_among_faces_kept_in_the_target(tmp_path):
    from fakes import save_untrained
    from test_training import tiny_faceset

    from facedata.faceset import FaceSet
    from generator.inference import Generator
    from index.faiss_index import GalleryIndex, IndexConfig, build_index
    from index.features import all_value_features
    from retrieval.search import search_by_generation
    from retrieval.multi_view import all_value_distances

    faces = FaceSet.open(tiny_faceset(identities=3, test_identities=2).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    gallery = faces.split("test")
    built = build_index(generator, gallery, tmp_path / "index", IndexConfig(views="all", batch_size=16), progress=False)
    index = GalleryIndex.load(tmp_path / "index", generator)
    assert index.views == "all" and index.info.dimension == len(generator.vocabulary) * generator.feature_dim()
    vectors = all_value_features(generator, gallery.images[:3])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    targets = ["+15", "-45", "0"]
    rows = search_by_generation(generator, index, gallery.images[:3], targets, k=4).rows
    kept = index.faces[f"kept_{generator.edit_factor}"].to_numpy()
    for i, target in enumerate(targets):
        found = rows[i][rows[i] >= 0]
        assert (kept[found] == target).all()
        expected = all_value_distances(generator, gallery.images, np.array([i]))[0]
        among = np.flatnonzero(kept == target)
        best = among[np.argsort(expected[among], kind="stable")][: len(found)]
        assert set(found.tolist()) == set(best.tolist())


def test_the_server_engine_searches_an_index_of_all_views_among_the_target(tmp_path):
    from fakes import save_untrained
    from test_training import tiny_faceset

    from facedata.faceset import FaceSet
    from generator.inference import Generator
    from index.faiss_index import GalleryIndex, IndexConfig, build_index
    from rbg.serve.engine import Query, QueryEngine

    faces = FaceSet.open(tiny_faceset(identities=3, test_identities=2).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    gallery = faces.split("test")
    build_index(generator, gallery, tmp_path / "index", IndexConfig(views="all", batch_size=16), progress=False)
    engine = QueryEngine(generator, GalleryIndex.load(tmp_path / "index", generator), faces)
    kept = engine.index.faces[f"kept_{generator.edit_factor}"].to_numpy()
    target = str(kept[0])
    [answer] = engine.answer([Query(image=gallery.image(0), target=target, k=3, label="q")])
    assert answer.hits and all(hit["kept"] == target for hit in answer.hits)


def test_a_wide_pca_is_the_same_whatever_drew_from_torchs_generator_before():
    import torch

    from index.faiss_factory import EXACT_SVD_LIMIT, fit_pca

    sample = np.random.default_rng(0).standard_normal((EXACT_SVD_LIMIT + 8, EXACT_SVD_LIMIT + 8)).astype(np.float32)
    first = fit_pca(sample, 8, seed=3)
    torch.rand(5)  # another draw from the global generator in between
    state = torch.random.get_rng_state()
    second = fit_pca(sample, 8, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator is untouched
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
