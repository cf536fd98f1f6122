"""Adding a gallery to a built index (index.append): same results as one build, training kept, refusals,
atomic rewrite, and every result's picture taken from the gallery its face came from."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import faiss
import numpy as np
import pandas as pd
import pytest
from fakes import POSES, SIZE, FakeGenerator, tiny_gallery

from facedata.errors import UserError
from facedata.faceset import FaceSet
from index.append import add_to_index
from index.faiss_factory import IndexConfig
from index.faiss_index import GalleryIndex, build_index, gallery_codes
from index.features import l2_normalize
from retrieval.query import load_query_image, open_galleries, query_images, retrieved_images
from rbg.serve.engine import QueryEngine


def queries_of(gallery: FaceSet) -> np.ndarray:
    """Each face of `gallery` generated in the pose two steps on: (n, d) query features."""
    targets = [POSES[(POSES.index(p) + 2) % len(POSES)] for p in gallery.faces["pose"]]
    return FakeGenerator().features(gallery.images, targets)


def folder_digest(folder) -> dict[str, str]:
    """Every file of a folder by name, as sha256: equal digests mean an untouched folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_adding_a_gallery_to_a_flat_index_gives_the_results_of_one_build_over_both(tmp_path):
    both = tiny_gallery(identities=4)  # 56 faces
    first, second = both.take(range(28)), both.take(range(28, 56))
    build_index(FakeGenerator(), first, tmp_path / "grown", batch_size=8, progress=False)
    grown = add_to_index(FakeGenerator(), tmp_path / "grown", second, progress=False)
    whole = build_index(FakeGenerator(), both, tmp_path / "whole", batch_size=8, progress=False)
    loaded = GalleryIndex.load(tmp_path / "grown", generator=FakeGenerator())
    assert len(loaded) == len(grown) == len(both) and loaded.info.count == 56
    probe = queries_of(both)
    for distances, rows in (loaded.search(probe, 10), grown.search(probe, 10)):
        expected_distances, expected_rows = whole.search(probe, 10)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(distances, expected_distances)
    assert gallery_codes(loaded.faces).tolist() == [0] * 28 + [1] * 28
    assert loaded.faces["image_row"].tolist() == whole.faces["image_row"].tolist()
    assert loaded.faces["kept_pose"].tolist() == whole.faces["kept_pose"].tolist()


def test_index_json_records_each_addition_with_its_gallery_count_and_provenance(tmp_path):
    tiny_gallery(identities=2).write(tmp_path / "a")
    tiny_gallery(identities=3).take(range(28, 42)).write(tmp_path / "b")
    build_index(FakeGenerator(), FaceSet.open(tmp_path / "a"), tmp_path / "idx", progress=False)
    add_to_index(FakeGenerator(), tmp_path / "idx", FaceSet.open(tmp_path / "b"), progress=False)
    record = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert record["count"] == 28 + 14 and record["gallery"]["path"] == "../a"
    [addition] = record["additions"]
    assert addition["count"] == 14 and addition["gallery"]["path"] == "../b" and addition["kept_accuracy"] == 1.0
    assert len(addition["gallery"]["fingerprint"]) == 64 and "command" in addition["provenance"]
    assert [g["path"] for g in GalleryIndex.load(tmp_path / "idx").info.galleries] == ["../a", "../b"]


def trained_part(index: faiss.Index) -> np.ndarray:
    """What training fitted: the leading PCA's matrix, or the IVF centroids."""
    if isinstance(index, faiss.IndexPreTransform) and "PCA" in type(faiss.downcast_VectorTransform(index.chain.at(0))).__name__:
        return faiss.vector_to_array(faiss.downcast_VectorTransform(index.chain.at(0)).PCAMat)
    ivf = faiss.extract_index_ivf(index)
    return ivf.quantizer.reconstruct_n(0, ivf.nlist)


@pytest.mark.parametrize("factory", ["PCA16,Flat", "IVF2,Flat", "IVF2,PQ8x4"])
def test_a_trained_factory_keeps_its_training_and_only_adds_the_new_vectors(tmp_path, factory):
    both = tiny_gallery(identities=8, lights=2)  # 112 faces: the first 84 train (≥ 39 × 2 IVF lists), 28 are added
    first, second = both.take(range(84)), both.take(range(84, 112))
    build_index(FakeGenerator(), first, tmp_path / "idx", factory=factory, batch_size=16, progress=False)
    built = faiss.read_index(str(tmp_path / "idx" / "index.faiss"))
    grown = add_to_index(FakeGenerator(), tmp_path / "idx", second, progress=False)
    assert grown.info.train_count == 84 and grown.info.count == 112
    saved = faiss.read_index(str(tmp_path / "idx" / "index.faiss"))
    np.testing.assert_array_equal(trained_part(saved), trained_part(built))
    vectors = l2_normalize(FakeGenerator().features(second.images, list(second.faces["pose"])))
    for start in range(0, len(vectors), 16):  # the build's chunks of 16: a PCA's products then round alike
        built.add(vectors[start : start + 16])  # no retraining
    np.testing.assert_array_equal(faiss.serialize_index(saved), faiss.serialize_index(built))


# -- refusals ----------------------------------------------------------------------------------------
@pytest.fixture
def built(tmp_path):
    """An index (Flat) of a 2-identity gallery folder, and a second folder of 2 other identities."""
    tiny_gallery(identities=2).write(tmp_path / "a")
    tiny_gallery(identities=4).take(range(28, 56)).write(tmp_path / "b")
    build_index(FakeGenerator(), FaceSet.open(tmp_path / "a"), tmp_path / "idx", batch_size=8, progress=False)
    return tmp_path


def odd_gallery(**faces_changes) -> FaceSet:
    """A 1-identity marker gallery with some faces columns replaced."""
    gallery = tiny_gallery(identities=1, lights=1)
    faces = gallery.faces.assign(**faces_changes)
    factors = {"pose": tuple(dict.fromkeys(faces["pose"]))}
    return FaceSet.from_arrays(gallery.images, faces, name="odd", factors=factors)


@pytest.mark.parametrize("generator, gallery, layer, message", [
    (FakeGenerator(checkpoint_hash="b" * 64), None, None, "not this model"),
    (FakeGenerator(), None, "pixels", "layer 'mid', not 'pixels'"),
    (FakeGenerator(), FaceSet.from_arrays(np.zeros((2, 8, 8), np.uint8), pd.DataFrame({"identity": ["x", "y"]}), name="small"),
     None, "images are 8×8, the index's model expects 6×16"),
    (FakeGenerator(), odd_gallery(pose=["-90", "-60", "-30", "0", "+30", "+60", "+90"]), None, "values ['+60', '+90', '-60', '-90'] are not in"),
    (FakeGenerator(), odd_gallery(gallery=["x"] * 7), None, "column 'gallery'"),
], ids=["another model", "another layer", "another image size", "another vocabulary", "a gallery column"])
def test_an_addition_that_does_not_fit_the_index_is_refused_and_changes_nothing(built, generator, gallery, layer, message):
    before = folder_digest(built / "idx")
    with pytest.raises(UserError, match=re.escape(message)):
        add_to_index(generator, built / "idx", gallery or FaceSet.open(built / "b"), layer=layer, progress=False)
    assert folder_digest(built / "idx") == before
    assert sorted(p.name for p in built.iterdir()) == ["a", "b", "idx"]


def test_faces_already_in_the_index_are_refused(built):
    with pytest.raises(UserError, match=r"a is in it already \(gallery 0 'tiny'\)"):
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "a"), progress=False)
    with pytest.raises(UserError, match="2 of the 2 faces of .* are in it already"):  # rows of the build's folder
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "a").take([3, 5]), progress=False)
    add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)
    with pytest.raises(UserError, match=r"b is in it already \(gallery 1 'tiny'\)"):
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)


def test_a_copy_of_an_indexed_gallery_is_refused_by_its_content_wherever_it_lies(built):
    shutil.copytree(built / "a", built / "a-copy")
    before = folder_digest(built / "idx")
    with pytest.raises(UserError, match=r"a-copy is in it already \(gallery 0 'tiny'\): the same images and labels as [^;]*/a;"):
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "a-copy"), progress=False)
    add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)
    FaceSet.open(built / "b").write(built / "b-again", name="renamed")  # the same faces written anew
    with pytest.raises(UserError, match=r"b-again is in it already \(gallery 1 'tiny'\)"):
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b-again"), progress=False)
    assert GalleryIndex.load(built / "idx").info.count == 28 + 28 and folder_digest(built / "idx") != before


def test_an_index_of_format_2_loads_without_its_folder_bound_fingerprint_and_still_opens_its_gallery(built):
    info = built / "idx" / "index.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "format_version": 2, "gallery": {"name": "tiny", "path": "../a", "fingerprint": "0" * 64}}))
    index = GalleryIndex.load(built / "idx")
    assert "fingerprint" not in index.info.gallery and index.info.gallery["path"] == "../a"
    [gallery] = open_galleries(index)  # checked by its identities, as format 2 was
    assert gallery.root == built / "idx" / ".." / "a"
    with pytest.raises(UserError, match="identity values differ"):
        open_galleries(index, built / "b")


def test_an_addition_to_a_missing_index_or_of_an_empty_gallery_is_refused(built):
    with pytest.raises(UserError, match="nowhere: no such index folder"):
        add_to_index(FakeGenerator(), built / "nowhere", FaceSet.open(built / "b"), progress=False)
    with pytest.raises(UserError, match="the gallery is empty: nothing to add"):
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b").take([]), progress=False)
    assert not (built / "nowhere").exists() and not (built / ".nowhere.build.lock").exists()


def test_a_second_writer_is_refused_while_a_build_holds_the_lock(built):
    from facedata.outputs import exclusive_lock

    with exclusive_lock(built / ".idx.build.lock", what="a build"):
        with pytest.raises(UserError, match="another run is writing it now"):
            add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)


# -- atomic rewrite ----------------------------------------------------------------------------------
def test_an_interrupted_addition_leaves_the_old_index_and_resumes_from_its_cached_chunks(built):
    before = folder_digest(built / "idx")
    broken = FakeGenerator(fail_after=3)  # 28 new faces → 4 chunks of 8; chunks 0–1 are cached, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        add_to_index(broken, built / "idx", FaceSet.open(built / "b"), progress=False)
    assert folder_digest(built / "idx") == before and len(GalleryIndex.load(built / "idx")) == 28
    assert sorted(p.name for p in built.iterdir() if p.name.startswith(".")) == [".idx.add"]  # the cache, no lock, no temporary folder
    resumed = FakeGenerator()
    add_to_index(resumed, built / "idx", FaceSet.open(built / "b"), progress=False)
    assert resumed.feature_calls == 2  # chunks 2–3 only
    assert len(GalleryIndex.load(built / "idx")) == 56 and not (built / ".idx.add").exists()


def test_an_addition_interrupted_while_writing_the_index_leaves_the_old_one(built, monkeypatch):
    before = folder_digest(built / "idx")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", interrupted)
    with pytest.raises(KeyboardInterrupt):
        add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)
    assert folder_digest(built / "idx") == before
    assert sorted(p.name for p in built.iterdir() if p.name.startswith(".")) == [".idx.add"]


def test_files_of_the_index_folder_beyond_its_own_three_are_carried_over(built):
    (built / "idx" / "classifier.safetensors").write_bytes(b"fitted at build")
    add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)
    assert (built / "idx" / "classifier.safetensors").read_bytes() == b"fitted at build"


# -- the pictures of found faces -----------------------------------------------------------------------
def test_found_faces_of_the_added_gallery_show_their_own_picture(built):
    add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)
    index = GalleryIndex.load(built / "idx", generator=FakeGenerator())
    second = FaceSet.open(built / "b")
    query = load_query_image(f"{built / 'b'}:3", SIZE)  # id02 at -30, a face of the added gallery
    result = query_images(FakeGenerator(), index, [query], "+45", k=2)
    top = result.table.iloc[0]
    assert (top["gallery"], top["identity"], top["pose"]) == (1, second.faces["identity"][3], "+45")
    pixels = retrieved_images(result, open_galleries(index))
    np.testing.assert_array_equal(pixels[0, 0], second.image(int(top["image_row"])))
    engine = QueryEngine(FakeGenerator(), index, open_galleries(index))
    np.testing.assert_array_equal(engine.gallery_image(int(top["gallery_row"])), pixels[0, 0])
    np.testing.assert_array_equal(engine.gallery_image(0), FaceSet.open(built / "a").image(0))


def test_a_moved_build_gallery_is_given_in_place_of_gallery_0_only(built):
    add_to_index(FakeGenerator(), built / "idx", FaceSet.open(built / "b"), progress=False)
    (built / "a").rename(built / "a-moved")
    index = GalleryIndex.load(built / "idx")
    with pytest.raises(UserError, match="gone; give its new place"):
        open_galleries(index)
    first, second = open_galleries(index, built / "a-moved")
    assert first.root == built / "a-moved" and second.root.resolve() == (built / "b").resolve()
    (built / "b").rename(built / "b-moved")
    with pytest.raises(UserError, match=r"folder of gallery 1 \('tiny', added by rbg index add\) is gone"):
        open_galleries(index, built / "a-moved")


def test_an_index_of_a_cheap_normalization_adds_faces_with_its_own_saved_classifier(tmp_path):
    from index.pose_classifier import PoseClassifier, PoseClassifierConfig

    faces = tiny_gallery(identities=4, lights=1, train_identities=2)
    train, test = faces.split("train"), faces.split("test")
    classifier = PoseClassifier(PoseClassifierConfig(pca_components=8)).fit(train.images, train.faces["pose"])
    generator = FakeGenerator()
    built = build_index(generator, train, tmp_path / "index", IndexConfig(normalize="classifier"), progress=False,
                        classifier=classifier)
    grown = add_to_index(generator, tmp_path / "index", test, progress=False)
    assert grown.config.normalize == "classifier" and grown.pose_classifier.fingerprint == classifier.fingerprint
    again = GalleryIndex.load(tmp_path / "index")
    expected = np.asarray(POSES)[generator.target_codes(list(classifier.predict(test.images)))]
    assert again.faces["kept_pose"].tolist()[len(built.faces):] == list(expected)


@pytest.mark.parametrize("factory", ["PCA16,SQ8", "VIEWPCA4,SQ8"])
def test_a_compact_all_views_index_grows_by_addition_and_searches_among_the_target(tmp_path, factory):
    """`--views all --factory PCA…,SQ8` (or a PCA per view): trained once at the build, the added faces are
    coded by that training, and a search keeps only rows whose kept value is the target, through the selectors."""
    both = tiny_gallery(identities=4)  # 56 faces
    first, second = both.take(range(28)), both.take(range(28, 56))
    config = IndexConfig(views="all", factory=factory)
    build_index(FakeGenerator(), first, tmp_path / "grown", config, batch_size=8, progress=False)
    before = (tmp_path / "grown" / "view_pca.safetensors").read_bytes() if factory.startswith("VIEW") else None
    add_to_index(FakeGenerator(), tmp_path / "grown", second, progress=False)
    loaded = GalleryIndex.load(tmp_path / "grown", generator=FakeGenerator())
    assert loaded.views == "all" and len(loaded) == 56 and loaded.info.factory == factory
    if before is not None:  # the projection fitted at the build codes the added faces too
        assert (tmp_path / "grown" / "view_pca.safetensors").read_bytes() == before
        assert loaded.index.d == 4 * len(POSES)
    from index.features import all_value_features

    vectors = all_value_features(FakeGenerator(), both.images[:6])
    targets = np.asarray([POSES[(POSES.index(p) + 2) % len(POSES)] for p in both.faces["pose"][:6]])
    distances, rows = loaded.search_among(vectors, 4, targets)
    kept = loaded.faces["kept_pose"].to_numpy()
    assert loaded._kept_filter and (rows >= 0).all() and np.all(kept[rows] == targets[:, None])
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_build_gallery_with_no_config_builds_what_index_build_builds_by_default_and_paper_the_paper_s(tmp_path):
    """The library's call and the command agree on the defaults: every view, the classifier's pose."""
    from index.gallery_build import build_gallery

    faces = tiny_gallery(identities=4, lights=1, train_identities=2)
    built = build_gallery(FakeGenerator(), faces, tmp_path / "default", pose_classifier="logreg", progress=False)
    assert (built.index.config.views, built.index.config.normalize) == ("all", "classifier")
    assert built.index.pose_classifier is not None and built.classifier_seconds is not None
    paper = build_gallery(FakeGenerator(), faces, tmp_path / "paper", paper=True, progress=False)
    assert (paper.index.config.views, paper.index.config.normalize) == ("kept", "full")
    assert paper.index.pose_classifier is None and paper.classifier_seconds is None


def doubled(faces: FaceSet, path) -> FaceSet:
    """The same faces at twice the size, written to `path`: a FaceSet "at source resolution"."""
    big = FaceSet.from_arrays(faces.images.repeat(2, axis=1).repeat(2, axis=2), faces.faces.drop(columns="source"),
                              "doubled", extra_factors=[f for f in faces.factors if f != "pose"])
    return FaceSet.open(big.write(path))


def test_a_gallery_whose_pose_is_read_from_pose_images_is_built_and_grown_with_them(tmp_path):
    """--pose-images: the classifier is fitted on the source-resolution faces' train people and reads the gallery's
    pose from them, at the build and at an addition; an addition without them is refused with the size it needs."""
    from index.gallery_build import build_gallery

    faces = FaceSet.open(tiny_gallery(identities=5, lights=1, train_identities=2).write(tmp_path / "faces"))
    big = doubled(faces, tmp_path / "big")
    built = build_gallery(FakeGenerator(), faces, tmp_path / "index", pose_classifier="logreg", progress=False,
                          pose_images=tmp_path / "big")
    classifier = built.index.pose_classifier
    height, width = 2 * SIZE[0], 2 * SIZE[1]
    assert classifier.image_size == (height, width)
    assert built.index.info.pose_classifier["reads"] == str(tmp_path / "big")
    test = faces.split("test")
    expected = classifier.predict(big.take(test.rows).images)
    assert built.index.faces["kept_pose"].tolist() == list(expected)
    extra = faces.split("train")
    with pytest.raises(UserError, match=f"reads {height}×{width} faces .*--pose-images"):
        add_to_index(FakeGenerator(), tmp_path / "index", extra, progress=False)
    grown = add_to_index(FakeGenerator(), tmp_path / "index", extra, progress=False, pose_images=tmp_path / "big")
    assert grown.faces["kept_pose"].tolist()[len(test):] == list(classifier.predict(big.take(extra.rows).images))
    reversed_faces = faces.take(list(range(len(faces)))[::-1]).write(tmp_path / "reversed")
    with pytest.raises(UserError, match="--pose-images .*column 'identity' differs"):
        build_gallery(FakeGenerator(), faces, tmp_path / "other", pose_classifier="logreg", progress=False,
                      pose_images=reversed_faces)
    with pytest.raises(UserError, match="--pose-images goes with --normalize classifier or none"):
        build_gallery(FakeGenerator(), faces, tmp_path / "other", paper=True, progress=False, pose_images=tmp_path / "big")
    assert not (tmp_path / "other").exists()
