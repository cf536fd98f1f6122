"""MTCNN's ONet: the shipped weights, the square it reads, and what it says of real faces and of noise.

Real photos: cmu_faces originals (64×60), read in place from ../shared beside the repository.
"""

from __future__ import annotations

import numpy as np
import pytest

from facedata.detect import DetectConfig, blaze_faces, two_way_faces
from facedata.errors import UserError
from facedata.onet import WEIGHTS, ONet, onet_probability, square_windows


def test_a_box_is_read_as_the_square_of_its_longer_side_on_its_centre():
    (window,) = square_windows(np.array([[10.0, 20.0, 30.0, 60.0]]))
    assert window.side == pytest.approx(40)
    assert (window.left, window.top) == pytest.approx((0.0, 20.0))


def test_the_shipped_weights_load_from_safetensors_with_every_tensor_of_the_network():
    from safetensors.torch import load_file

    state = load_file(str(WEIGHTS))
    assert set(state) == set(ONet().state_dict())
    ONet().load_state_dict(state)


def test_onet_finds_the_faces_blazeface_boxes_in_frontal_photos_and_not_noise(cmu):
    images, labels = cmu
    frontal = np.flatnonzero((labels["pose"] == "forward") & (labels["accessory"] == "none"))[:8]
    likely = []
    for i in frontal:
        faces = blaze_faces(images[i], 16, 0.63)
        likely.append(onet_probability(images[i], np.array([faces[0].box]))[0])
    assert np.median(likely) > 0.9
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (8, 64, 64)).astype(np.uint8)
    assert max(onet_probability(n, np.array([[16.0, 16, 48, 48]]))[0] for n in noise) < 0.5
    assert onet_probability(noise[0], np.zeros((0, 4))).shape == (0,)


def test_the_second_way_vetted_by_onet_keeps_the_first_way_s_faces(cmu):
    images, _ = cmu
    for image in images[:4]:
        alone = two_way_faces(image, DetectConfig())
        both = two_way_faces(image, DetectConfig(blaze_low_threshold=0.3, check_high_threshold=0.0, second_check="onet"))
        assert {tuple(f.box) for f in alone} <= {tuple(f.box) for f in both}


def test_an_unknown_second_check_is_refused_in_one_line():
    with pytest.raises(UserError, match="unknown second check 'mtcnn'.*face-check, onet"):
        DetectConfig(second_check="mtcnn")


def test_the_check_blended_with_onet_is_the_weighted_mean_of_the_two_judges(cmu):
    from facedata.detect import check_probability
    from facedata.face_check import face_probability

    images, _ = cmu
    image = images[0]
    boxes = np.array([f.box for f in blaze_faces(image, 16, 0.3)] + [[0.0, 0.0, 20.0, 20.0]])
    check, onet = face_probability(image, boxes), onet_probability(image, boxes, version="tuned")
    assert np.allclose(check_probability(image, boxes), check)
    assert np.allclose(check_probability(image, boxes, 1.0), onet)
    assert np.allclose(check_probability(image, boxes, 1.0, "mtcnn"), onet_probability(image, boxes))
    assert np.allclose(check_probability(image, boxes, 0.25), 0.75 * check + 0.25 * onet)
    assert check_probability(image, np.zeros((0, 4)), 0.5).shape == (0,)


def test_two_way_faces_blends_the_check_with_onet_where_configured(cmu, monkeypatch):
    from facedata import detect

    images, _ = cmu
    seen = []
    real = detect.check_probability
    monkeypatch.setattr(detect, "check_probability", lambda image, boxes, share=0.0, onet="tuned": seen.append((share, onet)) or real(image, boxes, share, onet))
    two_way_faces(images[0], DetectConfig(check_onet_share=0.5, second_check="face-check"))
    assert seen and set(seen) == {(0.5, "tuned")}
    seen.clear()
    two_way_faces(images[0], DetectConfig(check_onet_share=0.5, onet="mtcnn"))
    assert seen and set(seen) == {(0.5, "mtcnn")}


def test_an_onet_share_outside_0_to_1_is_refused_in_one_line():
    with pytest.raises(UserError, match="check_onet_share 1.5 is not a share"):
        DetectConfig(check_onet_share=1.5)
