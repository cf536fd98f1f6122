"""BlazeFace in PyTorch: the shipped weights compute what MediaPipe's TFLite model computes, its boxes
merge as MediaPipe merges them, its windows cover a photo, and it finds turned faces in real photos.

Real photos: cmu_faces originals (64×60), read in place from ../shared beside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facedata.blazeface import INPUT, WEIGHTS, Window, anchors, detect, load_model, weighted_nms, windows
from facedata.detect import DetectConfig, blaze_kind, detect_faces

REFERENCE = Path(__file__).resolve().parent / "blazeface_reference.json"  # from the TFLite interpreter


def test_the_shipped_weights_compute_what_mediapipes_tflite_model_computes():
    reference = json.loads(REFERENCE.read_text())
    x = np.random.default_rng(0).uniform(-1, 1, (1, INPUT, INPUT, 3)).astype(np.float32)
    with torch.inference_mode():
        logits, regressors = load_model()(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    top = reference["anchors"]
    assert np.argsort(-logits[0].numpy())[: len(top)].tolist() == top
    assert logits[0, top].numpy() == pytest.approx(np.array(reference["logits"]), abs=1e-3)
    assert regressors[0, top].numpy() == pytest.approx(np.array(reference["regressors"]), abs=1e-2)
    assert float(logits.mean()) == pytest.approx(reference["logit_mean"], abs=1e-3)
    assert WEIGHTS.stat().st_size < 300_000  # float16 on disk: 0.2 MB ships in the package


def test_anchors_are_mediapipes_896_and_mirror_onto_each_other():
    centres = anchors()
    assert centres.shape == (896, 2) and centres.min() > 0 and centres.max() < 1
    assert np.allclose(centres[:2], [[1 / 32, 1 / 32]] * 2)  # the 16×16 map's first cell, its 2 anchors
    assert np.allclose(centres[512:518], [[1 / 16, 1 / 16]] * 6)  # the 8×8 map's first cell, its 6 anchors
    mirrored = np.sort(np.round(1 - centres[:, 0], 6) * 10 + centres[:, 1])
    assert np.allclose(mirrored, np.sort(np.round(centres[:, 0], 6) * 10 + centres[:, 1]))


def test_overlapping_boxes_are_one_face_at_their_score_weighted_mean_and_far_ones_stay_apart():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 3.0
    faces = weighted_nms(boxes, points, np.array([0.9, 0.6, 0.7], np.float32))
    assert len(faces) == 2 and faces[0].score == pytest.approx(0.9) and faces[0].support == 2
    assert faces[0].box == pytest.approx((0.4, 0.4, 10.4, 10.4))  # (0.9·0 + 0.6·1) / 1.5
    assert faces[0].keypoints[0] == pytest.approx([1.2, 1.2])
    assert faces[1].box == pytest.approx((50, 50, 60, 60)) and faces[1].support == 1


def test_windows_show_the_whole_photo_first_then_tile_it_down_to_the_smallest_face():
    frames = windows((480, 640), smallest_face=48)
    assert frames[0] == Window(0.0, -80.0, 640.0)  # the whole photo, letterboxed into a square
    sides = sorted({f.side for f in frames[1:]}, reverse=True)
    assert sides == [480.0, 240.0]  # 48 px at 35 % of a window: down to 137 px
    for side in sides:
        tiles = [f for f in frames if f.side == side]
        assert min(f.left for f in tiles) == 0 and max(f.left + f.side for f in tiles) == pytest.approx(640)
        assert min(f.top for f in tiles) == 0 and max(f.top + f.side for f in tiles) == pytest.approx(480)
    assert windows((60, 64), smallest_face=1e6) == [Window(0.0, -2.0, 64.0)]
    # at most 3 sizes: a 16-px face in a 512-px photo is not searched in 46-px windows (each a chance of a false face)
    assert sorted({f.side for f in windows((512, 512), smallest_face=16)}, reverse=True) == [512.0, 256.0, 128.0]


def test_the_nose_tip_says_which_way_a_face_looks():
    points = np.array([[40, 40], [60, 40], [50, 55], [50, 70], [30, 45], [70, 45]], np.float32)
    assert blaze_kind(points, 50) == "frontal"
    points[2, 0] = 35  # the nose tip far to the photo's left of the eyes
    assert blaze_kind(points, 50) == "profile-left"
    points[2, 0] = 65
    assert blaze_kind(points, 50) == "profile-right"


def test_noise_has_no_face():
    rng = np.random.default_rng(0)
    assert detect(rng.integers(0, 256, (480, 640), dtype=np.uint8), smallest_face=48, threshold=0.63) == []
    assert detect_faces(np.full((120, 160), 128, np.uint8), DetectConfig(detector="blaze")) == []


def test_blazeface_finds_turned_faces_in_real_photos_with_no_other_model(cmu):
    images, labels = cmu
    alex = labels[labels["identity"] == "alex"]
    found = {pose: 0 for pose in ("forward", "left", "right", "up")}
    for row in alex.itertuples():
        faces = detect_faces(images[row.Index], DetectConfig(detector="blaze"))
        if faces:
            found[row.pose] += 1
            face = faces[0]
            assert face.source == "blaze" and face.eyes is None  # cropped from its box, no dlib landmarks
            h, w = images[row.Index].shape
            assert 0.15 * w < face.width < w and -5 < face.box[0] and face.box[2] < w + 5
    totals = alex["pose"].value_counts()
    # measured: all 32 of alex's photos, 8 in each pose (threshold 0.63)
    assert all(found[pose] >= 0.7 * totals[pose] for pose in found), (found, totals.to_dict())


def test_a_gray_image_is_read_as_its_three_equal_copies():
    x = torch.rand(2, 1, INPUT, INPUT, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        gray_logits, gray_boxes = load_model()(x)
        rgb_logits, rgb_boxes = load_model()(x.expand(-1, 3, -1, -1))
    assert torch.allclose(gray_logits, rgb_logits, atol=1e-3) and torch.allclose(gray_boxes, rgb_boxes, atol=1e-2)


def test_each_anchor_has_one_mirror_anchor_at_its_mirrored_place():
    from facedata.blazeface import mirror_order

    order, centres = mirror_order(), anchors()
    assert sorted(order.tolist()) == list(range(896)) and (order[order] == np.arange(896)).all()
    assert np.allclose(centres[order, 0], 1 - centres[:, 0]) and np.allclose(centres[order, 1], centres[:, 1])


def test_a_whole_image_has_one_mirror_anchor_per_anchor_at_its_mirrored_place():
    from facedata.blazeface import image_anchors

    centres, order = image_anchors(64, 96)
    assert len(centres) == 8 * 12 * 2 + 4 * 6 * 6 and sorted(order.tolist()) == list(range(len(centres)))
    assert (order[order] == np.arange(len(order))).all()
    assert np.allclose(centres[order, 0], 96 - centres[:, 0]) and np.allclose(centres[order, 1], centres[:, 1])
    window, _ = image_anchors(INPUT, INPUT)  # a window read whole is the network's own anchor grid
    assert np.allclose(window / INPUT, anchors())


@pytest.mark.parametrize("search", ["tiles", "image"])
def test_reading_the_photo_whole_finds_the_face_the_tiles_find_and_no_face_in_noise(search):
    import skimage.data
    from PIL import Image

    from facedata.blazeface import _iou

    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).convert("L"))
    face = detect(photo, smallest_face=16, threshold=0.5, search=search)[0]
    tiled = detect(photo, smallest_face=16, threshold=0.5, search="tiles")[0]
    assert _iou(np.array(face.box), np.array([tiled.box]))[0] > 0.8 and abs(face.score - tiled.score) < 0.1
    rng = np.random.default_rng(0)
    assert detect(rng.integers(0, 256, (480, 640), dtype=np.uint8), smallest_face=48, threshold=0.63, search=search) == []
    with pytest.raises(ValueError, match="unknown BlazeFace search 'grid'"):
        detect(photo, search="grid")


@pytest.mark.parametrize("search", ["tiles", "image"])
@pytest.mark.parametrize("mirror", ["mean", "max"])
def test_reading_the_mirror_images_too_finds_a_flipped_photos_face_mirrored_at_the_same_score(mirror, search):
    import skimage.data
    from PIL import Image

    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).convert("L"))
    face = detect(photo, smallest_face=48, threshold=0.5, mirror=mirror, search=search)[0]
    flipped = detect(np.ascontiguousarray(photo[:, ::-1]), smallest_face=48, threshold=0.5, mirror=mirror, search=search)[0]
    width = photo.shape[1]
    assert face.score == pytest.approx(flipped.score, abs=1e-5)
    assert face.box == pytest.approx((width - flipped.box[2], flipped.box[1], width - flipped.box[0], flipped.box[3]), abs=1e-3)
    assert face.keypoints[0, 0] == pytest.approx(width - flipped.keypoints[1, 0], abs=1e-3)  # the image-left eye
    plain = detect(photo, smallest_face=48, threshold=0.5, search=search)[0]
    assert abs(plain.box[0] - face.box[0]) < 5 and abs(plain.score - face.score) < 0.1
