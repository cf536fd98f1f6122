"""Search by generation: the one path from query faces and targets to hits (rbg query, rbg serve, the bench)."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeGenerator, save_untrained, tiny_gallery

from facedata.errors import UserError
from index.faiss_index import build_index
from retrieval.metrics import criterion_keys, evaluate_ranking
from retrieval.search import correct_hits, edit_target, search_by_generation


def test_ours_finds_the_same_person_in_the_target_pose_and_light(tmp_path):
    generator = FakeGenerator()
    gallery = tiny_gallery(identities=3, lights=2)
    index = build_index(generator, gallery, tmp_path / "idx", progress=False)
    queries = gallery.faces.iloc[[0, 5, 17, 30]]
    targets = np.array(["+45", "-45", "0", "+15"])
    found = search_by_generation(generator, index, gallery.images[[0, 5, 17, 30]], targets, 5)
    distances, rows = found.distances, found.rows
    qk, gk = criterion_keys(queries, targets, index.faces, "pose", criterion=2)
    assert evaluate_ranking(rows, qk, gk, ks=(1,)).recall == {1: 1.0}
    assert np.allclose(distances[:, 0], 0.0, atol=1e-5)


def test_ours_refuses_an_index_built_by_another_model(tmp_path):
    index = build_index(FakeGenerator(), tiny_gallery(identities=1), tmp_path / "idx", progress=False)
    with pytest.raises(UserError, match="not this model"):
        search_by_generation(FakeGenerator(checkpoint_hash="d" * 64), index, tiny_gallery(identities=1).images[:1], "0", 1)


def test_the_generated_face_is_the_query_in_its_target_and_the_vectors_are_what_was_searched(tmp_path):
    generator = FakeGenerator()
    gallery = tiny_gallery(identities=2, lights=1)
    index = build_index(generator, gallery, tmp_path / "idx", progress=False)
    images, targets = gallery.images[[1, 9]], ["+45", "-15"]
    found = search_by_generation(generator, index, images, targets, 3)
    assert np.array_equal(found.generated, generator.generate(images, targets)[1].astype(np.uint8))
    again = index.search(found.vectors, 3)
    assert np.array_equal(again[1], found.rows) and np.allclose(again[0], found.distances)
    assert found.generate_ms >= 0 and found.search_ms >= 0


def test_an_index_of_all_views_gets_every_view_of_the_query_from_one_pass(tmp_path):
    from test_training import tiny_faceset

    from facedata.faceset import FaceSet
    from generator.inference import Generator
    from index.faiss_index import GalleryIndex, IndexConfig
    from index.features import all_value_features

    faces = FaceSet.open(tiny_faceset(identities=3, test_identities=2).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"), "cpu")
    gallery = faces.split("test")
    build_index(generator, gallery, tmp_path / "index", IndexConfig(views="all", batch_size=16), progress=False)
    index = GalleryIndex.load(tmp_path / "index", generator)
    images, targets = gallery.images[:3], ["+15", "-45", "0"]
    found = search_by_generation(generator, index, images, targets, 4)
    np.testing.assert_allclose(found.vectors, all_value_features(generator, images), atol=1e-5)
    _, stage2 = generator.generate(images, targets)
    assert np.abs(found.generated.astype(int) - np.clip(np.rint(stage2), 0, 255)).max() <= 1
    kept = index.faces["kept_pose"].to_numpy()
    for i, target in enumerate(targets):
        assert (kept[found.rows[i][found.rows[i] >= 0]] == target).all()


def test_one_target_check_for_the_command_line_and_the_form():
    generator = FakeGenerator()
    assert edit_target(generator, pose="30".replace("30", "+30")) == "+30"
    with pytest.raises(UserError, match="edits pose only: --accessory does not apply"):
        edit_target(generator, pose="+30", accessory="glasses")
    with pytest.raises(UserError, match=r"give --pose VALUE \(valid: -45"):
        edit_target(generator)
    with pytest.raises(UserError, match="give the target once, as target or pose"):
        edit_target(generator, "0", options=False, pose="+15")
    assert edit_target(generator, "+15", options=False) == "+15"
    with pytest.raises(UserError, match="unknown pose"):
        edit_target(generator, pose="+90")


def test_a_hit_is_correct_when_it_is_the_query_person_in_the_target_value():
    hits = correct_hits(np.array(["a", "a", "b"]), np.array(["+30", "0", "+30"]), "a", "+30")
    assert hits.tolist() == [True, False, False]
