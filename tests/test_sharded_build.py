"""The sharded gallery build (local and Ray workers) gives the one-process index; on-disk IVF lists load from anywhere."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import warnings
from dataclasses import asdict

import faiss
import numpy as np
import pandas as pd
import pytest
from fakes import save_untrained
from test_cli_retrieval import rbg, refused
from test_training import tiny_faceset

from facedata.errors import UserError
from facedata.faceset import FaceSet
from generator.inference import Generator
from index.distribute import LocalDistributor, RayDistributor, check_reachable
from index.faiss_factory import IndexConfig, trained_index
from index.faiss_index import GalleryIndex, IndexInfo, build_index
from index.features import compute_feature_chunks
from index.ondisk_lists import LISTS_FILE, merge_shards
from index.sharded import compute_chunks, missing_chunks

CHUNK = 16  # 84 gallery images → 6 chunks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 16×16 untrained checkpoint and a FaceSet of 6 test identities × 7 poses × 2 lights (84 images) on disk."""
    root = tmp_path_factory.mktemp("sharded")
    save_untrained(root / "model")
    tiny_faceset(identities=7, test_identities=6).write(root / "faces")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the checkpoint is untrained on purpose
        generator = Generator.load(root / "model", "cpu")
    return root, generator, FaceSet.open(root / "faces").split("test")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray cluster of 2 CPUs for the module (starting one costs seconds)."""
    if importlib.util.find_spec("ray") is None:  # not imported here: the distributor sets Ray's environment first
        pytest.skip("ray is not installed")
    session = RayDistributor(2)
    session.start()
    yield
    session.__exit__(None, None, None)


def queries(index: GalleryIndex, n: int = 12) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, index.info.dimension)).astype(np.float32)


def inverted_lists(index: faiss.Index) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every IVF list's (ids, codes), in list order."""
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    out = []
    for i in range(ivf.nlist):
        size = lists.list_size(i)
        ids = faiss.rev_swig_ptr(lists.get_ids(i), size).copy() if size else np.zeros(0, np.int64)
        codes = faiss.rev_swig_ptr(lists.get_codes(i), size * lists.code_size).copy() if size else np.zeros(0, np.uint8)
        out.append((ids, codes))
    return out


def assert_same_index(sharded: GalleryIndex, single: GalleryIndex) -> None:
    """Same rows, kept values, info, search results and stored vectors (or IVF lists)."""
    pd.testing.assert_frame_equal(sharded.faces, single.faces)
    assert (sharded.projection is None) == (single.projection is None)
    if single.projection is not None:  # a per-view PCA: fitted once, before the shards
        np.testing.assert_array_equal(sharded.projection.components, single.projection.components)
    for field in ("dimension", "factory", "count", "checkpoint_hash", "layer", "kept_accuracy", "train_count", "gallery", "config"):
        assert getattr(sharded.info, field) == getattr(single.info, field), field
    k = min(10, len(single))
    for got, want in zip(sharded.search(queries(single), k), single.search(queries(single), k)):
        np.testing.assert_array_equal(got, want)
    if faiss.try_extract_index_ivf(single.index) is not None:
        for (ids, codes), (ids0, codes0) in zip(inverted_lists(sharded.index), inverted_lists(single.index)):
            np.testing.assert_array_equal(ids, ids0)
            np.testing.assert_array_equal(codes, codes0)
    else:
        np.testing.assert_array_equal(sharded.index.reconstruct_n(0, len(single)), single.index.reconstruct_n(0, len(single)))


# -- on Ray ----------------------------------------------------------------------------------------
def test_an_ivf_build_on_two_ray_workers_equals_the_one_process_build(setup, ray_session, tmp_path):
    root, generator, gallery = setup
    config = IndexConfig(factory="IVF2,PQ4x4", batch_size=CHUNK, nprobe=2)
    build_index(generator, gallery, tmp_path / "single", config, progress=False)
    with RayDistributor(2) as distributor:
        build_index(generator, gallery, tmp_path / "ray", config, progress=False, distributor=distributor)
    sharded = GalleryIndex.load(tmp_path / "ray")
    assert_same_index(sharded, GalleryIndex.load(tmp_path / "single"))
    assert sharded.info.provenance["distributed"] == {"engine": "ray", "workers": 2}
    from index.append import add_to_index

    with pytest.raises(UserError, match="IVF lists are on disk"):
        add_to_index(generator, tmp_path / "ray", FaceSet.open(root / "faces").split("train"), progress=False)
    assert (tmp_path / "ray" / LISTS_FILE).is_file()
    assert not (tmp_path / ".ray.build").exists()  # the cache (chunks, shards) is gone


def test_rbg_index_build_on_ray_workers_writes_the_one_process_flat_index(setup, ray_session, tmp_path):
    root, _, _ = setup
    common = ["index", "build", "--paper", "--model", root / "model", "--data", root / "faces", "--batch-size", CHUNK, "--device", "cpu", "--quiet"]
    single = rbg(*common, "--out", tmp_path / "single")
    sharded = rbg(*common, "--out", tmp_path / "ray", "--workers", 2, "--engine", "ray")
    assert single.exit_code == 0 and sharded.exit_code == 0, single.output + sharded.output
    assert "84 test images of tiny" in sharded.output and "on 2 ray workers" in sharded.output
    assert_same_index(GalleryIndex.load(tmp_path / "ray"), GalleryIndex.load(tmp_path / "single"))


def test_a_user_error_in_a_ray_worker_comes_back_as_that_error(setup, ray_session, tmp_path):
    root, generator, gallery = setup
    edited = gallery.take(range(len(gallery)))
    edited.faces = edited.faces.assign(illumination="L9")  # no longer what the folder holds
    with RayDistributor(2) as distributor, pytest.raises(UserError, match="faces differ from the gallery being built"):
        build_index(generator, edited, tmp_path / "idx", batch_size=CHUNK, progress=False, distributor=distributor)


def test_more_workers_than_the_ray_cluster_has_cpus_is_a_one_line_error(setup, ray_session, tmp_path):
    root, _, _ = setup
    result = rbg("index", "build", "--paper", "--model", root / "model", "--data", root / "faces", "--out", tmp_path / "idx",
                 "--device", "cpu", "--quiet", "--workers", 3, "--engine", "ray")
    assert refused(result, "--workers 3", "2 CPUs")


# -- without Ray -----------------------------------------------------------------------------------
class RecordingDistributor(LocalDistributor):
    """Runs in this process and remembers the tasks it was given."""

    def __init__(self, workers: int):
        super().__init__(workers)
        self.tasks: list = []

    def map(self, make_worker, tasks):
        self.tasks.append(list(tasks))
        return super().map(make_worker, tasks)


def test_the_workers_get_only_the_chunks_an_interrupted_build_left_missing(setup, tmp_path):
    root, generator, gallery = setup
    options = dict(layer=generator.default_feature_layer, chunk_size=CHUNK, views="kept")
    cache = tmp_path / ".idx.build"
    compute_feature_chunks(generator, gallery, cache, progress=False, only=[0, 3], **options)
    distributor = RecordingDistributor(2)
    key = compute_chunks(distributor, generator, gallery, cache, options, progress=False)
    assert sorted(distributor.tasks[0]) == [1, 2, 4, 5]
    assert missing_chunks(compute_feature_chunks(generator, gallery, cache, progress=False, **options)) == []
    assert key == compute_feature_chunks(generator, gallery, cache, progress=False, **options).key


@pytest.mark.parametrize("factory, views", [("PCA32,IVF2,Flat", "kept"), ("VIEWPCA4,IVF2,Flat", "all")])
def test_ivf_shards_under_a_pca_merge_into_the_one_process_lists(setup, tmp_path, factory, views):
    _, generator, gallery = setup
    config = IndexConfig(factory=factory, batch_size=CHUNK, nprobe=2, views=views)
    single = build_index(generator, gallery, tmp_path / "single", config, progress=False)
    distributor = RecordingDistributor(3)
    build_index(generator, gallery, tmp_path / "sharded", config, progress=False, distributor=distributor)
    assert [sorted(t) for t in distributor.tasks] == [list(range(6)), [(0, 0, 2), (1, 2, 4), (2, 4, 6)]]
    assert_same_index(GalleryIndex.load(tmp_path / "sharded"), single)


def test_ray_workers_normalize_with_the_builds_pose_classifier(setup, ray_session, tmp_path):
    from index.pose_classifier import PoseClassifier, PoseClassifierConfig

    root, generator, gallery = setup
    train = FaceSet.open(root / "faces").split("train")
    classifier = PoseClassifier(PoseClassifierConfig(pca_components=4)).fit(train.images, train.faces["pose"])
    config = IndexConfig(batch_size=CHUNK, normalize="classifier")
    single = build_index(generator, gallery, tmp_path / "single", config, progress=False, classifier=classifier)
    with RayDistributor(2) as distributor:
        build_index(generator, gallery, tmp_path / "ray", config, progress=False, classifier=classifier,
                    distributor=distributor)
    sharded = GalleryIndex.load(tmp_path / "ray")
    assert_same_index(sharded, single)
    assert sharded.pose_classifier.fingerprint == classifier.fingerprint


def test_a_distributed_build_needs_the_gallery_on_disk(setup, tmp_path):
    _, generator, _ = setup
    in_memory = tiny_faceset(identities=2, test_identities=2)
    with pytest.raises(UserError, match="reads the gallery from its folder"):
        build_index(generator, in_memory, tmp_path / "idx", progress=False, distributor=LocalDistributor(2))


def on_disk_ivf(tmp_path, n: int = 300, d: int = 16) -> tuple[GalleryIndex, faiss.Index]:
    """An index of random vectors whose IVF lists were merged from 3 shards into a file, and the same index in memory."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    vectors = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    config = IndexConfig(factory="IVF4,Flat", nprobe=4)
    trained, _ = trained_index(config, d, n, lambda positions: vectors[positions])
    in_memory = faiss.deserialize_index(faiss.serialize_index(trained))
    in_memory.add(vectors)
    shards = []
    for s, (start, end) in enumerate([(0, 100), (100, 250), (250, n)]):
        shard = faiss.deserialize_index(faiss.serialize_index(trained))
        shard.add_with_ids(vectors[start:end], np.arange(start, end, dtype=np.int64))
        shards.append(tmp_path / f"shard{s}.faiss")
        faiss.write_index(shard, str(shards[-1]))
    merge_shards(trained, shards, tmp_path / LISTS_FILE)
    info = IndexInfo(dimension=d, factory=config.factory, count=n, config=asdict(config))
    return GalleryIndex(trained, pd.DataFrame({"row": np.arange(n)}), info, config), in_memory


def test_an_index_with_on_disk_lists_loads_and_searches_after_a_move_from_another_directory(tmp_path, monkeypatch):
    built, in_memory = on_disk_ivf(tmp_path / "work")
    built.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["faces.parquet", "index.faiss", "index.ivfdata", "index.json"]
    shutil.rmtree(tmp_path / "work")  # the merge's own lists file is gone: the saved folder has its copy
    shutil.move(tmp_path / "idx", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = GalleryIndex.load(tmp_path / "moved")
    probe = np.random.default_rng(2).standard_normal((20, 16)).astype(np.float32)
    faiss.extract_index_ivf(in_memory).nprobe = 4
    distances, rows = in_memory.search(probe / np.linalg.norm(probe, axis=1, keepdims=True), 5)
    got_d, got_r = loaded.search(probe, 5)
    np.testing.assert_array_equal(got_r, rows)
    np.testing.assert_allclose(got_d, distances, rtol=1e-6)
    assert built.search(probe, 5)[1].tolist() == rows.tolist()  # the saved object searches its folder's copy


def test_an_index_whose_lists_file_is_missing_is_a_user_error_naming_it(tmp_path):
    built, _ = on_disk_ivf(tmp_path / "work")
    built.save(tmp_path / "idx")
    (tmp_path / "idx" / LISTS_FILE).unlink()
    with pytest.raises(UserError, match=r"index\.ivfdata: missing"):
        GalleryIndex.load(tmp_path / "idx")


def test_the_local_engine_takes_one_worker_and_no_address(setup, tmp_path):
    root, _, _ = setup
    common = ["index", "build", "--paper", "--model", root / "model", "--data", root / "faces", "--out", tmp_path / "idx", "--quiet"]
    assert refused(rbg(*common, "--workers", 2), "--workers 2 needs --engine ray")
    assert refused(rbg(*common, "--address", "auto"), "--address", "--engine ray")
    assert not (tmp_path / "idx").exists()


def test_the_ray_engine_without_ray_installed_is_a_one_line_error_naming_the_extra(setup, tmp_path, monkeypatch):
    root, _, _ = setup
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    result = rbg("index", "build", "--paper", "--model", root / "model", "--data", root / "faces", "--out", tmp_path / "idx",
                 "--device", "cpu", "--quiet", "--workers", 2, "--engine", "ray")
    assert refused(result, "needs Ray", "retrieval-by-generation[ray]")
    assert not (tmp_path / "idx").exists()


def test_a_cluster_address_nothing_answers_at_is_refused_at_once():
    with pytest.raises(UserError, match="--address 127.0.0.1:1: no Ray cluster answers there"):
        check_reachable("127.0.0.1:1")
    with pytest.raises(UserError, match="not HOST:PORT"):
        check_reachable("headnode")
