"""Ours + Deep: the fused distance, the weight chosen on val people, and the bench row."""

import numpy as np
from fakes import save_untrained
from test_training import tiny_faceset

from facedata.faceset import FaceSet
from generator.inference import Generator
from retrieval import two_step
from retrieval.baselines import pixel_vectors
from retrieval.bench_methods import CHOSEN, OURS_CHOSEN, OURS_FUSED, SECOND_NET_DEEP
from retrieval.benchmark import BenchConfig, run_benchmark
from retrieval.fusion import choose_weight, descriptor_distances, fuse, median_scaled

GENERATION = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
DESCRIPTOR = np.array([[40.0, 30.0, 20.0, 10.0], [10.0, 20.0, 30.0, 40.0]], dtype=np.float32)
ALL = np.ones(4, dtype=bool)


def test_median_scaling_removes_each_rows_unit():
    np.testing.assert_allclose(median_scaled(GENERATION), median_scaled(100 * GENERATION), rtol=1e-6)
    assert np.allclose(np.median(median_scaled(DESCRIPTOR), axis=1), 1.0)


def test_weight_zero_ranks_as_generation_and_one_as_descriptor():
    assert np.array_equal(np.argsort(fuse(GENERATION, DESCRIPTOR, ALL[:2], ALL, 0.0)), np.argsort(GENERATION))
    assert np.array_equal(np.argsort(fuse(GENERATION, DESCRIPTOR, ALL[:2], ALL, 1.0)), np.argsort(DESCRIPTOR))


def test_an_undetected_face_keeps_the_generation_distance():
    gallery_found = np.array([True, False, True, True])
    fused = fuse(GENERATION, DESCRIPTOR, ALL[:2], gallery_found, 1.0)
    np.testing.assert_allclose(fused[:, 1], median_scaled(GENERATION)[:, 1])  # not the descriptor's
    query_found = np.array([False, True])
    np.testing.assert_allclose(fuse(GENERATION, DESCRIPTOR, query_found, ALL, 1.0)[0], median_scaled(GENERATION)[0])


def test_descriptor_distances_are_squared_l2():
    a, b = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0]])
    np.testing.assert_allclose(descriptor_distances(a, b), [[25.0], [13.0]])


def test_choose_weight_takes_the_best_score_then_the_lower_weight():
    assert choose_weight(lambda w: (1.0 - abs(w - 0.3),)).weight == 0.3
    assert choose_weight(lambda w: (1.0, w <= 0.6)).weight == 0.0  # second score breaks the first's tie
    flat = choose_weight(lambda w: (0.5,))
    assert flat.weight == 0.0 and len(flat.scores) == 11


def test_bench_adds_the_fused_row_with_its_weight_chosen_on_val(tmp_path, monkeypatch):
    # dlib stands in as raw pixels, every face detected
    def by_identity(images, cache=None, batch_size=64, detector="hog"):
        return pixel_vectors(images), np.ones(len(images), dtype=bool)

    monkeypatch.setattr(two_step, "deep_descriptors", by_identity)
    faces = tiny_faceset(identities=6, test_identities=2)
    split = faces.faces["split"].to_numpy().copy()
    split[faces.faces["identity"].isin(["id02", "id03"]).to_numpy()] = "val"
    faces.faces["split"] = split
    faces = FaceSet.open(faces.write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    config = BenchConfig(queries=40, generation_pairs=0, grid_queries=2, batch_size=64, deep=True, all_values=True)
    record = run_benchmark(generator, faces, tmp_path / "report", config)
    assert (OURS_FUSED, SECOND_NET_DEEP) in {(r["method"], r["features"]) for r in record["results"]}
    fusion = record["fusion"]
    assert fusion["chosen_on"].startswith("val: 40 queries of the 2 val people, gallery") and set(fusion["val_scores"]) == {f"{w / 10:g}" for w in range(11)}
    best = max(tuple(v) for v in fusion["val_scores"].values())
    assert tuple(fusion["val_scores"][f"{fusion['weight']:g}"]) == best

    fixed = run_benchmark(generator, faces, tmp_path / "fixed", BenchConfig(**{**config.__dict__, "fusion_weight": 0.3}))
    assert fixed["fusion"] == {"weight": 0.3, "chosen_on": "--fusion-weight"}


def test_the_chosen_row_takes_the_best_val_setting_of_views_and_weight(tmp_path, monkeypatch):
    def by_identity(images, cache=None, batch_size=64, detector="hog"):
        return pixel_vectors(images), np.ones(len(images), dtype=bool)

    monkeypatch.setattr(two_step, "deep_descriptors", by_identity)
    faces = FaceSet.open(tiny_faceset(identities=6, test_identities=2, val_identities=2).write(tmp_path / "faces"))
    generator = Generator.load(save_untrained(tmp_path / "model"))
    config = BenchConfig(queries=40, generation_pairs=0, grid_queries=2, batch_size=64, deep=True, all_values=True)
    record = run_benchmark(generator, faces, tmp_path / "report", config)
    chosen = record["chosen"]
    scores = {label: tuple(v) for label, v in chosen["val_scores"].items()}
    assert len(scores) == 3 * 11 and scores[f"views {chosen['views']}, Deep weight {chosen['weight']:g}"] == max(scores.values())
    rows = {(r["method"], r["features"]) for r in record["results"]}
    assert (OURS_CHOSEN, CHOSEN) in rows and "ours, chosen on val:" in (tmp_path / "report" / "report.md").read_text()

    without_deep = run_benchmark(generator, faces, tmp_path / "plain", BenchConfig(**{**config.__dict__, "deep": False}))
    assert without_deep["chosen"]["weight"] == 0.0 and set(without_deep["chosen"]["val_scores"]) == {
        "views all, Deep weight 0", "views target, Deep weight 0", "views kept, Deep weight 0"}
    assert all(len(v) == 4 for v in without_deep["chosen"]["val_scores"].values())  # mAP, R@1, R@5, criterion-2 R@1


def test_view_distances_give_every_views_mean_and_the_target_views_own():
    from fakes import FakeGenerator, tiny_gallery
    from index.features import value_views
    from retrieval.multi_view import view_distances

    faces = tiny_gallery(identities=3, lights=1, train_identities=1)
    generator = FakeGenerator()
    rows, targets = np.array([0, 3, 0]), np.array([generator.vocabulary[1], generator.vocabulary[0], generator.vocabulary[2]])
    mean, target = view_distances(generator, faces.images, rows, targets)
    views = list(value_views(generator, faces.images))
    expected_mean = np.mean([2 - 2 * (v[rows] @ v.T) for v in views], axis=0)
    np.testing.assert_allclose(mean, expected_mean, atol=1e-5)
    for i, value in enumerate(targets):
        v = views[generator.vocabulary.index(value)]
        np.testing.assert_allclose(target[i], 2 - 2 * (v[rows[i]] @ v.T), atol=1e-5)
    *same, asked = view_distances(generator, faces.images, rows, targets, query_views=True)
    np.testing.assert_array_equal(same[0], mean)
    from index.features import l2_normalize

    one_pass = l2_normalize(generator.features(faces.images[rows], list(targets)))  # what a single view generates
    np.testing.assert_allclose(asked, one_pass, atol=1e-5)
