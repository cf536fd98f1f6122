"""The "Deep" 2-step baseline: dlib's face descriptor of small crops, cached, ranked behind the pose filter.

Tests that run the real model skip without dlib (the optional `deep` extra); the rest run everywhere.
"""

import sys

import numpy as np
import pytest
from fakes import save_untrained, tiny_gallery
from test_training import tiny_faceset

from facedata.errors import UserError
from facedata.faceset import FaceSet
from generator.inference import Generator
from retrieval import deep_descriptor, two_step
from retrieval.baselines import pixel_vectors, two_step_rank
from retrieval.benchmark import BenchConfig, run_benchmark
from facedata.detect import DetectedFace
from retrieval.deep_descriptor import box_chip, cache_key, compute_descriptors, deep_descriptors, face_chips
from retrieval.protocol import QuerySet
from retrieval.two_step import PoseFilter, rank_by_deep_descriptor


def crops(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("dlib")
    try:
        return deep_descriptor.load_model()
    except UserError as exc:  # dlib without the model package
        pytest.skip(str(exc))


class CountingModel:
    """A stand-in for dlib's model: the descriptor of a chip is its mean brightness, repeated."""

    def __init__(self):
        self.chips = 0

    def compute_face_descriptor(self, chips):
        self.chips += len(chips)
        return [np.full(128, chip.mean() / 255.0) for chip in chips]


def test_face_chips_are_150_pixel_rgb_copies_of_the_gray_crop():
    chips = face_chips(np.full((2, 8, 8), 77, np.uint8))
    assert chips.shape == (2, 150, 150, 3) and chips.dtype == np.uint8
    assert np.all(chips == 77)


def test_without_dlib_the_error_names_the_deep_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now fails
    with pytest.raises(UserError, match=r"pip install -e '\.\[deep\]'"):
        deep_descriptors(crops())


def test_without_the_model_package_the_error_names_the_deep_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(UserError, match="deep extra"):
        deep_descriptor.model_path()


def test_the_cache_is_reused_and_a_rerun_does_not_call_the_model(tmp_path, monkeypatch):
    fake = CountingModel()
    monkeypatch.setattr(deep_descriptor, "load_model", lambda: fake)
    first, _ = deep_descriptors(crops(), cache=tmp_path, align=False)
    assert fake.chips == 6 and len(list(tmp_path.glob("deep-*.npz"))) == 1
    np.testing.assert_array_equal(deep_descriptors(crops(), cache=tmp_path, align=False)[0], first)
    assert fake.chips == 6
    deep_descriptors(crops(seed=1), cache=tmp_path, align=False)  # other images: another key
    assert fake.chips == 12 and len(list(tmp_path.glob("deep-*.npz"))) == 2


def test_each_detector_has_its_own_cache_key():
    images = crops()
    keys = {cache_key(images, detector=name) for name in ("hog", "hog+haar", "cnn")}
    assert len(keys) == 3 and cache_key(images, align=False, detector="hog") == cache_key(images, align=False)


def test_a_profile_box_is_cut_square_with_the_chips_padding_and_edges_repeated():
    image = np.zeros((40, 40), np.uint8)
    image[10:30, 10:30] = 200  # the box's content; a 20-px box padded by 5 px a side fits the image
    face = DetectedFace(box=(10.0, 10.0, 30.0, 30.0), eyes=None, nose=None, score=1.0, kind="profile-left", source="haar-profile")
    chip = box_chip(image, face, size=30)
    assert chip.shape == (30, 30, 3) and chip.dtype == np.uint8
    assert chip[15, 15, 0] == 200 and chip[1, 1, 0] == 0  # the box in the middle, its padding around it
    edge = DetectedFace(box=(0.0, 0.0, 20.0, 20.0), eyes=None, nose=None, score=1.0, kind="profile-right", source="haar-profile")
    corner = box_chip(np.full((40, 40), 90, np.uint8), edge, size=30)
    assert np.all(corner == 90)  # past the image's edge: its edge pixels, not black


def test_descriptors_are_128_wide_and_deterministic(model):
    images = crops()
    first, found = compute_descriptors(model, images, batch_size=4)
    assert first.shape == (6, 128) and first.dtype == np.float32 and np.all(np.isfinite(first))
    assert found.shape == (6,) and found.dtype == bool
    np.testing.assert_array_equal(compute_descriptors(model, images)[0], first)


def test_deep_ranking_keeps_only_rows_predicted_in_the_target_pose(model, tmp_path):
    gallery = tiny_gallery(identities=1, lights=1)  # 7 faces, one per pose
    predicted = np.array(["0", "+15", "0", "+15", "0", "+15", "0"])
    queries = QuerySet(positions=np.array([0, 2, 1]), targets=np.array(["+15", "0", "-45"]), edit="pose")
    pose_filter = PoseFilter(classifier=None, gallery_pred=predicted, query_pred=predicted[queries.positions], accuracy=0.0)
    rows, _ = rank_by_deep_descriptor(gallery, queries, pose_filter.gallery_pred, k=4, cache=tmp_path)
    assert rows.shape == (3, 4)
    assert set(rows[0, :3]) == {1, 3, 5} and rows[0, 3] == -1  # 3 survivors, then padding
    assert set(rows[1]) == {0, 2, 4, 6} and rows[1, 0] == 2  # the query image itself comes first
    assert np.all(rows[2] == -1)  # nothing predicted in -45
    vectors, _ = deep_descriptors(gallery.images, cache=tmp_path)  # same ranking, same ties, as two_step_rank
    np.testing.assert_array_equal(rows, two_step_rank(vectors[queries.positions], vectors, predicted, queries.targets, 4))


def test_bench_with_deep_adds_the_papers_deep_row(tmp_path, monkeypatch):
    monkeypatch.setattr(two_step, "deep_descriptors", lambda images, cache=None, batch_size=64, detector="hog": (pixel_vectors(images), np.arange(len(images)) % 2 == 0))
    faces = FaceSet.open(tiny_faceset(identities=3, test_identities=2).write(tmp_path / "faces"))
    config = BenchConfig(queries=40, generation_pairs=20, grid_queries=3, batch_size=64, deep=True)
    record = run_benchmark(Generator.load(save_untrained(tmp_path / "model")), faces, tmp_path / "report", config)
    assert ("2-step retrieval", "Deep") in {(r["method"], r["features"]) for r in record["results"]}
    assert "2-step deep" in record["timings_seconds"]
    table2 = (tmp_path / "report" / "report.md").read_text().split("## Table 2")[1].split("## Table 3")[0]
    rows = [line for line in table2.splitlines() if line.startswith("| 2-step retrieval | Deep |")]
    assert len(rows) == 1 and "—" not in rows[0] and "56.9%" in rows[0]  # ours beside the paper's figures, one row


def test_the_cache_key_changes_with_the_detector_s_settings_and_its_weights(monkeypatch, tmp_path):
    from facedata import face_check
    from facedata.detect import DetectConfig, detector_fingerprint
    from retrieval import deep_descriptor

    images = crops()
    before = cache_key(images, detector="blaze")
    assert cache_key(images, detector="blaze") == before  # the same settings and weights: the same key
    # a retrained face check (another weights file) is another key; HOG does not read it
    other = tmp_path / "face_check.safetensors"
    other.write_bytes(b"retrained")
    hog = cache_key(images, detector="hog")
    monkeypatch.setattr(face_check, "WEIGHTS", other)
    assert cache_key(images, detector="blaze") != before and cache_key(images, detector="hog") == hog
    # another threshold is another key
    monkeypatch.setattr(deep_descriptor, "chip_detect_config",
                        lambda detector: DetectConfig(detector=detector, check_threshold=0.5))
    assert cache_key(images, detector="hog") != hog
    assert detector_fingerprint(DetectConfig()) != detector_fingerprint(DetectConfig(check_onet_share=0.0))
