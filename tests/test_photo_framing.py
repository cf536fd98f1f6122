"""A photo framing (retrieval.photo_framing): fitted on a dataset's train people, saved and loaded whole, and used by
rbg query: a photo's face becomes seven crops, and each gallery face ranks by its nearest crop."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facedata.errors import UserError
from facedata.faceset import FaceSet

CMU = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_faces"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """cmu_faces as the dataset (32-px crops of the frames) and its 64×60 frames as photos; a framing fitted
    with small budgets on its first 4 people."""
    if not (CMU / "images.npy").is_file():
        pytest.skip(f"{CMU} is absent")
    from retrieval.photo_framing import FramingConfig, PhotoFraming

    root = tmp_path_factory.mktemp("framing")
    images, labels = np.load(CMU / "images.npy"), pd.read_csv(CMU / "labels.csv").iloc[:624]
    people = sorted(labels["identity"].unique())[:6]
    rows = np.flatnonzero(labels["identity"].isin(people).to_numpy())
    faces = labels.iloc[rows][["identity", "pose"]].reset_index(drop=True)
    faces["split"] = np.where(faces["identity"].isin(people[:4]), "train", "test")
    small = np.stack([np.asarray(Image.fromarray(i).resize((32, 32), Image.Resampling.BICUBIC)) for i in images[rows]])
    crops = FaceSet.from_arrays(small, faces, "cmu-small").write(root / "crops")
    photos = FaceSet.from_arrays(images[rows], faces, "cmu-frames").write(root / "photos")
    config = FramingConfig(fit_faces=20, least=3, reframe_copies=1, classifier_steps=30, reframe_steps=30)
    framing = PhotoFraming.fit(FaceSet.open(crops), photos, "pose", config, progress=False)
    framing.save(root / "framing")
    return root, framing, FaceSet.open(photos)


def test_a_framing_crops_a_photo_seven_ways_and_loads_back_the_same(fitted):
    from facedata.scenes import scenes
    from retrieval.photo_framing import PhotoFraming

    root, framing, photos = fitted
    assert framing.record["fit_faces"] == 20 and any(key.startswith("blaze/") for key in framing.framings)
    forward = np.flatnonzero((photos.faces["pose"] == "forward").to_numpy())[-1:]
    scene = scenes(photos.images[forward], seed=3, sides=(160, 200))[0]
    crops = framing.crops(scene.image, "scene")
    assert crops.shape == (7, 32, 32) and crops.dtype == np.uint8
    assert not all(np.array_equal(crops[0], c) for c in crops[1:])  # the moved crops differ from the first
    again = PhotoFraming.load(root / "framing")
    assert again.framings == framing.framings and again.size == (32, 32)
    assert np.array_equal(again.crops(scene.image, "scene"), crops)


def test_a_folder_that_is_not_a_framing_is_a_user_error(tmp_path):
    from retrieval.photo_framing import PhotoFraming

    with pytest.raises(UserError, match="not a photo framing"):
        PhotoFraming.load(tmp_path)
    (tmp_path / "framing.json").write_text("{broken")
    with pytest.raises(UserError, match="not a readable photo framing"):
        PhotoFraming.load(tmp_path)


def test_each_gallery_face_ranks_by_its_nearest_crop(tmp_path):
    """search_nearest_crop over a query's crops equals taking, per gallery face, the least distance of any crop."""
    from fakes import FakeGenerator, tiny_gallery

    from index.faiss_factory import IndexConfig
    from index.faiss_index import build_index
    from retrieval.search import search_by_generation, search_nearest_crop

    gallery = tiny_gallery(identities=4, lights=1)
    index = build_index(FakeGenerator(), gallery, tmp_path / "index", IndexConfig(), progress=False)
    crops = [gallery.images[[0, 5, 9]], gallery.images[[3]]]
    k = 6
    found = search_nearest_crop(FakeGenerator(), index, crops, ["0", "+45"], k)
    for i, (query, target) in enumerate(zip(crops, ["0", "+45"])):
        each = search_by_generation(FakeGenerator(), index, query, target, len(index))
        best = {}
        for distances, rows in zip(each.distances, each.rows):
            for d, r in zip(distances, rows):
                best[int(r)] = min(best.get(int(r), np.inf), float(d))
        expected = sorted(best.items(), key=lambda item: (item[1], item[0]))[:k]
        assert found.rows[i].tolist() == [r for r, _ in expected]
        np.testing.assert_allclose(found.distances[i], [d for _, d in expected], rtol=1e-6)
    assert found.generated.shape[0] == 2


def test_rbg_query_and_framing_fit_from_the_command_line(fitted, tmp_path):
    """`rbg query --framing`: a photo's face found, cropped seven ways and searched; a framing of another size than
    the model's is refused in one line; `rbg framing fit` refuses an unknown detector before any work."""
    from click.testing import CliRunner
    from fakes import save_untrained
    from test_training import tiny_faceset

    from facedata.scenes import scenes
    from rbg.cli import cli

    root, _, photos = fitted
    forward = np.flatnonzero((photos.faces["pose"] == "forward").to_numpy())[-1:]
    Image.fromarray(scenes(photos.images[forward], seed=3, sides=(160, 200))[0].image).save(tmp_path / "photo.png")
    run = lambda *args: CliRunner().invoke(cli, [str(a) for a in args])  # noqa: E731
    for size in (32, 16):
        model = save_untrained(tmp_path / f"model{size}", size=(size, size))
        tiny_faceset(identities=4, size=size, test_identities=2).write(tmp_path / f"faces{size}")
        built = run("index", "build", "--paper", "--model", model, "--data", tmp_path / f"faces{size}",
                    "--out", tmp_path / f"index{size}", "--device", "cpu", "--quiet")
        assert built.exit_code == 0, built.output
    found = run("query", "--index", tmp_path / "index32", tmp_path / "photo.png", "--pose", "+30", "-k", 3,
                "--framing", root / "framing", "--out", tmp_path / "grid.png")
    assert found.exit_code == 0, found.output
    assert "top 3 of 28 gallery faces" in found.output and (tmp_path / "grid.png").is_file()
    refused = run("query", "--index", tmp_path / "index16", tmp_path / "photo.png", "--pose", "+30",
                  "--framing", root / "framing")
    assert refused.exit_code == 2 and "the photo framing crops 32×32 faces, the model reads 16×16" in refused.output
    assert "Traceback" not in refused.output
    unknown = run("framing", "fit", "--data", root / "crops", "--photos", root / "photos", "--out", tmp_path / "f",
                  "--detector", "mtcnn")
    assert unknown.exit_code == 2 and "unknown face detector 'mtcnn'" in unknown.output
    assert not (tmp_path / "f").exists()
