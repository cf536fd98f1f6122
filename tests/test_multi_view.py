"""Ours over every value: distances averaged over the V generated views, ranking among the target's faces."""

import numpy as np
from fakes import save_untrained
from test_training import tiny_faceset

from facedata.faceset import FaceSet
from generator.inference import Generator
from index.features import l2_normalize
from retrieval.multi_view import all_value_distances, rank_among


def test_distances_are_the_mean_over_values_of_normalized_squared_l2(tmp_path):
    faces = FaceSet.open(tiny_faceset(identities=2, test_identities=1).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    images = faces.images[:6]
    got = all_value_distances(generator, images, np.array([4, 0]))
    expected = np.zeros((2, 6))
    for value in generator.vocabulary:
        views = l2_normalize(generator.features(images, [value] * 6))
        expected += ((views[[4, 0]][:, None, :] - views[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(got, expected / len(generator.vocabulary), atol=1e-4)
    assert abs(got[0, 4]) < 1e-5 and abs(got[1, 0]) < 1e-5  # a face is nearest itself


def test_ranking_keeps_the_target_value_only_and_pads_with_minus_one():
    distances = np.array([[0.3, 0.1, 0.2, 0.0], [0.5, 0.5, 0.1, 0.2]], np.float32)
    values = np.array(["0", "+30", "+30", "0"])
    rows = rank_among(distances, values, np.array(["+30", "0"]), k=3)
    assert rows.tolist() == [[1, 2, -1], [3, 0, -1]]


def test_a_few_faces_go_through_the_network_once_for_all_values_with_the_same_views(tmp_path):
    from index.features import all_value_features

    faces = FaceSet.open(tiny_faceset(identities=2, test_identities=1).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    calls = []
    features = generator.features
    generator.features = lambda *a, **k: calls.append(len(a[0])) or features(*a, **k)
    one_pass = all_value_features(generator, faces.images[:2], batch_size=256)
    assert calls == [2 * len(generator.vocabulary)]
    calls.clear()
    per_value = all_value_features(generator, faces.images[:2], batch_size=1)
    assert calls == [2] * len(generator.vocabulary)
    np.testing.assert_allclose(one_pass, per_value, atol=1e-5)
