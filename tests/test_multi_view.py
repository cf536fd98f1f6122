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


def test_faces_go_through_the_every_value_pass_once_with_the_views_of_one_pass_per_value(tmp_path):
    from index.features import value_views

    faces = FaceSet.open(tiny_faceset(identities=2, test_identities=1).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    calls = []
    features, every_value = generator.features, generator.every_value
    generator.features = lambda *a, **k: calls.append(("features", len(a[0]))) or features(*a, **k)
    generator.every_value = lambda *a, **k: calls.append(("every", len(a[0]))) or every_value(*a, **k)
    one_pass = np.concatenate(list(value_views(generator, faces.images[:3])), axis=1)
    assert calls == [("every", 3)]
    calls.clear()
    per_value = np.concatenate(list(value_views(generator, faces.images[:3], memory=0)), axis=1)
    assert calls == [("features", 3)] * len(generator.vocabulary)
    np.testing.assert_allclose(one_pass, per_value, atol=1e-5)


def test_the_every_value_pass_gives_each_value_s_features_and_the_asked_pictures(tmp_path):
    """Sharing the encoder and splitting the decoders' convolutions changes nothing but float rounding."""
    faces = FaceSet.open(tiny_faceset(identities=2, test_identities=1).write(tmp_path / "faces"))
    for arch in ("paper", "skip"):
        generator = Generator.load(save_untrained(tmp_path / arch, arch=arch, descriptor_dim=8))
        values = list(generator.vocabulary)
        images = faces.images[:3]
        wanted = [values[1], values[0], values[-1]]
        for layer in generator.feature_layers:
            every, shown = generator.every_value(images, layer, pictures=wanted, batch_size=4)
            one_by_one = generator.features(np.repeat(images, len(values), axis=0), values * 3, layer)
            scale = max(1.0, float(np.abs(one_by_one).max()))
            np.testing.assert_allclose(every.reshape(len(one_by_one), -1), one_by_one, atol=1e-4 * scale)
            np.testing.assert_allclose(shown, generator.generate(images, wanted)[1], atol=1e-3)

