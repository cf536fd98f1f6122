"""The photo-path benchmark's parts: a framing fitted on pasted photos puts the crop back on the dataset's crop."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facedata.detect import DetectConfig, detect_faces

CMU = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_faces"


@pytest.fixture(scope="module")
def forward_faces() -> np.ndarray:
    pytest.importorskip("dlib")
    if not (CMU / "images.npy").is_file():
        pytest.skip(f"{CMU} is absent")
    images, labels = np.load(CMU / "images.npy"), pd.read_csv(CMU / "labels.csv")
    return images[labels.index[(labels["pose"] == "forward") & (labels["accessory"] == "none")][:6]]


def test_a_fitted_framing_crops_the_pasted_dataset_square_from_the_box(forward_faces):
    from photo_path import fit_framings, framing_key

    from facedata.align import box_transform
    from photo_scenes import found_at, scenes

    config = DetectConfig(detector="hog")
    framings, record = fit_framings(forward_faces, ["forward"] * len(forward_faces), config, seed=0, least=4)
    assert "hog/frontal" in framings and record["hog/frontal"]["faces"] >= 4
    assert record["hog/frontal@forward"] == record["hog/frontal"]  # every face is in that pose
    assert "hog/frontal@left" not in framings
    aspect = forward_faces.shape[1] / forward_faces.shape[2]  # cmu_faces photos are 60×64: crops need not be square
    errors = []
    for scene in scenes(forward_faces, seed=0):
        hits = [f for f in detect_faces(scene.image, config) if found_at(f.box, scene.truth)]
        if not hits:
            continue
        t = box_transform(hits[0], framing=framings[framing_key(hits[0])], aspect=aspect)
        (x0, y0), (x1, y1) = t @ np.array([0.0, 0.0, 1.0]), t @ np.array([1.0, 1.0, 1.0])
        truth_side = scene.truth[2] - scene.truth[0]
        errors.append(np.abs(np.array([x0, y0, x1, y1]) - np.array(scene.truth)) / truth_side)
    # cmu_faces' photos are not face-centred (heads sit where the person sat): the median fits, each photo within 20 %
    assert len(errors) >= 4 and np.median(errors) < 0.06 and np.max(errors) < 0.2


class SaysForward:
    """A pose classifier stand-in that reads every crop as "forward"."""

    def predict(self, images):
        return np.array(["forward"] * len(images))


def test_photo_queries_are_cropped_at_the_models_size_and_a_missed_face_is_counted(forward_faces):
    from photo_path import fit_framings, photo_crops

    config = DetectConfig(detector="hog")
    framings, _ = fit_framings(forward_faces, ["forward"] * len(forward_faces), config, seed=0, least=4)
    blank = np.full((1, *forward_faces.shape[1:]), 128, np.uint8)  # no face to find
    faces = np.concatenate([forward_faces[:2], blank])
    crops, posed, reframed, found, right, keys = photo_crops(faces, framings, config, (32, 32), seed=1)
    assert crops.shape == posed.shape == (3, 32, 32) and crops.dtype == np.uint8
    assert np.array_equal(reframed, posed)  # no reframer: the posed crops
    assert found.tolist() == [True, True, False] and right[:2].all() and keys[2] is None
    assert crops[0].std() > 10 and np.all(crops[2] == 0)
    assert np.array_equal(posed, crops) and keys[:2] == ["hog/frontal"] * 2  # no classifier: no second framing

    shifted = {**framings, "hog/frontal@forward": framings["hog/frontal"].__class__(side=2.0, across=0.1, down=0.0)}
    again, posed, _, _, _, keys = photo_crops(faces, shifted, config, (32, 32), seed=1, classifier=SaysForward())
    assert np.array_equal(again, crops) and keys[:2] == ["hog/frontal@forward"] * 2 and keys[2] is None
    assert not np.array_equal(posed[0], crops[0]) and np.all(posed[2] == 0)

    class ReadsAQuarterRight:
        """A reframer that reads every crop as a quarter side right of the true one."""

        def errors(self, crops):
            return np.tile([0.25, 0.0, 0.0], (len(crops), 1))

    _, _, moved, found, _, _ = photo_crops(faces, framings, config, (32, 32), seed=1, reframer=ReadsAQuarterRight())
    assert found.tolist() == [True, True, False] and not np.array_equal(moved[0], crops[0]) and np.all(moved[2] == 0)
    same = np.abs(moved[0][:, 8:].astype(int) - crops[0][:, :-8]).mean()  # the crop taken again 8 px to the left
    assert same < 0.25 * np.abs(moved[0].astype(int) - crops[0]).mean()


def test_a_spread_takes_the_last_crop_again_moved_each_way_the_pattern_says(forward_faces):
    from photo_path import fit_framings, photo_crops, spread_pattern

    config = DetectConfig(detector="hog")
    framings, _ = fit_framings(forward_faces, ["forward"] * len(forward_faces), config, seed=0, least=4)
    pattern = spread_pattern(0.25, 0.1)
    assert pattern.shape == (7, 3) and not pattern[0].any() and np.allclose(pattern[1:].sum(0), 0)
    _, posed, single, _, _, _ = photo_crops(forward_faces[:2], framings, config, (32, 32), seed=1)
    _, _, moved, found, _, _ = photo_crops(forward_faces[:2], framings, config, (32, 32), seed=1, spread=pattern)
    assert moved.shape == (2, 7, 32, 32) and found.all()
    assert np.array_equal(moved[:, 0], single)  # the first move is none
    right = np.abs(moved[0, 1][:, 8:].astype(int) - single[0][:, :-8]).mean()  # +0.25 undone: the crop 8 px left
    assert right < 0.25 * np.abs(moved[0, 1].astype(int) - single[0]).mean()


def test_the_table_has_a_row_per_source_pose_and_one_for_all():
    from photo_path import markdown, per_pose

    source = np.array(["0", "0", "+45", "+45"])
    found = np.array([True, False, True, True])
    hits = np.zeros((4, 20), bool)
    hits[0, 0] = hits[2, 3] = True
    crop = hits.copy()
    crop[:, 0] = True  # every crop query right first
    rows = per_pose(source, found, found, {"photo": hits, "crop": crop})
    table = {r["source"]: r for r in rows}
    assert list(table) == ["0", "+45", "all"]
    assert table["0"]["detected"] == 50.0 and table["0"]["photo_r1"] == 50.0 and table["0"]["crop_r1"] == 100.0
    assert table["+45"]["photo_r1"] == 0.0 and table["+45"]["photo_r5"] == 50.0
    text = markdown({"detector": "hog", "queries": 4, "per_pose": rows, "data": "runs/kdef32",
                     "ms_per_photo_detect_and_crop": 80.0})
    assert "| **all** | 4 | 75.0 |" in text and text.startswith("`kdef32`: 4 queries as photos")
    rows = per_pose(source, found, found, {"photo": hits, "posed": crop & found[:, None], "crop": crop})
    text = markdown({"detector": "hog", "queries": 4, "per_pose": rows, "data": "runs/kdef32",
                     "ms_per_photo_detect_and_crop": 80.0})
    assert "posed R@1" in text and "| **all** | 4 | 75.0 | 25.0 | 75.0 | 75.0 | 75.0 | 100.0 | 100.0 | 100.0 | 0.75 |" in text


def test_framing_sensitivity_crops_the_pasted_square_moved_and_scaled_as_asked():
    from framing_sensitivity import jittered_crops, jittered_transform, parse_levels

    assert parse_levels("0:0,0.03:0.07") == [(0.0, 0.0), (0.03, 0.07)]
    for bad in ("0.1", "a:b", "-0.1:0"):
        with pytest.raises(SystemExit, match="--levels"):
            parse_levels(bad)
    truth = (100.0, 50.0, 164.0, 114.0)  # a 64-px square
    t = jittered_transform(truth, 1.0, np.array([0.0, 0.0]), 1.0)
    np.testing.assert_allclose(t @ [0, 0, 1], [100, 50])
    np.testing.assert_allclose(t @ [1, 1, 1], [164, 114])
    t = jittered_transform(truth, 1.0, np.array([0.25, -0.5]), 2.0)  # 16 px right, 32 up, twice the side
    np.testing.assert_allclose(t @ [0.5, 0.5, 1], [148, 50])
    np.testing.assert_allclose(t[0, 0], 128)
    faces = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    (exact, moved), again = jittered_crops(faces, [(0.0, 0.0), (0.1, 0.1)], (16, 16), seed=0)
    assert again == []  # no reframer

    class ReadsNothingOff:
        def errors(self, crops):
            return np.zeros((len(crops), 3))

    (_, moved_again), (exact_again, moved_reframed) = jittered_crops(faces, [(0.0, 0.0), (0.1, 0.1)], (16, 16), seed=0,
                                                                   reframer=ReadsNothingOff())
    np.testing.assert_array_equal(moved_reframed, moved_again)  # nothing read off: the same crops again
    assert exact.shape == moved.shape == (3, 16, 16)
    off_exact, off_moved = (np.abs(c.astype(int) - faces).mean() for c in (exact, moved))
    assert off_exact < 30 and off_moved > off_exact  # the pasted square comes back up to one resampling


def test_a_photo_benchmark_writes_its_record_and_table_side_by_side(tmp_path):
    import json

    from photo_scenes import write_report

    write_report(tmp_path / "out", "photo_path", {"queries": 3}, "| a |")
    assert json.loads((tmp_path / "out" / "photo_path.json").read_text())["queries"] == 3
    assert (tmp_path / "out" / "photo_path.md").read_text() == "| a |\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo_path.json", "photo_path.md"]
