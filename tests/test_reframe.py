"""The reframing regressor (retrieval.reframe): errors read between crop transforms, undone exactly, and learnt."""

import numpy as np
import pytest

from retrieval.reframe import ReframeConfig, Reframer


def square(left, top, side, aspect=1.0):
    return np.array([[side, 0.0, left], [0.0, side * aspect, top]])


@pytest.mark.parametrize("aspect", [1.0, 60 / 64])
def test_an_error_read_between_two_crops_is_undone_by_corrected(aspect):
    truth = square(100, 50, 64, aspect)
    off = square(100 + 8, 50 - 4, 64 * 1.2, aspect)  # moved, then grown about its own corner
    error = Reframer.error_between(off, truth)
    np.testing.assert_allclose(Reframer.corrected(off, error), truth, atol=1e-9)
    np.testing.assert_allclose(error[2], np.log(1.2))
    np.testing.assert_allclose(Reframer.error_between(truth, truth), 0, atol=1e-12)


def test_a_centre_moved_right_by_a_quarter_side_reads_as_offset_a_quarter():
    error = Reframer.error_between(square(116, 50, 64), square(100, 50, 64))
    np.testing.assert_allclose(error, [0.25, 0.0, 0.0], atol=1e-12)


def test_the_regressor_learns_where_a_bright_square_sits_in_its_crops():
    """Crops of a 16-px square on a dark field, taken at known errors: a few hundred steps read them."""
    rng = np.random.default_rng(0)
    config = ReframeConfig(members=1, steps=300, offset_sd=0.1, log_scale_sd=0.1)
    offsets, log_scales = config.draw(rng, 256)
    crops = np.zeros((256, 16, 16), np.uint8)
    for crop, (dx, dy), ls in zip(crops, offsets, log_scales):
        side = 8 / np.exp(ls)  # the face is half the true crop: it looks smaller in a larger crop
        cx, cy = 8 - dx * 16 / np.exp(ls), 8 - dy * 16 / np.exp(ls)
        ys, xs = np.mgrid[0:16, 0:16] + 0.5
        crop[(abs(xs - cx) < side / 2) & (abs(ys - cy) < side / 2)] = 220
    reframer = Reframer.fit(crops[:200], offsets[:200], log_scales[:200], config, progress=False)
    read = reframer.errors(crops[200:])
    truth = np.column_stack([offsets[200:], log_scales[200:]])
    assert np.abs(read - truth).mean() < 0.5 * np.abs(truth).mean()
