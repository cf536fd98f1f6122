"""`rbg index build` and `rbg query`: build the pose-normalized gallery index, search it by generation."""

from __future__ import annotations

import time
from pathlib import Path

import click

from rbg.cli.outputs import check_out, force_option
from rbg.cli.face_options import face_options


@click.group("index")
def index_group() -> None:
    """The gallery index: pose-normalized features of a FaceSet in FAISS."""


@index_group.command("build")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Checkpoint or run folder.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="FaceSet folder of the gallery.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index folder to write (replaced whole when done).")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True, help="Which rows form the gallery.")
@click.option("--layer", default=None, help="Feature layer [the model's default: stage2.mid]; stage2.mid128, stage2.pixels, stage1.pixels, stage1.fusion.")
@click.option("--factory", default=None, help="FAISS factory string: Flat, PCA256,Flat, IVF256,PQ16, HNSW32, …; "
              "VIEWPCA{p},FACTORY (--views all): a PCA to p dimensions per view first, then FACTORY over the V·p "
              "[with --views all: VIEWPCA256,SQ8, 1,280 B a face, chosen on KDEF's val people (VIEWPCA128,SQ8 "
              "for a gallery of 128 to 255 faces, VIEWPCA64,Flat for 64 to 127, Flat under 64); with --views kept: Flat]")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Gallery images per chunk (each generated in every target value).")
@click.option("--views", type=click.Choice(["kept", "all"]), default=None,
              help="kept: each face's features in its kept value (the paper); all: in every value side by side, "
                   "V× the dimension, queries ranked among faces kept in the target (beyond the paper; chosen on "
                   "the val people of KDEF and cmu_faces, see the README).  [default: all; --paper: kept]")
@click.option("--normalize", type=click.Choice(["full", "classifier", "none"]), default=None,
              help="How each face's pose is found. full: the paper's 7 generations, the closest kept; classifier: "
                   "a pose classifier's pose, 1 generation in it; none: the classifier's pose and the features "
                   "of the image itself, no generation (see the README for speed and recall).  "
                   "[default: classifier; --paper: full]")
@click.option("--classifier-data", type=click.Path(path_type=Path), default=None,
              help="With --normalize classifier|none: a FaceSet whose train split, with pose labels, fits the pose "
                   "classifier, with its val split for a test gallery (--paper: train alone) [--data's train and "
                   "val splits].")
@click.option("--pose-images", type=click.Path(path_type=Path), default=None,
              help="With --normalize classifier|none: a FaceSet of the same faces as --data at their source "
                   "resolution (imported without --size), row for row: the pose classifier is fitted on and "
                   "reads them (cmu_faces: 98 % of unseen people's poses from 64×60 frames, 95 % from 32-px "
                   "crops) [the --data crops].")
@click.option("--pose-classifier", type=click.Choice(["logreg", "cnn"]), default=None,
              help="With --normalize classifier|none: cnn, a small conv net with flips and shifts (1–8 min to fit; "
                   "right on 92–100 % of real galleries where pixels mislead a linear model); logreg, a linear "
                   "model on pixels.  [default: cnn; --paper: logreg]")
@click.option("--paper", is_flag=True,
              help="The paper's gallery: --views kept --normalize full (7 generations a face, no classifier), "
                   "where those options are not given.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes computing the gallery's chunks (and an IVF index's shards); 1: this process alone.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: --workers Ray workers of one CPU each (the same index, see the README).")
@click.option("--address", default=None, help="With --engine ray: join this Ray cluster (e.g. auto, HOST:6379) [RAY_ADDRESS, else a local one].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@force_option("index")
def index_build(model: Path, data: Path, out: Path, split: str, layer: str | None, factory: str, batch_size: int,
                views: str | None, normalize: str | None, classifier_data: Path | None, pose_images: Path | None,
                pose_classifier: str | None, paper: bool, device: str, workers: int, engine: str, address: str | None, quiet: bool, force: bool) -> None:
    """Pose-normalize a gallery (§4.1.2) and index its features; an interrupted build resumes when rerun."""
    from contextlib import nullcontext

    from facedata.faceset import FaceSet
    from generator.inference import Generator
    from index.distribute import open_distributor
    from index.faiss_index import KIND, IndexConfig, build_cache
    from index.gallery_build import build_gallery, check_classifier_options, gallery_settings

    started = time.perf_counter()
    views, normalize, pose_classifier = gallery_settings(views, normalize, pose_classifier, paper)
    distributor = open_distributor(engine, workers, address)
    check_out(out, KIND, force, data, model)
    check_classifier_options(normalize, classifier_data, pose_classifier, pose_images)
    generator = Generator.load(model, device)
    if build_cache(out).is_dir():
        click.echo(f"found an interrupted build's features ({build_cache(out)}): reused if made by the same model, "
                   "layer, gallery and batch size", err=True)
    config = IndexConfig(layer=layer, batch_size=batch_size, views=views, normalize=normalize)
    with distributor or nullcontext():
        built = build_gallery(generator, FaceSet.open(data), out, config, split=split, factory=factory,
                              classifier_data=FaceSet.open(classifier_data) if classifier_data is not None else None,
                              pose_classifier=pose_classifier, progress=not quiet, force=force, distributor=distributor,
                              pose_images=pose_images)
    info = built.index.info
    seconds = float(info.provenance.get("build_seconds", 0.0))
    click.echo(f"index: {out}")
    click.echo(f"  {info.count} {split} images of {built.gallery.info.name} × {info.dimension}-d features of {info.layer}, "
               f"factory {info.factory}, normalization {normalize}")
    if info.kept_accuracy is not None:
        click.echo(f"  kept-{info.edit_factor} accuracy (a free {info.edit_factor} estimate): {100 * info.kept_accuracy:.1f} %")
    rate = f", {info.count / seconds:.1f} images/s" if seconds > 0 else ""
    shards = f" on {workers} {engine} workers" if distributor is not None else ""
    parts = f"pose classifier {built.classifier_seconds:.1f} s, " if built.classifier_seconds is not None else ""
    click.echo(f"  time: {time.perf_counter() - started:.1f} s wall ({parts}features and index {seconds:.1f} s{rate}{shards})"
               f"{' (after an interrupted build: cached features were not recomputed)' if built.resumed else ''}")


@index_group.command("add")
@click.option("--index", "index_path", required=True, type=click.Path(path_type=Path), help="Index folder to add to (rewritten whole when done).")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="FaceSet folder of the faces to add.")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True, help="Which rows to add.")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Checkpoint that built the index [the one index.json records].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per chunk [the index's].")
@click.option("--pose-images", type=click.Path(path_type=Path), default=None,
              help="The same faces as --data at source resolution, row for row, for an index whose pose classifier "
                   "reads them (built with --pose-images).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def index_add(index_path: Path, data: Path, split: str, model: Path | None, batch_size: int | None,
              pose_images: Path | None, device: str, quiet: bool) -> None:
    """Add a gallery's faces to a built index, pose-normalized as its own; trained factories keep their training.

    \b
    rbg index add --index runs/index --data runs/new-faces --split all
    """
    from facedata.faceset import FaceSet
    from index.append import add_cache, add_to_index
    from index.gallery_build import gallery_rows
    from retrieval.search import open_index

    generator, _ = open_index(index_path, model, device)
    faces = FaceSet.open(data)
    gallery = gallery_rows(faces, split)
    resumed = add_cache(index_path).is_dir()
    grown = add_to_index(generator, index_path, gallery, progress=not quiet, batch_size=batch_size,
                         pose_images=pose_images)
    info, addition = grown.info, grown.info.additions[-1]
    seconds = float(addition["provenance"].get("add_seconds", 0.0))
    click.echo(f"index: {index_path}")
    click.echo(f"  added {addition['count']} {split} images of {gallery.info.name} (gallery {len(info.galleries) - 1}): "
               f"{info.count} faces in all, factory {info.factory}"
               + (f" (trained at build on {info.train_count}, not retrained)" if info.train_count else ""))
    if addition.get("kept_accuracy") is not None:
        click.echo(f"  kept-{info.edit_factor} accuracy of the added faces: {100 * addition['kept_accuracy']:.1f} %")
    rate = f", {addition['count'] / seconds:.1f} images/s" if seconds > 0 else ""
    click.echo(f"  time: {seconds:.1f} s{rate}{' (after an interrupted add: cached features were not recomputed)' if resumed else ''}")


@click.command()
@click.argument("image", required=False)
@click.option("--index", "index_path", required=True, type=click.Path(path_type=Path), help="Index folder (rbg index build).")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Checkpoint that built the index [the one index.json records].")
@click.option("--pose", default=None, help="Target pose, e.g. +30 (for a pose model; with --accessory for a pose+accessory one).")
@click.option("--accessory", default=None, help="Target accessory (for an accessory or pose+accessory model).")
@click.option("--occluded", default=None, help="Target occlusion (for a completion model).")
@click.option("--illumination", default=None, help="Target light (for an illumination model).")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Gallery faces per query.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="One IMAGE: the grid (.png or .jpg). --batch: the results CSV.")
@click.option("--batch", "batch_csv", type=click.Path(path_type=Path), default=None, help="CSV of queries: columns path, target[, k].")
@click.option("--grid", type=click.Path(path_type=Path), default=None, help="With --batch: also draw the first queries' grid (.png or .jpg).")
@click.option("--gallery", type=click.Path(path_type=Path), default=None, help="The build's gallery FaceSet for the grid's pictures, if moved [the one index.json records].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--int8", is_flag=True, default=False,
              help="All-views index on the CPU: generate the queries in int8, calibrated on 64 gallery faces first "
                   "(~10 s; worth it for a large --batch: 2.3× the float32 throughput) [off: float32].")
@click.option("--framing", type=click.Path(path_type=Path), default=None,
              help="A photo framing of the model's dataset (rbg framing fit): a photo's face is cropped as the dataset "
                   "framed its faces, seven ways, each gallery face ranked by its nearest crop, with the framing's own "
                   "detector (KDEF photos: 0.91× the crops' R@1, one box-framed crop 0.66×) [one crop, framed as "
                   "SynthPIE frames its faces].")
@face_options
def query(image: str | None, index_path: Path, model: Path | None, pose: str | None, accessory: str | None,
          occluded: str | None, illumination: str | None, k: int, out: Path | None, batch_csv: Path | None, grid: Path | None,
          gallery: Path | None, device: str, batch_size: int, int8: bool, framing: Path | None, align: bool | None, face: int,
          detector: str, min_face: int | None) -> None:
    """Find the person of IMAGE in the target pose (or accessory): generate, extract, search.

    IMAGE is an image file (PNG, JPG, …; a photo's face is detected and eye-aligned, see --align) or FACESET:ROW, row ROW (0-based) of a FaceSet folder, whose known identity lets the grid
    frame each found face green (right person in the target value) or red.

    \b
    rbg query --index runs/idx face.png --pose +30 -k 5 --out grid.png
    rbg query --index runs/idx runs/data:120 --pose -45
    rbg query --index runs/idx --batch queries.csv --out results.csv --grid grid.png
    """
    from facedata.atomic import atomic_file
    from facedata.detect import detect_config
    from facedata.errors import UserError
    from facedata.imageio import image_format
    from facedata.outputs import check_output_file
    from retrieval.query import known_factors, open_galleries, query_csv, query_image
    from retrieval.search import edit_target, open_index, use_int8_queries

    if (image is None) == (batch_csv is None):
        raise UserError("give one query IMAGE (a file or FACESET:ROW) or --batch CSV, not both or neither")
    detect = detect_config(detector, min_face)
    if batch_csv is not None:
        if out is None:
            raise UserError("--batch needs --out RESULTS.csv for the results table")
        if any(v is not None for v in (pose, accessory, occluded, illumination)):
            raise UserError("with --batch the targets come from the CSV's target column; drop "
                            "--pose/--accessory/--occluded/--illumination")
    elif grid is not None:
        raise UserError("--grid goes with --batch; for one IMAGE the grid is --out GRID.png")
    picture = grid if batch_csv is not None else out
    if picture is not None:
        image_format(picture, "--grid" if batch_csv is not None else "--out")
        check_output_file(picture, "--grid" if batch_csv is not None else "--out")
    if batch_csv is not None:
        check_output_file(out)

    generator, index = open_index(index_path, model, "cpu" if int8 and device == "auto" else device)
    if framing is not None:
        from retrieval.photo_framing import PhotoFraming

        framing = PhotoFraming.load(framing)
    # the pictures' galleries, checked against the index before any search: a wrong --gallery is refused, not shown
    galleries = open_galleries(index, gallery) if picture is not None or gallery is not None or int8 else None
    if int8:
        click.echo(f"int8 queries: calibrated on {use_int8_queries(generator, index, galleries)} gallery faces", err=True)
    if batch_csv is not None:
        result = _with_warnings(lambda: query_csv(generator, index, batch_csv, k, batch_size, align, face, detect,
                                                          framing))
        with atomic_file(out) as tmp:
            result.table.to_csv(tmp, index=False)
        click.echo(f"{len(result)} queries, {len(result.table)} results: {out}")
        known = result.table.loc[result.table["rank"] == 1, "correct"].dropna()
        if len(known):
            share = 100 * known.astype(bool).mean()
            click.echo(f"  right person in the target value at rank 1: {share:.1f} % of the {len(known)} queries of known identity")
    else:
        known = known_factors(image, tuple(generator.image_size)) if len(generator.factors) > 1 else None
        target = edit_target(generator, known=known, pose=pose, accessory=accessory, occluded=occluded,
                             illumination=illumination)
        result = _with_warnings(lambda: query_image(generator, index, image, target, k, batch_size, align, face, detect,
                                                            framing))
        edit, known = generator.edit_factor, result.truth[0]
        value = known.get(edit) or "/".join(known.get(f, "?") for f in generator.factors) if known else ""
        truth = f" ({known.get('identity')}, {edit} {value})" if known else ""
        click.echo(f"query {image}{truth} → {edit} {target}: top {k} of {len(index)} gallery faces")
        click.echo(_printable(result.table, generator.edit_factor))
    if picture is not None:
        from retrieval.figures import write_query_grid
        from retrieval.query import retrieved_images

        pixels = retrieved_images(result, galleries)
        title = f"{index_path} · model {generator.checkpoint_hash[:12]} · {index.info.layer} · {index.info.factory}"
        click.echo(f"grid: {write_query_grid(result, pixels, picture, title=title)}")


def _with_warnings(work):
    """Run `work`, printing the query images' conversion warnings as one `Warning:` line each."""
    import warnings

    from retrieval.query import QueryImageWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QueryImageWarning)
        result = work()
    for warning in caught:
        if issubclass(warning.category, QueryImageWarning):
            click.echo(f"Warning: {warning.message}", err=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result


def _printable(table, edit: str) -> str:
    """The result table as the terminal shows it: rank, distance, identity, factors, source, correct."""
    import pandas as pd

    from facedata.faceset import FACTOR_COLUMNS

    columns = ["rank", "distance", "identity", *[c for c in FACTOR_COLUMNS if c in table.columns], "source"]
    shown = table[[c for c in columns if c in table.columns]].copy()
    shown["distance"] = shown["distance"].map(lambda d: f"{d:.4f}")
    if table["correct"].notna().any():
        shown["correct"] = ["?" if pd.isna(c) else ("yes" if c else "no") for c in table["correct"]]
    return shown.to_string(index=False)
