"""A PCA per view before FAISS (index.view_pca): the projection it computes, its file, and its refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facedata.errors import UserError
from index.faiss_factory import IndexConfig
from index.faiss_index import GalleryIndex
from index.features import l2_normalize
from index.view_pca import PROJECTION_FILE, ViewPCA, plan_build, split_factory

VALUES = ("left", "front", "right")


def all_views(n: int = 120, d: int = 10, seed: int = 0) -> np.ndarray:
    """(n, 3·d) vectors whose views have a few strong directions each."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(4.0, 0.1, d).astype(np.float32)
    return np.concatenate([rng.standard_normal((n, d)).astype(np.float32) * scales for _ in VALUES], axis=1)


def gallery(factory: str, vectors: np.ndarray) -> GalleryIndex:
    faces = pd.DataFrame({"identity": np.arange(len(vectors)).astype(str),
                          "kept_pose": np.asarray(VALUES)[np.arange(len(vectors)) % 3]})
    return GalleryIndex.from_vectors(vectors, faces, IndexConfig(factory=factory, views="all"), edit_factor="pose",
                                     vocabulary=VALUES, checkpoint_hash="model")


def test_each_view_is_centred_and_projected_on_its_own_leading_axes():
    x = all_views()
    projection = ViewPCA.fit(x, 3, 4)
    assert (projection.d_in, projection.d_out, projection.views) == (30, 12, 3)
    got = projection.apply(x[:5])
    for v in range(3):
        view = x[:5, v * 10 : (v + 1) * 10]
        want = (view - projection.mean[v]) @ projection.components[v].T
        np.testing.assert_allclose(got[:, v * 4 : (v + 1) * 4], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(projection.mean[v], x[:, v * 10 : (v + 1) * 10].mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(projection.components[v] @ projection.components[v].T, np.eye(4), atol=1e-5)


def test_keeping_every_axis_of_every_view_ranks_as_exact_search():
    x = all_views()
    exact, full = gallery("Flat", x), gallery("VIEWPCA10,Flat", x)
    queries = all_views(n=20, seed=1)
    got, want = full.search(queries, 5), exact.search(queries, 5)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    targets = np.asarray(VALUES)[np.arange(20) % 3]
    np.testing.assert_array_equal(full.search_among(queries, 4, targets)[1], exact.search_among(queries, 4, targets)[1])


def test_the_projection_is_saved_beside_the_index_and_loads_to_the_same_hits(tmp_path):
    built = gallery("VIEWPCA4,SQ8", all_views())
    built.save(tmp_path / "idx")
    assert (tmp_path / "idx" / PROJECTION_FILE).is_file()
    loaded = GalleryIndex.load(tmp_path / "idx")
    queries = all_views(n=8, seed=2)
    np.testing.assert_array_equal(loaded.search(queries, 6)[1], built.search(queries, 6)[1])
    np.testing.assert_array_equal(loaded.encode(queries), built.projection.apply(l2_normalize(queries)))


def test_a_missing_or_damaged_projection_file_is_a_user_error(tmp_path):
    gallery("VIEWPCA4,Flat", all_views()).save(tmp_path / "idx")
    (tmp_path / "idx" / PROJECTION_FILE).write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="unreadable per-view projection"):
        GalleryIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / PROJECTION_FILE).unlink()
    with pytest.raises(UserError, match=f"{PROJECTION_FILE}: missing"):
        GalleryIndex.load(tmp_path / "idx")


@pytest.mark.parametrize("factory, message", [
    ("VIEWPCA,Flat", "write VIEWPCAp,FACTORY"),
    ("VIEWPCA8", "write VIEWPCAp,FACTORY"),
    ("VIEWPCA0,Flat", "write VIEWPCAp,FACTORY"),
    ("VIEWPCA11,Flat", "views of ≥ 11 dimensions"),
    ("VIEWPCA4,IVF64,Flat", "needs ≥ 2496 training vectors"),
])
def test_a_per_view_pca_that_cannot_work_is_refused_before_any_work(factory, message):
    with pytest.raises(UserError, match=message):
        plan_build(IndexConfig(factory=factory), 30, 120, 3)


def test_a_factory_without_the_prefix_passes_through():
    assert split_factory("PCA64,Flat") == (None, "PCA64,Flat")
    assert split_factory("VIEWPCA64,IVF16,SQ8") == (64, "IVF16,SQ8")
