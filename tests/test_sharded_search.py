"""A gallery searched as shards on Ray actors returns what the single index returns, in the same order."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from facedata.errors import UserError
from index.distribute import RayDistributor
from index.faiss_factory import IndexConfig
from index.faiss_index import GalleryIndex
from index.sharded_search import ShardedGallery, merge_top_k, split_index

VALUES = ("left", "front", "right")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray cluster of 2 CPUs for the module (starting one costs seconds)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    session = RayDistributor(2)
    session.start()
    yield
    session.__exit__(None, None, None)


def gallery_index(factory: str = "Flat", n: int = 500, d: int = 18) -> GalleryIndex:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    vectors[n // 2 :] = vectors[: n - n // 2]  # exact duplicates across the shard boundary: ties go to the lower row
    faces = pd.DataFrame({"identity": np.arange(n).astype(str), "kept_pose": np.asarray(VALUES)[np.arange(n) % 3]})
    return GalleryIndex.from_vectors(vectors, faces, IndexConfig(factory=factory, views="all"), edit_factor="pose",
                                     vocabulary=VALUES, checkpoint_hash="model")


@pytest.mark.parametrize("factory", ["Flat", "PCA8,SQ8", "VIEWPCA3,SQ8"])
def test_two_ray_shards_return_the_single_index_hits_in_the_same_order(tmp_path, ray_session, factory):
    whole = gallery_index(factory)
    folders = split_index(whole, 2, tmp_path / "shards")
    queries = np.random.default_rng(3).standard_normal((25, 18)).astype(np.float32)
    targets = np.asarray(VALUES)[np.arange(25) % 3]
    with ShardedGallery(folders) as sharded:
        assert len(sharded) == len(whole) and sharded.locate(260) == (1, 10)
        for got, want in ((sharded.search(queries, 10), whole.search(queries, 10)),
                          (sharded.search_among(queries, 7, targets), whole.search_among(queries, 7, targets))):
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


def test_merging_keeps_the_k_nearest_with_ties_to_the_lower_global_row():
    first = (np.array([[0.1, 0.5]], np.float32), np.array([[3, 1]]))
    second = (np.array([[0.1, 0.2]], np.float32), np.array([[0, -1]]))
    distances, rows = merge_top_k([first, second], [0, 10], 3)
    assert rows.tolist() == [[3, 10, 1]] and distances[0, 2] == np.float32(0.5)


def test_shards_of_another_model_and_a_bad_k_are_user_errors(tmp_path):
    whole = gallery_index()
    folders = split_index(whole, 2, tmp_path / "shards")
    other = gallery_index()
    other.info = other.info.__class__(**{**other.info.__dict__, "checkpoint_hash": "another"})
    other.save(tmp_path / "other")
    with pytest.raises(UserError, match="not a shard"):
        ShardedGallery([folders[0], tmp_path / "other"])
    with pytest.raises(UserError, match="k=0 is out of range"):
        ShardedGallery(folders)._check_k(0)
    with pytest.raises(UserError, match="cannot be cut into shards"):
        split_index(gallery_index("IVF2,Flat"), 2, tmp_path / "ivf")
