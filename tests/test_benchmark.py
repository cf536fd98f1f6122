"""`rbg bench` end to end on a tiny FaceSet: every method scored on the same queries, report files and layout."""

import json

import pytest
from click.testing import CliRunner
from fakes import save_untrained
from test_training import tiny_faceset

from facedata.errors import UserError
from facedata.faceset import FaceSet
from generator.inference import Generator
from retrieval.benchmark import BenchConfig, report_markdown, run_benchmark
from rbg.cli import cli

QUICK = BenchConfig(queries=40, generation_pairs=20, grid_queries=3, batch_size=64)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    faces = FaceSet.open(tiny_faceset(identities=5, test_identities=2).write(root / "faces"))
    model = save_untrained(root / "model")
    record = run_benchmark(Generator.load(model), faces, root / "report", QUICK, cache=root / "cache")
    return root, record


def assert_rows_add_up(record: dict) -> None:
    """Every row scored on all queries, recall@K in [0, 1] growing with K, criterion 2 within criterion 1, and the
    per-change tables (Figure 6's recall@5, source → target recall@1) averaging back to the row's recall."""
    n = record["queries"]
    for row in record["results"]:
        name = f"{row['method']} / {row['features']}"
        for criterion in (1, 2):
            report = row[f"criterion{criterion}"]
            assert report["queries"] == n and report["without_correct"] == 0, (name, criterion, report)
            recall = report["recall"]
            assert set(map(int, recall)) == {1, 5, 20}, (name, recall)
            values = [recall[k] for k in sorted(recall, key=int)]
            assert values == sorted(values) and 0 <= values[0] and values[-1] <= 1, (name, criterion, values)
        c1, c2 = row["criterion1"]["recall"], row["criterion2"]["recall"]
        assert all(c2[k] <= c1[k] for k in c1), (name, c1, c2)  # criterion 2 asks more
        for table, k in ((record["change_groups"], "5"), (record["value_pairs"], "1")):
            cells = table[name].values()
            assert sum(cell["queries"] for cell in cells) == n, name
            assert sum(cell["recall"] * cell["queries"] for cell in cells) / n == pytest.approx(c1[k]), (name, k)


def test_report_holds_every_method_under_both_criteria(bench):
    root, record = bench
    methods = {(r["method"], r["features"]) for r in record["results"]}
    assert methods == {("2-step retrieval", "image"), ("2-step retrieval", "our 2nd network"),
                       ("2-step, true pose", "image"), ("ours", "image"), ("ours", "our 2nd network"),
                       ("ours, pose-aware", "image"), ("ours, pose-aware", "our 2nd network"),
                       ("ours, classifier pose", "our 2nd network"), ("ours, true pose", "our 2nd network")}
    assert_rows_add_up(record)
    assert record["queries"] == 40 and record["data"]["gallery"] == 2 * 7 * 2
    assert record["criterion2_factor"] == "illumination"
    assert all(" → " in label for label in record["value_pairs"]["ours / our 2nd network"])


def test_each_row_finds_what_its_method_can_on_faces_with_a_known_answer(tmp_path):
    """With exact generation (tests/fakes.py) every ours row, the all-poses rows too, finds the person in the target
    pose and light at rank 1; the 2-step rows compare pixels across poses and find the person at about chance (1 in 7)."""
    from fakes import FakeGenerator, tiny_gallery

    faces = tiny_gallery(identities=10, lights=2, train_identities=3)
    config = BenchConfig(queries=60, generation_pairs=0, grid_queries=2, all_values=True)
    record = run_benchmark(FakeGenerator(), faces, tmp_path / "r", config, cache=tmp_path / "cache")
    assert_rows_add_up(record)
    rows = {(r["method"], r["features"]): r for r in record["results"]}
    assert len(rows) == 12 and record["pose_classifier_accuracy"] == 1.0 and record["pose_normalization_accuracy"] == 1.0
    for (method, features), row in rows.items():
        c1, c2 = row["criterion1"]["recall"], row["criterion2"]["recall"]
        if method.startswith("ours"):
            assert c1 == c2 == {"1": 1.0, "5": 1.0, "20": 1.0}, (method, features, c1, c2)
        else:
            assert c1["1"] <= 0.3 and c1["5"] < 1.0, (method, features, c1)
    # a pose classifier that is always right ranks as the true pose labels do
    assert rows[("2-step retrieval", "image")]["criterion1"] == rows[("2-step, true pose", "image")]["criterion1"]
    assert rows[("2-step retrieval", "image")]["criterion2"] == rows[("2-step, true pose", "image")]["criterion2"]


def test_report_files_and_pose_layout(bench):
    root, record = bench
    out = root / "report"
    for name in ("report.md", "report.json", "recall.png", "figure6_change.png", "figure7_retrievals.png",
                 "generation/table.md", "generation/figure5_pairs.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text())["results"] == json.loads(json.dumps(record["results"]))
    text = (out / "report.md").read_text()
    assert "paper R@1" in text and "11.5%" in text  # the paper's Table 2 beside ours on the pose task
    assert "## Figure 6" in text and "15°" in text
    assert "## How each row reads pixels" in text and "L2-normalized" in text
    assert not list(root.glob(".report.tmp-*"))


def test_a_task_the_paper_has_no_figures_for_gets_no_paper_columns(bench):
    _, record = bench
    other = json.loads(json.dumps(record, default=str))
    other["model"]["task"], other["model"]["edit"] = "accessory", "accessory"
    other["criterion2_values"] = 1
    text = report_markdown(other)
    assert "paper R@" not in text and "380.89" not in text
    assert "criterion 2 equals criterion 1" in text


def test_k_larger_than_the_gallery_is_a_user_error(tmp_path):
    faces = tiny_faceset(identities=2, test_identities=1, illuminations=1)  # gallery of 7 < K=20
    with pytest.raises(UserError, match="fewer than K=20"):
        run_benchmark(Generator.load(save_untrained(tmp_path / "m")), faces, tmp_path / "r", QUICK)
    assert not (tmp_path / "r").exists()


def test_bench_command_refuses_data_of_another_vocabulary(tmp_path):
    model = save_untrained(tmp_path / "m")
    three = tiny_faceset(identities=3).filter(pose=["-45", "0", "+45"])
    faces = FaceSet.from_arrays(three.images, three.faces, name="three-poses", factors={"pose": ("-45", "0", "+45")})
    data = faces.write(tmp_path / "faces")
    result = CliRunner().invoke(cli, ["bench", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "r"),
                                      "--queries", "5"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "differ from the model" in result.output and "+30" in result.output, result.output
    assert not (tmp_path / "r").exists()



def test_true_pose_row_returns_only_faces_in_the_target_pose(bench):
    """The true-pose filter is the labels themselves: every face it returns has the query's target pose."""
    from facedata.faceset import FaceSet
    from retrieval.protocol import sample_queries
    from retrieval.two_step import rank_by_pixels, true_pose_filter

    root, record = bench
    gallery = FaceSet.open(record["data"]["path"]).split("test")
    queries = sample_queries(gallery, "pose", 30, seed=1)
    ranked = rank_by_pixels(gallery, queries, true_pose_filter(gallery, queries).gallery_pred, 4)  # 4 faces per pose
    poses = gallery.faces["pose"].to_numpy().astype(str)
    assert (ranked >= 0).all() and (poses[ranked] == queries.targets[:, None]).all()


def test_criterion2_must_name_kept_factors_other_than_the_edited_one(bench, tmp_path):
    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    for wrong in ("session", "pose", "illumination,tilt"):
        with pytest.raises(UserError, match="--criterion2: '(session|pose|tilt)' is not a factor to keep besides pose"):
            run_benchmark(model, faces, tmp_path / "r", BenchConfig(queries=5, criterion2_factor=wrong), cache=root / "cache")
    assert not (tmp_path / "r").exists()


def test_deep_images_must_hold_the_same_faces_in_the_same_order(bench, tmp_path):
    from retrieval.benchmark import source_resolution_images

    root, _ = bench
    faces = FaceSet.open(root / "faces")
    gallery = faces.split("test")
    same = source_resolution_images(faces, gallery, str(root / "faces"), "--deep-images")
    assert (same == gallery.images).all()
    shuffled = faces.take(list(range(len(faces)))[::-1]).write(tmp_path / "reversed")
    with pytest.raises(UserError, match="--deep-images .*column 'identity' differs"):
        source_resolution_images(faces, gallery, str(shuffled), "--deep-images")


def test_the_pose_classifier_reads_pose_images_at_their_own_resolution(tmp_path):
    """--pose-images: the 2-step classifier is trained and applied on the same faces at twice the size, the
    cheap normalization keeps a classifier of the crops, and the report says which images the pose came from."""
    from fakes import FakeGenerator, tiny_gallery

    faces = tiny_gallery(identities=8, lights=2, train_identities=3)
    doubled = FaceSet.from_arrays(faces.images.repeat(2, axis=1).repeat(2, axis=2), faces.faces.drop(columns="source"),
                                  "doubled", extra_factors=[f for f in faces.factors if f not in ("pose",)])
    path = doubled.write(tmp_path / "doubled")
    config = BenchConfig(queries=30, generation_pairs=0, grid_queries=2, all_values=True, normalize="classifier",
                         pose_images=str(path))
    record = run_benchmark(FakeGenerator(), faces, tmp_path / "r", config, cache=tmp_path / "cache")
    assert record["pose_classifier_images"] == str(path) and record["config"]["pose_images"] == str(path)
    assert record["pose_classifier_accuracy"] == 1.0 and record["pose_normalization_accuracy"] == 1.0
    assert f"read from `{path}`" in (tmp_path / "r" / "report.md").read_text()
    assert_rows_add_up(record)
    shuffled = faces.take(list(range(len(faces)))[::-1]).write(tmp_path / "reversed")
    with pytest.raises(UserError, match="--pose-images .*differs"):
        run_benchmark(FakeGenerator(), faces, tmp_path / "r2", BenchConfig(queries=5, generation_pairs=0,
                      pose_images=str(shuffled)), cache=tmp_path / "cache")
    assert not (tmp_path / "r2").exists()


def test_a_damaged_gallery_cache_chunk_is_recomputed_and_replaced(bench):
    from retrieval.benchmark import gallery_features

    root, _ = bench
    generator = Generator.load(root / "model")
    gallery = FaceSet.open(root / "faces").split("test")
    folders = [p for p in (root / "cache").iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].name.startswith("gallery-")
    good = gallery_features(generator, gallery, None, 64, root / "cache", progress=False)
    chunk = sorted(folders[0].glob("chunk-*[0-9a-f].npy"))[0]
    chunk.write_bytes(chunk.read_bytes()[:100])  # truncated
    again = gallery_features(generator, gallery, None, 64, root / "cache", progress=False)
    assert (again.features == good.features).all() and (again.pixels == good.pixels).all()
    assert not [p for p in folders[0].iterdir() if ".tmp" in p.name]  # no temporary left


def test_the_bench_with_an_exact_generator_finds_every_face(tmp_path):
    """The known answer: with generation exact, ours finds the right person in the target pose every time."""
    from fakes import FakeGenerator, tiny_gallery

    faces = tiny_gallery(identities=6, lights=2, train_identities=3)
    for mode in ("full", "classifier", "none"):
        config = BenchConfig(queries=60, generation_pairs=0, grid_queries=2, ks=(1, 5), normalize=mode)
        record = run_benchmark(FakeGenerator(), faces, tmp_path / mode, config, cache=tmp_path / "cache")
        rows = {(r["method"], r["features"]): r for r in record["results"]}
        for features in ("image", "our 2nd network"):
            assert rows[("ours", features)]["criterion1"]["recall"]["1"] == 1.0, (mode, features)
            assert rows[("ours", features)]["criterion2"]["recall"]["1"] == 1.0, (mode, features)
        assert record["config"]["normalize"] == mode and record["pose_normalization_accuracy"] == 1.0


def test_the_bench_reads_the_gallery_from_a_built_index(bench, tmp_path):
    from index.faiss_index import build_index

    root, record = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    index = build_index(model, faces.split("test"), tmp_path / "index", batch_size=64, progress=False)
    again = run_benchmark(model, faces, tmp_path / "r", QUICK, index=index)
    ours = {(r["method"], r["features"]): r for r in again["results"]}
    before = {(r["method"], r["features"]): r for r in record["results"]}
    for row in (("ours", "our 2nd network"), ("ours", "image"), ("ours, pose-aware", "our 2nd network")):
        assert ours[row]["criterion1"]["recall"] == pytest.approx(before[row]["criterion1"]["recall"]), row
    assert again["gallery_index"] == str(tmp_path / "index")


def test_the_bench_refuses_an_index_of_another_gallery_or_an_approximate_factory(bench, tmp_path):
    from index.faiss_index import build_index

    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    other = build_index(model, faces.split("train"), tmp_path / "train-index", batch_size=64, progress=False)
    with pytest.raises(UserError, match="not the test split"):
        run_benchmark(model, faces, tmp_path / "r", QUICK, index=other)
    pca = build_index(model, faces.split("test"), tmp_path / "pca", factory="PCA8,Flat", batch_size=64, progress=False)
    with pytest.raises(UserError, match="does not store its vectors exactly"):
        run_benchmark(model, faces, tmp_path / "r", QUICK, index=pca)


def test_an_index_of_all_views_adds_its_own_row_which_ranks_as_the_exact_all_poses_search(bench, tmp_path):
    """`rbg bench --index` of an `rbg index build` default (all views, the classifier's pose): one more row,
    searched in the index; in Flat (a small gallery) and with the same classifier it ranks as the bench's own."""
    from index.gallery_build import build_gallery

    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    built = build_gallery(model, faces, tmp_path / "all", pose_classifier="logreg", progress=False)
    assert built.index.views == "all" and built.index.info.factory == "Flat"  # 28 faces: too few for a PCA
    config = BenchConfig(queries=20, generation_pairs=0, grid_queries=2, batch_size=64, all_values=True,
                         pose_classifier="logreg")
    record = run_benchmark(model, faces, tmp_path / "r", config, index=built.index)
    rows = {(r["method"], r["features"]): r for r in record["results"]}
    mine, exact = rows[("ours, all poses, --index", "our 2nd network")], rows[("ours, all poses, classifier pose", "our 2nd network")]
    assert mine["criterion1"]["recall"] == pytest.approx(exact["criterion1"]["recall"])
    assert "ours, all poses: index search" in record["timings_seconds"]
    assert "the row 'ours, all poses, --index' searched in the index" in (tmp_path / "r" / "report.md").read_text()
    assert_rows_add_up(record)


def test_all_values_adds_the_every_pose_row_ranked_among_kept_target_faces(bench, tmp_path):
    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    config = BenchConfig(queries=20, generation_pairs=10, grid_queries=2, batch_size=64, all_values=True)
    record = run_benchmark(model, faces, tmp_path / "r", config, cache=root / "cache")
    rows = {(r["method"], r["features"]): r for r in record["results"]}
    assert ("ours, all poses", "our 2nd network") in rows
    assert ("ours, all poses, classifier pose", "our 2nd network") in rows
    assert ("ours, chosen on val", "our 2nd network, views and Deep weight chosen on val") in rows
    assert len(rows) == 12 and record["queries"] == 20
    assert_rows_add_up(record)  # scored on the same queries as the per-value rows, the per-change tables agreeing
    assert "ours, all poses: features + search" in record["timings_seconds"]
    assert "ours, all poses / our 2nd network" in (tmp_path / "r" / "report.md").read_text()


def test_a_cheap_normalization_refuses_a_pose_classifier_it_cannot_key_its_cache_by(bench, tmp_path):
    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    for config in (BenchConfig(queries=20, normalize="classifier", pose_classifier="mlp"),
                   BenchConfig(queries=20, pose_classifier="svm")):
        with pytest.raises(UserError, match="pose classifier"):
            run_benchmark(model, faces, tmp_path / "r", config, cache=root / "cache")
    assert not (tmp_path / "r").exists()


def recorded_pose_fits(monkeypatch) -> list:
    """The images every pose classifier fit of the run is given, appended to the returned list as they come."""
    from retrieval import baselines

    seen = []
    original = baselines.PoseClassifier.fit

    def recording_fit(self, images, labels):
        seen.append(images.copy())
        return original(self, images, labels)

    monkeypatch.setattr(baselines.PoseClassifier, "fit", recording_fit)
    return seen


def test_the_benchmarks_pose_classifier_learns_from_train_identities_only(bench, tmp_path, monkeypatch):
    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    seen = recorded_pose_fits(monkeypatch)
    # a fresh cache: the module's bench already cached its fitted classifier, which a rerun reads back
    run_benchmark(model, faces, tmp_path / "r", BenchConfig(queries=10, generation_pairs=10, grid_queries=2), cache=tmp_path / "cache")
    train_images = faces.split("train").images
    assert len(seen) == 1 and seen[0].shape == train_images.shape and (seen[0] == train_images).all()


def test_the_bench_refuses_an_index_grown_by_added_faces(bench, tmp_path):
    from index.append import add_to_index
    from index.faiss_index import build_index

    root, _ = bench
    faces, model = FaceSet.open(root / "faces"), Generator.load(root / "model")
    build_index(model, faces.split("test"), tmp_path / "index", batch_size=64, progress=False)
    grown = add_to_index(model, tmp_path / "index", faces.split("train"), progress=False)
    with pytest.raises(UserError, match="added faces"):
        run_benchmark(model, faces, tmp_path / "r", QUICK, index=grown)


def test_report_shows_each_methods_pose_changes_as_a_source_by_target_matrix(bench):
    root, record = bench
    text = (root / "report" / "report.md").read_text()
    section = text.split("source (rows) × target (columns)")[1].split("## Timings")[0]
    vocabulary = record["model"]["vocabulary"]
    header = "| pose: source ↓ target → | " + " | ".join(vocabulary) + " |"
    assert section.count(header) == len(record["value_pairs"])  # one matrix per method
    pairs = record["value_pairs"]["ours / our 2nd network"]
    label, cell = next(iter(pairs.items()))
    source, target = label.split(" → ")
    block = section.split("**ours / our 2nd network**")[1]
    row = next(line for line in block.splitlines() if line.startswith(f"| {source} |"))
    assert row.split("|")[2 + vocabulary.index(target)].strip() == f"{100 * cell['recall']:.1f}"
    assert row.split("|")[2 + vocabulary.index(source)].strip() == "·"  # no query keeps its own pose


@pytest.mark.parametrize("pose_fit, splits", [("train+val", ["train", "val"]), ("train", ["train"])])
def test_a_test_run_fits_the_pose_classifier_on_every_person_outside_the_gallery_and_chooses_with_train_only(
        tmp_path, monkeypatch, pose_fit, splits):
    faces = FaceSet.open(tiny_faceset(identities=6, test_identities=2, val_identities=2).write(tmp_path / "faces"))
    seen = recorded_pose_fits(monkeypatch)
    config = BenchConfig(queries=10, generation_pairs=0, grid_queries=2, all_values=True, pose_fit=pose_fit)
    record = run_benchmark(Generator.load(save_untrained(tmp_path / "model")), faces, tmp_path / "r", config,
                           cache=tmp_path / "cache")
    fitted_on = faces.where(faces.faces["split"].isin(splits).to_numpy(), "the pose classifier's people")
    assert record["pose_classifier_fitted_on"] == {"faces": len(fitted_on), "identities": fitted_on.num_identities,
                                                   "splits": splits}
    train = faces.split("train").images
    assert any(s.shape == fitted_on.images.shape and (s == fitted_on.images).all() for s in seen)
    assert any(s.shape == train.shape and (s == train).all() for s in seen)  # the val choice's classifier
    assert len(seen) == len(splits)
    with pytest.raises(UserError, match="unknown pose fit 'all'"):
        run_benchmark(Generator.load(tmp_path / "model"), faces, tmp_path / "r2", BenchConfig(pose_fit="all"))


def test_split_val_makes_the_val_people_gallery_and_queries_and_never_reads_test(tmp_path):
    faces = FaceSet.open(tiny_faceset(identities=6, test_identities=2, val_identities=2).write(tmp_path / "faces"))
    config = BenchConfig(queries=30, generation_pairs=0, grid_queries=2, ks=(1, 5), split="val")
    record = run_benchmark(Generator.load(save_untrained(tmp_path / "model")), faces, tmp_path / "report", config,
                           cache=tmp_path / "cache")
    assert record["data"]["split"] == "val" and record["data"]["val_identities"] == 2
    assert record["data"]["gallery"] == len(faces.split("val"))
    assert "over a gallery of 28 val images (2 identities)" in (tmp_path / "report" / "report.md").read_text()
    two_way = FaceSet.open(tiny_faceset(identities=4, test_identities=2).write(tmp_path / "two-way"))
    with pytest.raises(UserError, match="has no val people to form the gallery"):
        run_benchmark(Generator.load(tmp_path / "model"), two_way, tmp_path / "r2", config, cache=tmp_path / "cache")


def bench_config(bench, tmp_path, monkeypatch, flags) -> BenchConfig:
    """The BenchConfig `rbg bench FLAGS` hands to run_benchmark (stopped there)."""
    import retrieval.benchmark as benchmark

    seen = {}

    def record_config(generator, faces, out, config, **kwargs):
        seen["config"] = config
        raise UserError("stopped here")

    monkeypatch.setattr(benchmark, "run_benchmark", record_config)
    root, _ = bench
    result = CliRunner().invoke(cli, ["bench", "--model", str(root / "model"), "--data", str(root / "faces"),
                                      "--out", str(tmp_path / "r"), *flags])
    assert "stopped here" in result.output, result.output
    return seen["config"]


@pytest.mark.parametrize("flags, expected", [
    ([], ("cnn", True, "train+val")),  # the defaults chosen on val people (see the README)
    (["--paper"], ("logreg", False, "train")),  # the paper's protocol
    (["--paper", "--pose-classifier", "cnn"], ("cnn", False, "train")),  # an option given explicitly wins over --paper
    (["--paper", "--pose-fit", "train+val"], ("logreg", False, "train+val")),
    (["--no-all-values", "--pose-classifier", "logreg", "--pose-fit", "train"], ("logreg", False, "train")),
])
def test_bench_defaults_and_the_paper_flag(bench, tmp_path, monkeypatch, flags, expected):
    config = bench_config(bench, tmp_path, monkeypatch, flags)
    assert (config.pose_classifier, config.all_values, config.pose_fit) == expected


@pytest.mark.parametrize("flags, expected", [
    ([], None),  # no source-resolution faces given: the crops
    (["--deep-images", "{faces}"], "{faces}"),  # the pose classifier reads dlib's faces too
    (["--deep-images", "{faces}", "--pose-images", "crops"], None),
    (["--deep-images", "{faces}", "--paper"], None),  # the paper's protocol reads the crops
    (["--deep-images", "{faces}", "--paper", "--pose-images", "{other}"], "{other}"),
    (["--pose-images", "{other}"], "{other}"),
])
def test_the_pose_classifier_reads_deep_images_by_default(bench, tmp_path, monkeypatch, flags, expected):
    paths = {"faces": str(bench[0] / "faces"), "other": str(tmp_path / "other")}
    config = bench_config(bench, tmp_path, monkeypatch, [f.format(**paths) for f in flags])
    assert config.pose_images == (expected.format(**paths) if expected else None)
