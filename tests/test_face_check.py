"""The face check: BlazeFace's boxes read again with some context, face-like textures dropped.

Real photos: cmu_faces originals (64×60), read in place from ../shared beside the repository.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facedata.detect import DetectConfig, blaze_faces, checked, detect_faces
from facedata.errors import UserError
from facedata.face_check import CONTEXT, SIDE, WEIGHTS, FaceCheck, box_windows, check_crops, face_probability


def test_a_box_is_read_as_a_square_of_its_longer_side_times_the_context_on_its_centre():
    (window,) = box_windows(np.array([[10.0, 20.0, 30.0, 60.0]]))
    assert window.side == pytest.approx(CONTEXT * 40)
    assert window.left + window.side / 2 == pytest.approx(20) and window.top + window.side / 2 == pytest.approx(40)


def test_crops_are_standardized_so_exposure_says_nothing():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 200, (64, 64)).astype(np.uint8)
    brighter = (picture // 2 + 100).astype(np.uint8)  # the same picture at half the contrast, lifted
    box = np.array([[16.0, 16.0, 48.0, 48.0]])
    a, b = check_crops(picture, box), check_crops(brighter, box)
    assert a.shape == (1, 1, SIDE, SIDE)
    assert float(a.mean()) == pytest.approx(0, abs=1e-5) and float(a.std()) == pytest.approx(1, abs=1e-3)
    assert torch.allclose(a, b, atol=0.05)


def test_the_shipped_check_loads_from_safetensors_and_is_small():
    from safetensors.torch import load_file

    state = load_file(str(WEIGHTS))
    FaceCheck().load_state_dict(state)
    assert WEIGHTS.stat().st_size < 400_000


def test_the_check_finds_the_faces_of_real_photos_likely_and_a_flat_picture_not(cmu):
    images, labels = cmu
    forward = labels.index[(labels["pose"] == "forward") & (labels["accessory"] == "none")][:12]
    likely = []
    for row in forward:
        faces = blaze_faces(images[row], 16, 0.5)
        if faces:
            likely.append(face_probability(images[row], np.array([faces[0].box]))[0])
    assert len(likely) >= 10 and np.median(likely) > 0.5, likely
    flat = np.full((64, 64), 128, np.uint8)
    assert face_probability(flat, np.array([[16.0, 16.0, 48.0, 48.0]]))[0] < 0.5


def test_checked_keeps_only_boxes_at_the_threshold_and_nothing_from_nothing():
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (96, 96), dtype=np.uint8)
    faces = blaze_faces(picture, 16, 0.0)[:5]
    assert checked(picture, faces, 0.0) == faces
    assert checked(picture, faces, 1.01) == []
    assert checked(picture, [], 0.5) == []


def test_blaze_unchecked_is_blazeface_alone_at_its_own_threshold(cmu):
    images, _ = cmu
    config = DetectConfig(detector="blaze-unchecked", unchecked_threshold=0.5, blaze_threshold=0.9, check_threshold=1.01)
    for image in images[:6]:
        found = {tuple(np.round(f.box, 3)) for f in detect_faces(image, config)}
        assert found == {tuple(np.round(f.box, 3)) for f in blaze_faces(image, 16, 0.5)}
        sure = DetectConfig(detector="blaze", check_threshold=1.01, check_high_threshold=1.01)
        assert detect_faces(image, sure) == []  # the face check and ONet drop every box


def test_missing_weights_are_a_user_error_naming_the_file(monkeypatch, tmp_path):
    from facedata import face_check

    monkeypatch.setattr(face_check, "WEIGHTS", tmp_path / "face_check.safetensors")
    face_check.load_check.cache_clear()
    try:
        with pytest.raises(UserError, match="face_check.safetensors"):
            face_check.load_check()
    finally:
        face_check.load_check.cache_clear()


def test_the_training_examples_are_boxes_on_pasted_faces_and_boxes_on_textures():
    from facedata.detect import found_at
    from facedata.face_check_train import CheckTrainConfig, examples, texture

    rng = np.random.default_rng(0)
    picture = texture(rng, (60, 64), np.zeros((4, 25, 25), np.uint8))
    assert picture.shape == (60, 64) and picture.dtype == np.uint8
    assert found_at(np.array([10, 10, 30, 30]), (8, 8, 32, 32)) and not found_at(np.array([40, 40, 60, 60]), (8, 8, 32, 32))
    wallpapers = [rng.integers(0, 256, (480, 640), dtype=np.uint8)]
    crops, labels, groups = examples(CheckTrainConfig(identities=2, scenes=6, textures=4, photos=4, jitter=1), wallpapers)
    assert crops.shape[1:] == (1, SIDE, SIDE) and len(crops) == len(labels) == len(groups)
    # every scene gives its face (BlazeFace's box, or the pasted square where it found none): 6 procedural, 2 real
    assert labels.sum() >= 8 and set(np.unique(groups[labels.numpy() == 1])) >= {10, 11}
    assert (labels == 0).any()
    without = examples(CheckTrainConfig(identities=2, scenes=1, textures=1, photos=4, jitter=1))[2]
    assert set(np.unique(without)) <= {0, 1}  # no wallpapers, no photos


def test_the_rendered_faces_also_wear_the_configured_accessories():
    from facedata.face_check_train import CheckTrainConfig, main, rendered_faces

    bare = rendered_faces(CheckTrainConfig(identities=1, accessories=()))
    worn = rendered_faces(CheckTrainConfig(identities=1, accessories=("sunglasses", "cap")))
    # 13 yaws × 3 lights × the varied preset's 7 expressions bare, then 13 × 3 per accessory (neutral only)
    assert bare.shape == (13 * 3 * 7, 64, 64) and bare.dtype == np.uint8
    assert worn.shape == (len(bare) + 2 * 13 * 3, 64, 64)
    assert np.array_equal(worn[: len(bare)], bare)  # the bare heads do not move when accessories are added
    raised = rendered_faces(CheckTrainConfig(identities=1, accessories=(), pitches=(30.0,)))
    assert raised.shape == (len(bare) + 2 * 13 * 3, 64, 64)  # bare and in sunglasses, raised
    with pytest.raises(SystemExit) as exit_info:
        main(["--accessories", "scarf"])
    assert exit_info.value.code == 2


def test_the_chosen_rule_keeps_every_validation_picture_face_free_then_finds_the_most_faces(monkeypatch):
    import choose_detector
    from choose_detector import Run, choose, grid, robust

    monkeypatch.setattr(choose_detector, "BLAZE_GRID", (0.5, 0.6))
    box, elsewhere = np.array([[10.0, 10, 30, 30]]), np.array([[60.0, 60, 80, 80]])
    none = Run(np.zeros((0, 4)), np.zeros(0), np.zeros(0, bool), np.zeros(0))

    def picture(high: Run, low: Run) -> dict:  # the faces BlazeFace reports at 0.6 and at 0.5
        return {0.6: high, 0.5: low}

    def run(boxes, likely, on_face=True, onet=0.0):
        return Run(boxes, np.asarray(likely, float), np.full(len(boxes), on_face), np.full(len(boxes), onet))

    cmu = [picture(run(box, [0.9]), run(box, [0.9])),  # found at 0.6
           picture(run(box, [0.3]), run(box, [0.3])),  # a face the check doubts: found only with a check ≤ 0.3
           picture(none, run(box, [0.9])),  # a face BlazeFace scores between 0.5 and 0.6, sure to the check
           picture(none, none)]
    both = Run(np.concatenate([box, elsewhere]), np.array([0.8, 0.95]), np.array([True, False]), np.zeros(2))
    kdef = [picture(both, both)]
    free = [picture(run(box, [0.5]), run(box, [0.5])), picture(none, run(elsewhere, [0.8], onet=0.6))]
    rows = grid(cmu, kdef, free, "none")
    single = {r["check_threshold"]: r for r in rows if r["blaze_threshold"] == 0.6 and r["low_threshold"] == 0.6}
    assert single[0.0]["cmu_found"] == 2 and single[0.0]["pictures_with_a_face"] == 1
    assert single[0.55]["cmu_found"] == 1 and single[0.55]["kdef_found"] == 1 and single[0.55]["pictures_with_a_face"] == 0
    assert single[0.85]["kdef_found"] == 0  # only the box off the face is left
    # the second way: the 0.5-scored face gets in by a surer check, the 0.5-scored texture is kept out
    chosen = choose(rows)
    assert (chosen["cmu_found"], chosen["kdef_found"], chosen["pictures_with_a_face"]) == (2, 1, 0)
    assert (chosen["blaze_threshold"], chosen["check_threshold"], chosen["low_threshold"], chosen["high_check"],
            chosen["mirror"]) == (0.6, 0.8, 0.5, 0.9, "none")
    # a rule one grid step from a false face is not robust: the texture's 0.8 bars a second-way check of 0.85
    edge = [r for r in rows if (r["blaze_threshold"], r["check_threshold"], r["low_threshold"], r["high_check"],
                                r["second_check"]) == (0.6, 0.8, 0.5, 0.85, "face-check")]
    assert edge[0]["pictures_with_a_face"] == 0 and edge[0] not in robust(rows)
    # the second way vetted by ONet: the texture ONet reads 0.6 likely is kept out from 0.65 up
    onet = {r["high_check"]: r for r in rows if (r["blaze_threshold"], r["check_threshold"], r["low_threshold"],
                                                  r["second_check"]) == (0.6, 0.8, 0.5, "onet")}
    assert onet[0.6]["pictures_with_a_face"] == 1 and onet[0.65]["pictures_with_a_face"] == 0
    assert onet[0.65]["cmu_found"] == 1  # ONet reads the cmu faces 0 likely here
    with pytest.raises(SystemExit):
        choose([r for r in rows if r["pictures_with_a_face"]])
    # the check blended with ONet: the texture the check finds 0.5 likely and ONet 0 is kept out by a half share
    # from a blended 0.3 up, where the check alone needed 0.55; rows carry their share
    blended = {r["check_threshold"]: r for r in grid(cmu, kdef, free, "none", onet_share=0.5)
               if r["blaze_threshold"] == 0.6 and r["low_threshold"] == 0.6}
    assert blended[0.25]["pictures_with_a_face"] == 1 and blended[0.3]["pictures_with_a_face"] == 0
    assert {r["onet_share"] for r in rows} == {0.0} and blended[0.3]["onet_share"] == 0.5
    # of two rules finding as many, the one without ONet in the check is chosen (less work)
    assert choose(rows + [dict(chosen, onet_share=0.5)])["onet_share"] == 0.0


def test_the_second_way_keeps_the_first_way_s_faces_and_adds_sure_faces_elsewhere():
    from facedata.detect import second_way

    kept = np.array([[10.0, 10, 30, 30]])
    boxes = np.array([[11.0, 11, 31, 31], [60, 60, 80, 80], [100, 100, 120, 120]])
    assert second_way(kept, boxes, np.array([0.99, 0.95, 0.5]), 0.7).tolist() == [False, True, False]
    assert second_way(np.zeros((0, 4)), boxes, np.array([0.99, 0.95, 0.5]), 0.7).tolist() == [True, True, False]
    assert second_way(kept, np.zeros((0, 4)), np.zeros(0), 0.7).tolist() == []


def test_two_way_faces_with_equal_thresholds_is_the_first_way_alone(cmu):
    from facedata.detect import two_way_faces

    images, _ = cmu
    for image in images[:4]:
        alone = checked(image, blaze_faces(image, 16, 0.63), DetectConfig().check_threshold)
        same = two_way_faces(image, DetectConfig(blaze_low_threshold=0.63))
        assert [f.box for f in same] == [f.box for f in alone]
        both = two_way_faces(image, DetectConfig(blaze_low_threshold=0.4, check_high_threshold=0.0))
        assert {tuple(f.box) for f in alone} <= {tuple(f.box) for f in both}  # the first way's boxes stay as they were


def test_the_validation_pictures_are_not_the_benchmarks_face_free_pictures():
    from photo_scenes import FACE_FREE, validation_pictures

    pictures = validation_pictures()
    names = {name.split(" ×")[0] for name, _ in pictures}
    assert len(pictures) == 3 * len(names) and not names & set(FACE_FREE)
    assert all(p.dtype == np.uint8 and p.ndim == 2 for _, p in pictures)


def test_the_share_of_the_photo_is_judged_by_faces_found_then_false_faces_then_speed():
    from choose_min_face_share import best, markdown

    def row(share, cmu, kdef, false, ms):
        return {"min_face_share": share, "scene_min_face": max(16, round(share * 480)), "cmu_found": cmu, "cmu_total": 378,
                "kdef_found": kdef, "kdef_total": 200, "pictures_with_a_face": false, "pictures": 93, "ms_per_scene": ms}

    rows = [row(0.0, 351, 198, 0, 130.0), row(0.05, 351, 198, 0, 127.0), row(0.1, 351, 198, 0, 27.0)]
    assert best(rows)["min_face_share"] == 0.1  # as many faces, no false one, fastest
    assert best(rows[:2] + [row(0.1, 351, 197, 0, 27.0)])["min_face_share"] == 0.05  # one face fewer outweighs speed
    assert best(rows[:2] + [row(0.1, 351, 198, 1, 27.0)])["min_face_share"] == 0.05  # so does a false face
    table = markdown({"rows": rows, "chosen": rows[2]})
    assert "| 0.1 | 48 | 351/378 | 198/200 | 0/93 | 27 |" in table and "Best on these sets: 0.1" in table


def test_real_faces_take_the_box_both_judges_agree_on_else_the_median_of_the_person_s_in_that_pose(monkeypatch):
    import pandas as pd

    from facedata import face_check_train, onet
    from facedata.blazeface import Detection
    from facedata.face_check_train import CheckTrainConfig, real_face_squares

    sure = {0: (10, 10, 30, 30), 1: (14, 10, 34, 30), 3: (40, 5, 60, 25)}  # photo → the box ONet is sure of

    def detect(image, smallest_face, threshold):
        box = sure.get(int(image[0, 0]), (0, 0, 8, 8))
        return [Detection(box=box, keypoints=np.zeros((6, 2)), score=0.9)]

    monkeypatch.setattr(face_check_train, "detect", detect)
    monkeypatch.setattr(onet, "onet_probability",
                        lambda image, boxes: np.array([0.99 if int(image[0, 0]) in sure else 0.1] * len(boxes)))
    images = np.stack([np.full((60, 64), i, np.uint8) for i in range(5)])
    labels = pd.DataFrame({"identity": ["a", "a", "a", "a", "a"], "pose": ["up", "up", "up", "left", "right"]})
    boxes, agreed = real_face_squares(images, labels, CheckTrainConfig())
    assert agreed.tolist() == [True, True, False, True, False]
    assert boxes[2].tolist() == [12, 10, 32, 30]  # the median of the person's two agreed boxes looking up
    assert boxes[4].tolist() == [14, 10, 34, 30]  # no agreed box looking right: the median of all the person's


def test_an_augmented_real_photo_keeps_its_box_on_the_face():
    from facedata.face_check_train import augmented

    image = np.full((60, 64), 40, np.uint8)
    image[10:30, 40:60] = 220  # the "face"
    rng = np.random.default_rng(3)
    for _ in range(20):
        out, box = augmented(image, np.array([40, 10, 60, 30]), rng)
        left, top, right, bottom = np.round(box).astype(int)
        inside = out[top + 2 : bottom - 2, left + 2 : right - 2].mean()
        assert inside > out.mean() + 20, (box, out.shape)  # moved, scaled and mirrored with the photo


def test_real_faces_need_the_dataset_and_a_split(tmp_path):
    from facedata.errors import DataError
    from facedata.face_check_train import main, real_photos

    with pytest.raises(DataError, match="images.npy"):
        real_photos(tmp_path, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--real-faces", str(tmp_path), "--split-from", str(tmp_path)])
    assert exit_info.value.code == 2


def test_real_photos_are_read_from_the_train_people_of_a_split(cmu, tmp_path):
    import pandas as pd

    from facedata.face_check_train import real_photos

    images, labels = cmu
    people = labels["identity"].unique()
    pd.DataFrame({"identity": people, "split": ["train"] * 2 + ["val"] * (len(people) - 2)}).to_parquet(tmp_path / "faces.parquet")
    from conftest import CMU

    photos, rows = real_photos(CMU, tmp_path)
    assert set(rows["identity"]) == set(people[:2]) and len(photos) == len(rows) == labels["identity"].isin(people[:2]).sum()
    assert np.array_equal(photos[0], images[int(np.flatnonzero(labels["identity"] == rows["identity"][0])[0])])


def test_real_photos_join_the_examples_as_faces_in_their_own_groups(cmu):
    from facedata.face_check_train import CheckTrainConfig, examples

    images, labels = cmu
    rows = np.flatnonzero(labels["pose"].eq("forward").to_numpy())[:2]
    real = (images[rows], labels.iloc[rows].reset_index(drop=True))
    config = CheckTrainConfig(identities=1, scenes=1, textures=1, photos=0, jitter=1, real_repeats=2, accessories=())
    crops, truth, groups = examples(config, None, real)
    assert len(crops) == len(truth) == len(groups)
    real_rows = groups >= 2  # the two procedural pictures are groups 0 and 1, the real photos 2 and 3
    assert set(np.unique(groups[real_rows])) == {2, 3}
    assert truth.numpy()[real_rows].sum() >= 4  # each photo's face in each of its two readings


def test_a_grid_without_a_clean_rule_is_reported_not_a_crash():
    from choose_detector import choose, rule_or_none

    rows = [{"mirror": "none", "blaze_threshold": 0.6, "check_threshold": 0.5, "low_threshold": 0.6, "high_check": 0.5,
             "second_check": "face-check", "cmu_found": 3, "kdef_found": 2, "pictures_with_a_face": 1}]
    assert rule_or_none(rows, margin=False) is None
    with pytest.raises(SystemExit):
        choose(rows)
    clean = [dict(rows[0], pictures_with_a_face=0)]
    assert rule_or_none(clean, margin=False) == clean[0]
