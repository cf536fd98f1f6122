"""Int8 all-values queries: the traced network computes what every_value does, and int8 stays close to it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import save_untrained
from test_training import tiny_faceset

from facedata.errors import UserError
from facedata.faceset import FaceSet
from generator.inference import Generator
from generator.int8 import AllValuesNetwork, calibration_faces


@pytest.fixture(scope="module")
def skip_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    faces = FaceSet.open(tiny_faceset(identities=3, test_identities=2).write(folder / "faces"))
    return save_untrained(folder / "model", arch="skip"), faces


def test_the_all_values_network_computes_what_every_value_does_in_float32(skip_model):
    path, faces = skip_model
    generator = Generator.load(path, "cpu")
    model = generator.model.float().to(memory_format=torch.contiguous_format)
    raw = torch.from_numpy(np.array(faces.images[:3])).unsqueeze(1).float()
    sources = generator.normalization.apply(raw, generator.normalization.stats(raw))
    with torch.no_grad():
        middle, coarse = AllValuesNetwork(model).eval()(sources)
        codes = torch.arange(len(generator.vocabulary))
        expected_coarse = model.stage1.every_value(sources, codes)
        expected_middle = model.stage2.middle_maps(sources.repeat_interleave(len(codes), 0), expected_coarse)
    np.testing.assert_allclose(coarse.numpy(), expected_coarse.numpy(), atol=1e-4)
    np.testing.assert_allclose(middle.numpy(), expected_middle.numpy(), atol=1e-4)


def test_int8_every_value_stays_close_to_float32_features_and_pictures(skip_model):
    path, faces = skip_model
    float32, int8 = Generator.load(path, "cpu"), Generator.load(path, "cpu")
    int8.use_int8(calibration_faces(faces.images))
    images = faces.images[:6]
    wanted = list(np.asarray(float32.vocabulary)[[0, 1, 2, 3, 4, 0]])
    expected, expected_pictures = float32.every_value(images, pictures=wanted)
    got, pictures = int8.every_value(images, pictures=wanted)
    assert got.shape == expected.shape and pictures.shape == expected_pictures.shape
    a, b = expected.reshape(-1, expected.shape[-1]), got.reshape(-1, got.shape[-1])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    assert np.abs(pictures - expected_pictures).mean() < 2.0  # gray levels
    assert np.allclose(float32.every_value(images)[0], expected)  # the float32 generator is left as it was


def test_int8_reads_the_third_middle_convolution_where_the_index_does(skip_model):
    path, faces = skip_model
    float32, int8 = Generator.load(path, "cpu"), Generator.load(path, "cpu")
    int8.use_int8(calibration_faces(faces.images), "stage2.mid128")
    images = faces.images[:4]
    expected, expected_pictures = float32.every_value(images, "stage2.mid128", pictures=["0"] * 4)
    got, pictures = int8.every_value(images, "stage2.mid128", pictures=["0"] * 4)
    assert got.shape == expected.shape == (4, len(float32.vocabulary), float32.feature_dim("stage2.mid128"))
    a, b = expected.reshape(-1, expected.shape[-1]), got.reshape(-1, got.shape[-1])
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() > 0.99
    assert np.abs(pictures - expected_pictures).mean() < 2.0
    assert int8.every_value(images)[0].shape[-1] == float32.feature_dim("stage2.mid")  # stage2.mid stays float32


def test_int8_is_refused_where_it_does_not_apply(skip_model, tmp_path):
    path, faces = skip_model
    with pytest.raises(UserError, match="--arch skip"):
        Generator.load(save_untrained(tmp_path / "paper"), "cpu").use_int8(faces.images[:4])
    with pytest.raises(UserError, match="int8 queries read stage2.mid or stage2.mid128, not 'stage2.pixels'"):
        Generator.load(path, "cpu").use_int8(faces.images[:4], "stage2.pixels")
    with pytest.raises(UserError, match="at least one face"):
        Generator.load(path, "cpu").use_int8(faces.images[:0])


def test_int8_queries_need_an_all_views_index_and_find_what_float32_queries_find(skip_model, tmp_path):
    from index.faiss_index import GalleryIndex, IndexConfig, build_index
    from retrieval.search import search_by_generation, use_int8_queries

    path, faces = skip_model
    generator = Generator.load(path, "cpu")
    gallery = faces.split("test")
    build_index(generator, gallery, tmp_path / "kept", IndexConfig(batch_size=16), progress=False)
    with pytest.raises(UserError, match="--views all"):
        use_int8_queries(generator, GalleryIndex.load(tmp_path / "kept", generator), [gallery])
    build_index(generator, gallery, tmp_path / "all", IndexConfig(views="all", batch_size=16), progress=False)
    index = GalleryIndex.load(tmp_path / "all", generator)
    images, targets = gallery.images[:4], ["+15", "-45", "0", "+45"]
    expected = search_by_generation(generator, index, images, targets, 3)
    assert use_int8_queries(generator, index, [gallery]) == min(64, len(gallery.images))
    found = search_by_generation(generator, index, images, targets, 3)
    assert (found.rows[:, 0] == expected.rows[:, 0]).mean() >= 0.75
    kept = index.faces["kept_pose"].to_numpy()
    for i, target in enumerate(targets):
        assert (kept[found.rows[i][found.rows[i] >= 0]] == target).all()


def test_calibration_faces_are_a_seeded_sample_in_order():
    images = np.arange(300 * 4, dtype=np.uint8).reshape(300, 2, 2)
    sample = calibration_faces(images, 10, seed=3)
    assert len(sample) == 10 and np.array_equal(sample, calibration_faces(images, 10, seed=3))
    firsts = sample[:, 0, 0].astype(int)
    assert np.all(np.diff(firsts) != 0)
    assert len(calibration_faces(images[:5], 10)) == 5


def test_rbg_query_int8_answers_from_an_all_views_index(skip_model, tmp_path):
    from click.testing import CliRunner

    from index.faiss_index import IndexConfig, build_index
    from rbg.cli import cli

    path, faces = skip_model
    build_index(Generator.load(path, "cpu"), faces.split("test"), tmp_path / "all", IndexConfig(views="all", batch_size=16),
                progress=False)
    result = CliRunner().invoke(cli, ["query", "--index", str(tmp_path / "all"), "--model", str(path),
                                      f"{faces.root}:0", "--pose", "+15", "-k", "3", "--int8"])
    assert result.exit_code == 0, result.output
    assert "int8 queries: calibrated on" in result.output and "top 3 of" in result.output
