"""Turned faces: the cascades find the profiles HOG misses, boxes of several detectors merge, a profile
box is cropped from its box, and face-free pictures stay face-free.

Real photos: cmu_faces originals (64×60), read in place from ../shared beside the repository.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from facedata.align import BoxFraming, align_face, box_transform
from facedata.detect import DETECTORS, DetectConfig, DetectedFace, detect_faces, merge_boxes
from facedata.errors import UserError

pytest.importorskip("dlib", reason="face detection needs the deep extra (dlib-bin)")
pytest.importorskip("cv2", reason="the cascades need the deep extra (opencv-python-headless 4.x)")


def test_the_profile_cascades_find_turned_faces_that_hog_misses_and_say_which_way_they_look(cmu):
    images, labels = cmu
    alex = labels[(labels["identity"] == "alex") & labels["pose"].isin(["left", "right"])]
    looks = {"left": "profile-left", "right": "profile-right"}
    gained = 0
    for row in alex.itertuples():
        hog = detect_faces(images[row.Index], DetectConfig(detector="hog"))
        both = detect_faces(images[row.Index], DetectConfig(detector="hog+haar"))
        assert len(both) >= len(hog)  # the cascades only add faces
        if not hog and both:
            gained += 1
            assert both[0].kind == looks[row.pose] and both[0].eyes is None and both[0].source == "haar-profile"
    assert gained >= 4, gained  # measured: 8 of alex's 15 turned photos are found by the cascades alone


def test_a_profile_box_is_cropped_from_its_box_mirrored_for_a_face_looking_right():
    framing = BoxFraming(side=1.5, across=0.1, down=-0.1)
    left = DetectedFace(box=(10, 20, 50, 60), eyes=None, nose=None, score=9, kind="profile-left", source="haar-profile")
    right = DetectedFace(box=(10, 20, 50, 60), eyes=None, nose=None, score=9, kind="profile-right", source="haar-profile")
    a, b = box_transform(left, framing=framing), box_transform(right, framing=framing)
    centre = lambda t: t @ np.array([0.5, 0.5, 1.0])  # noqa: E731
    assert a[0, 0] == pytest.approx(60) and a[1, 1] == pytest.approx(60)  # 1.5 box widths, upright
    assert centre(a) == pytest.approx([34, 36]) and centre(b) == pytest.approx([26, 36])
    crop = align_face(np.full((80, 80), 200, np.uint8), left)
    assert crop.shape == (32, 32)


def test_boxes_found_by_two_detectors_are_one_face_the_earlier_detectors():
    hog = [(10.0, 10.0, 50.0, 50.0, 0.5, "frontal")]
    haar = [(12.0, 11.0, 52.0, 49.0, 20.0, "frontal"), (100.0, 10.0, 140.0, 50.0, 12.0, "profile-left"),
            (102.0, 12.0, 141.0, 52.0, 30.0, "profile-left")]
    kept = merge_boxes([("hog", hog), ("haar-profile", haar)], overlap=0.5)
    assert [(source, box[4]) for source, box in kept] == [("hog", 0.5), ("haar-profile", 30.0)]


UNCHECKED_FALSE_FACES = pytest.mark.xfail(strict=True, reason="measured: BlazeFace without the face check reports "
                                          "a face on the cell and on hubble_deep_field (docs/data.md)")


@pytest.mark.parametrize("detector", [pytest.param(d, marks=UNCHECKED_FALSE_FACES) if d == "blaze-unchecked" else d
                                      for d in DETECTORS if "cnn" not in d])
def test_face_free_pictures_get_no_face(detector):
    from photo_scenes import face_free_images

    config = DetectConfig(detector=detector, min_face=48)
    found = {name: len(detect_faces(image, config)) for name, image in face_free_images(0)}
    assert not any(found.values()), {name: n for name, n in found.items() if n}


@pytest.mark.parametrize("detector, measured", [("blaze-unchecked", {"cell", "hubble_deep_field"})])
def test_blazeface_false_faces_stay_where_they_were_measured(detector, measured):
    from photo_scenes import face_free_images

    config = DetectConfig(detector=detector, min_face=48)
    found = {name: len(detect_faces(image, config)) for name, image in face_free_images(0)}
    assert {name for name, n in found.items() if n} <= measured, found


def test_an_unknown_detector_is_refused_naming_the_known_ones():
    with pytest.raises(UserError, match=r"unknown face detector 'mtcnn' \(valid: hog, haar, cnn"):
        DetectConfig(detector="mtcnn")


def test_the_detection_benchmark_counts_each_set_per_pose_for_each_detector(cmu, tmp_path):
    import detect_faces

    images, labels = cmu
    rows = labels.index[labels["identity"] == "alex"][:8]
    data = tmp_path / "cmu"
    data.mkdir()
    np.save(data / "images.npy", images[rows])
    labels.loc[rows].to_csv(data / "labels.csv", index=False)
    kdef = tmp_path / "kdef"  # KDEF's layout: images.npy and labels.csv with identity and pose
    kdef.mkdir()
    np.save(kdef / "images.npy", images[rows])
    labels.loc[rows].to_csv(kdef / "labels.csv", index=False)
    record = detect_faces.run(["hog", "hog+haar"], data, kdef, 1, DetectConfig(), 48, 0)
    table = pd.DataFrame(record["rows"])
    assert set(table["set"]) == {"cmu", "face-free", "kdef scenes"} and set(table["detector"]) == {"hog", "hog+haar"}
    whole = table[(table["set"] == "cmu") & (table["factor"] == "all")].set_index("detector")
    assert (whole["total"] == 8).all() and whole.loc["hog+haar", "found"] >= whole.loc["hog", "found"]
    per_pose = table[(table["set"] == "cmu") & (table["factor"] == "pose")]
    assert per_pose.groupby("detector")["total"].sum().tolist() == [8, 8]
    assert set(record["speed"]) == {"hog", "hog+haar"} and "| hog+haar |" in detect_faces.markdown(record)


def test_generate_takes_the_detector_a_turned_face_needs(cmu, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from rbg.cli import cli

    images, labels = cmu
    row = int(labels.index[(labels["identity"] == "alex") & (labels["pose"] == "left")][0])  # HOG finds no face here
    photo = tmp_path / "left.png"
    Image.fromarray(images[row]).save(photo)
    run = lambda *extra: CliRunner().invoke(cli, ["generate", "--model", "synthpie-pose", str(photo), "--pose", "+15",  # noqa: E731
                                                  "--out", str(tmp_path / "out.png"), *extra])
    refused = run("--detector", "hog")
    assert refused.exit_code == 2 and "no face found (dlib's frontal detector" in refused.output
    assert not (tmp_path / "out.png").exists()
    found = run()  # the default, blaze
    assert found.exit_code == 0, found.output
    assert Image.open(tmp_path / "out.png").size == (32, 32)
