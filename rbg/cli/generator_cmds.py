"""`rbg train`, `rbg eval generation`, `rbg generate`: the generator's commands, thin over generator/."""

from __future__ import annotations

from pathlib import Path

import click

from rbg.cli.outputs import check_out, force_option
from rbg.cli.face_options import face_options


@click.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="FaceSet folder (train split trains, val split validates; test is never read).")
@click.option("--task", default="pose", show_default=True,
              help="pose, accessory, completion or illumination; or several of pose, accessory, illumination joined "
                   "by '+' (pose+accessory: one model edits both at once).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder; re-running the same command resumes it.")
@click.option("--arch", type=click.Choice(["paper", "skip"]), default="paper", show_default=True,
              help="paper: §3's network; skip: stage 1 as a 4-scale encoder-decoder with skip connections (beyond the paper).")
@click.option("--refiner", type=click.Choice(["paper", "residual"]), default="paper", show_default=True,
              help="paper: §3.2's stage 2; residual: stage 2 adds a correction to stage 1's image, starting at "
                   "zero (beyond the paper). With --init and --stage 2: a new refiner on the checkpoint's stage 1.")
@click.option("--self-pairs", is_flag=True, help="Also train each face to itself at its own value (sharper pose normalization; beyond the paper).")
@click.option("--mirror", is_flag=True, help="Also train on every pair flipped left-right, poses negated (yaw p ↔ −p, "
              "left ↔ right): twice the data; beyond the paper.")
@click.option("--pair-match", default=None, metavar="FACTORS",
              help="Comma-separated factors both faces of a training pair share [every factor but the edited one]; "
                   "e.g. 'expression,session' for KDEF, 'illumination' to let other kept factors differ.")
@click.option("--stage", type=click.Choice(["1", "2", "both"]), default="both", show_default=True, help="Which network(s) to train; stage 2 refines a trained stage 1.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Epochs per stage.")
@click.option("--optimizer", type=click.Choice(["adam", "paper"]), default="adam", show_default=True, help="paper: SGD, momentum 0.95, lr 1e-5 on the summed error (§3.4).")
@click.option("--lr", type=float, default=None, help="Learning rate [adam: 1e-3; paper: 1e-5 per summed-error unit].")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=None, help="[adam: cosine; paper: constant]")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--normalization", type=click.Choice(["dataset", "per-image"]), default="dataset", show_default=True, help="dataset: train-split pixel mean/std; per-image: each source's own.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-pairs", type=click.IntRange(min=1), default=None, help="Train on a fixed random subset of this many pairs.")
@click.option("--val-pairs", type=click.IntRange(min=0), default=1000, show_default=True, help="Val pairs scored after every epoch (0: none).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch [all cores].")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Also save the resume state this often within an epoch.")
@click.option("--init", type=click.Path(path_type=Path), default=None, help="Start from this checkpoint's weights (fine-tuning).")
@click.option("--init-new-vocabulary", is_flag=True, help="With --init: the data's vocabulary differs; re-initialize only the one-hot layer.")
@click.option("--distill-images", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A FaceSet of the same faces at source resolution (as bench's --deep-images): dlib's descriptors of "
                   "its train and val faces, computed once, are what a descriptor head on the refiner learns to "
                   "predict beside the pixel loss (feature layer stage2.descriptor; needs the deep extra) [off].")
@click.option("--distill-weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="With --distill-images: the weight of the descriptor loss (squared distance) beside the pixel loss.")
@click.option("--jitter", default="0:0", show_default=True, metavar="OFFSET:SCALE",
              help="Crop each training source off its framing at random, the target left as is: the offset's and the "
                   "log-scale's standard deviations, e.g. 0.05:0.1 (a photo's crop is never the dataset's; beyond the paper).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data: Path, task: str, arch: str, refiner: str, self_pairs: bool, mirror: bool, pair_match: str | None, out: Path, stage: str, epochs: int, optimizer: str, lr: float | None,
          schedule: str | None, batch_size: int, normalization: str, device: str, seed: int, max_pairs: int | None,
          val_pairs: int, threads: int | None, checkpoint_minutes: float, init: Path | None,
          init_new_vocabulary: bool, distill_images: Path | None, distill_weight: float, jitter: str, quiet: bool) -> None:
    """Train the two-stage generator (stage 1, then stage 2 on stage 1's outputs) into a run folder."""
    from facedata.faceset import FaceSet
    from generator.train import TrainConfig, train as run_training
    from retrieval.deep_descriptor import distillation_targets

    config = TrainConfig(
        task=task, arch=arch, refiner=refiner, self_pairs=self_pairs, mirror=mirror,
        pair_match=tuple(f.strip() for f in pair_match.split(",") if f.strip()) if pair_match is not None else None,
        stages=(1, 2) if stage == "both" else (int(stage),), epochs=epochs, optimizer=optimizer, lr=lr,
        schedule=schedule, batch_size=batch_size, seed=seed, max_pairs=max_pairs, val_pairs=val_pairs,
        normalization=normalization.replace("-", "_"), device=device, threads=threads,
        checkpoint_minutes=checkpoint_minutes, distill_weight=distill_weight if distill_images is not None else 0.0,
        jitter=parse_jitter(jitter),
    )
    faces = FaceSet.open(data)
    descriptors, source = (distillation_targets(faces, distill_images, out / ".deep-cache")
                           if distill_images is not None else (None, None))
    metrics = run_training(faces, config, out, init=init, init_new_vocabulary=init_new_vocabulary, progress=not quiet,
                           descriptors=descriptors, descriptor_source=source)
    shown = ", ".join(f"{k} {metrics[k]:.2f}" for k in ("val_stage1_mse", "val_stage2_mse") if k in metrics)
    click.echo(f"{out}: stage {metrics.get('stage', '-')} epoch {metrics.get('epoch', '-')} {shown}".rstrip())
    click.echo(f"model: {out / 'checkpoint'}")


@click.group("eval")
def eval_group() -> None:
    """Evaluate a trained generator."""


@eval_group.command("generation")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Checkpoint or run folder.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="FaceSet folder; its test split is used.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for table.md, table.json and the figures.")
@click.option("--pairs", type=click.IntRange(min=1), default=10_000, show_default=True, help="Random test pairs (Table 1 uses 10,000).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--device", default="auto", show_default=True)
@force_option("generation evaluation")
def eval_generation(model: Path, data: Path, out: Path, pairs: int, seed: int, batch_size: int, device: str,
                    force: bool) -> None:
    """Table 1 (per-pixel MSE of each stage on random test pairs) and the paper's figures."""
    from facedata.faceset import FaceSet
    from generator.evaluate import KIND, evaluate_generation, table_markdown
    from generator.inference import Generator

    check_out(out, KIND, force, model, data)
    record = evaluate_generation(Generator.load(model, device), FaceSet.open(data), out, pairs, seed, batch_size, force=force)
    click.echo(table_markdown(record), nl=False)
    click.echo(f"written: {out}/table.md, table.json, figures")


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Checkpoint or run folder.")
@click.option("--pose", default=None, help="Target pose, e.g. +30 (for a pose model; with --accessory for a pose+accessory one).")
@click.option("--accessory", default=None, help="Target accessory (for an accessory or pose+accessory model).")
@click.option("--occluded", default=None, help="Target occlusion, e.g. no (for a completion model).")
@click.option("--illumination", default=None, help="Target light, e.g. 07 (for an illumination model).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The stage-2 image: .png, .jpg or .jpeg.")
@click.option("--both-stages", is_flag=True, help="Also write OUT's stem + '_stage1' + its suffix.")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True, help="Upscale the image (nearest) by this factor.")
@click.option("--device", default="auto", show_default=True)
@face_options
def generate(image: Path, model: Path, pose: str | None, accessory: str | None, occluded: str | None,
             illumination: str | None, out: Path,
             both_stages: bool, scale: int, device: str, align: bool | None, face: int, detector: str,
             min_face: int | None) -> None:
    """Edit one face: IMAGE (a photo, its face found and eye-aligned, see --align; or FACESET:ROW) → OUT (PNG or JPEG)."""
    import warnings

    import numpy as np
    from PIL import Image

    from facedata.detect import detect_config
    from facedata.imageio import image_format, save_image
    from facedata.outputs import check_output_file
    from generator.inference import Generator
    from retrieval.query import load_query_image
    from retrieval.search import edit_target

    outputs = [out, *([out.with_name(out.stem + "_stage1" + out.suffix)] if both_stages else [])]
    for path in outputs:
        image_format(path)
        check_output_file(path)
    generator = Generator.load(model, device)
    named = dict(pose=pose, accessory=accessory, occluded=occluded, illumination=illumination)
    if len(generator.factors) == 1:  # checked before the photo is read
        target = edit_target(generator, **named)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        query = load_query_image(str(image), tuple(generator.image_size), align=align, face=face,
                                 detect=detect_config(detector, min_face))
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    if len(generator.factors) > 1:  # a factor left out keeps a FaceSet row's own value
        target = edit_target(generator, known=query.truth, **named)
    source = query.image
    stage1, stage2 = generator.generate(source[None], target)
    for path, pixels in zip(outputs, (stage2[0], stage1[0])):
        picture = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        picture = np.kron(picture, np.ones((scale, scale), np.uint8))
        save_image(Image.fromarray(picture), path)
        click.echo(f"written: {path}")


def parse_jitter(text: str) -> tuple[float, float]:
    """--jitter "0.05:0.1" → (0.05, 0.1); a UsageError naming the option for anything else."""
    try:
        offset, scale = (float(v) for v in text.split(":"))
    except ValueError:
        raise click.BadParameter(f"'{text}' is not OFFSET:SCALE (two numbers ≥ 0, e.g. 0.05:0.1)", param_hint="--jitter") from None
    if not (offset >= 0 and scale >= 0):
        raise click.BadParameter(f"'{text}': standard deviations must be ≥ 0", param_hint="--jitter")
    return offset, scale
