"""`rbg bench`: the paper's retrieval benchmark for one model on one FaceSet, written as a report folder."""

from __future__ import annotations

import click

from rbg.cli.face_options import deep_detector_option
from rbg.cli.outputs import check_out, force_option


@click.command("bench")
@click.option("--model", "model_path", required=True, type=click.Path(), help="checkpoint (or training run) folder")
@click.option("--data", "data_path", required=True, type=click.Path(), help="FaceSet folder; its test split is the gallery")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="report folder to write (report.md, report.json, PNGs)")
@click.option("--queries", default=10_000, show_default=True, type=click.IntRange(min=1), help="random (image, target) queries")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--layer", default=None, help="feature layer for 'our 2nd network' [the model's default: stage2.mid]")
@click.option("--factory", default="Flat", show_default=True, help="FAISS factory string for the pose-normalized gallery")
@click.option("--generation-pairs", default=10_000, show_default=True, type=click.IntRange(min=0), help="test pairs for Table 1 (0: skip it)")
@click.option("--criterion2", "criterion2_factor", default=None, help="factor(s) criterion 2 also matches, any kept factor or several comma-separated (e.g. expression,session) [illumination, else expression]")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="whose faces form the gallery and the queries: test (report once), or val (choose settings on "
                   "people neither trained on nor reported)")
@click.option("--gallery-identities", default=None, type=click.IntRange(min=1), help="keep only the first N gallery identities")
@click.option("--deep", is_flag=True, help="also the 2-step baseline on dlib's face descriptor "
              "(needs the deep extra; ~0.1 s per gallery image, cached)")
@click.option("--deep-images", default=None, type=click.Path(file_okay=False),
              help="with --deep: a FaceSet of the same faces at their source resolution (e.g. imported without "
                   "--size) for dlib, which aligns them itself [the --data crops]")
@deep_detector_option
@click.option("--pose-images", default=None, type=click.Path(file_okay=False),
              help="a FaceSet of the same faces at their source resolution for the pose classifier (trained and "
                   "applied on them: on cmu_faces it names 98 % of unseen people's poses from the 64×60 frames, "
                   "95 % from 32-px crops), or 'crops' for the --data crops [--deep-images when given, else the "
                   "--data crops; crops with --paper]")
@click.option("--all-values/--no-all-values", default=True, show_default=True,
              help="also 'ours, all poses' (query and gallery compared in every generated value, V more feature "
                   "passes per gallery face) and 'ours, chosen on val' (every view or the target's, and the Deep "
                   "weight, chosen on the val people); beyond the paper")
@click.option("--normalize", type=click.Choice(["full", "classifier", "none"]), default="full", show_default=True,
              help="how ours pose-normalizes the gallery: full (the paper's 7 generations), classifier (one "
                   "generation in the 2-step pose classifier's pose), none (features of the image itself)")
@click.option("--pose-classifier", type=click.Choice(["logreg", "cnn"]), default="cnn", show_default=True,
              help="the 2-step pose classifier (also the filter of the 'classifier pose' rows and of --normalize "
                   "classifier|none): cnn, a small conv net with flips and shifts, for real photos (cmu_faces: "
                   "74 % → 93 %; 1–3 min to train); logreg, a linear model on pixels (the paper's cheap step 1)")
@click.option("--pose-fit", type=click.Choice(["train+val", "train"]), default="train+val", show_default=True,
              help="who the pose classifier learns from on a test run: every person outside the test gallery (the "
                   "train and val people), or the train people alone (--paper). Settings are chosen on the val "
                   "people with a classifier fitted on the train people either way")
@click.option("--paper", is_flag=True,
              help="the paper's protocol: pose classifier logreg fitted on the train people (--pose-fit train) reading "
                   "the crops, and no all-poses rows (--no-all-values), unless "
                   "given explicitly; the SynthPIE tables of the README use it")
@click.option("--fusion-weight", default=None, type=click.FloatRange(0, 1),
              help="with --deep and --all-values: the descriptor's weight in 'ours + Deep' [chosen on the FaceSet's "
                   "val people; 0.5 without them]")
@click.option("--index", "index_path", default=None, type=click.Path(file_okay=False),
              help="an index of the test gallery built by this model (rbg index build --split test). Of kept views "
                   "(Flat): ours reads the gallery from it, with its layer and normalization, instead of normalizing "
                   "it again; of all views (any factory): adds the row 'ours, all poses, --index', searched in it")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--cache", default=None, type=click.Path(file_okay=False), help="folder caching the pose-normalized gallery [OUT/../.bench-cache]")
@force_option("report")
@click.pass_context
def bench(ctx, model_path, data_path, out, queries, seed, layer, factory, generation_pairs, criterion2_factor, split,
          gallery_identities, deep, deep_images, deep_detector, pose_images, all_values, normalize, pose_classifier, pose_fit, paper, fusion_weight, index_path,
          batch_size, device, cache, force) -> None:
    """Tables 1–3 and Figures 6–7 of the paper: ours against the 2-step baselines, both criteria."""
    from pathlib import Path

    from facedata.faceset import FaceSet
    from facedata.outputs import check_output_file
    from facedata.errors import UserError
    from generator.inference import Generator
    from retrieval.benchmark import KIND, BenchConfig, run_benchmark
    from retrieval.search import open_index

    check_out(out, KIND, force, data_path, model_path, cache, index_path)
    if paper:  # the paper's settings where the user left the option at its default
        given = lambda name: ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT  # noqa: E731
        pose_classifier = pose_classifier if given("pose_classifier") else "logreg"
        all_values = all_values if given("all_values") else False
        pose_images = pose_images if given("pose_images") else "crops"
        pose_fit = pose_fit if given("pose_fit") else "train"
    if index_path is not None and (layer is not None or normalize != "full" or gallery_identities is not None):
        raise UserError("--index brings its own gallery, layer and normalization: drop --layer, --normalize and "
                        "--gallery-identities")
    generator, index = (open_index(index_path, model_path, device, gpu=False) if index_path is not None
                        else (Generator.load(model_path, device=device), None))
    faces = FaceSet.open(data_path)
    pose_images = deep_images if pose_images is None else None if pose_images == "crops" else pose_images
    config = BenchConfig(queries=queries, seed=seed, layer=layer, factory=factory, generation_pairs=generation_pairs,
                         criterion2_factor=criterion2_factor, gallery_identities=gallery_identities, batch_size=batch_size,
                         deep=deep or deep_images is not None, deep_images=deep_images, deep_detector=deep_detector,
                         pose_images=pose_images,
                         all_values=all_values, normalize=normalize, pose_classifier=pose_classifier,
                         fusion_weight=fusion_weight, split=split, pose_fit=pose_fit)
    cache_dir = Path(cache) if cache else Path(out).resolve().parent / ".bench-cache"
    check_output_file(cache_dir / "gallery.npz", "--cache")  # fails now, not after the gallery's long pass
    record = run_benchmark(generator, faces, out, config, cache=cache_dir, force=force, index=index)
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"report → {out}/report.md ({record['queries']:,} queries, gallery {record['data']['gallery']:,})")
