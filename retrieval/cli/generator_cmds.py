"""`rbg train`, `rbg eval generation`, `rbg generate`: the generator's commands, thin over generator/."""

from __future__ import annotations

from pathlib import Path

import click

from retrieval.cli.face_options import face_options


def register(cli: click.Group) -> None:
    """Add the generator's commands to the `rbg` group."""
    cli.add_command(train)
    cli.add_command(eval_group)
    cli.add_command(generate)


@click.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="FaceSet folder (train split trains, test split validates).")
@click.option("--task", default="pose", show_default=True, help="pose, accessory or completion.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder; re-running the same command resumes it.")
@click.option("--arch", type=click.Choice(["paper", "skip"]), default="paper", show_default=True,
              help="paper: §3's network; skip: stage 1 as a 4-scale encoder-decoder with skip connections (beyond the paper).")
@click.option("--self-pairs", is_flag=True, help="Also train each face to itself at its own value (sharper pose normalization; beyond the paper).")
@click.option("--stage", type=click.Choice(["1", "2", "both"]), default="both", show_default=True, help="Which network(s) to train; stage 2 refines a trained stage 1.")
@click.option("--epochs", type=int, default=10, show_default=True, help="Epochs per stage.")
@click.option("--optimizer", type=click.Choice(["adam", "paper"]), default="adam", show_default=True, help="paper: SGD, momentum 0.95, lr 1e-5 on the summed error (§3.4).")
@click.option("--lr", type=float, default=None, help="Learning rate [adam: 1e-3; paper: 1e-5 per summed-error unit].")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=None, help="[adam: cosine; paper: constant]")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--normalization", type=click.Choice(["dataset", "per-image"]), default="dataset", show_default=True, help="dataset: train-split pixel mean/std; per-image: each source's own.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-pairs", type=int, default=None, help="Train on a fixed random subset of this many pairs.")
@click.option("--val-pairs", type=int, default=1000, show_default=True, help="Test pairs scored after every epoch (0: none).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch [all cores].")
@click.option("--checkpoint-minutes", type=float, default=10.0, show_default=True, help="Also save the resume state this often within an epoch.")
@click.option("--init", type=click.Path(path_type=Path), default=None, help="Start from this checkpoint's weights (fine-tuning).")
@click.option("--init-new-vocabulary", is_flag=True, help="With --init: the data's vocabulary differs; re-initialize only the one-hot layer.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data: Path, task: str, arch: str, self_pairs: bool, out: Path, stage: str, epochs: int, optimizer: str, lr: float | None,
          schedule: str | None, batch_size: int, normalization: str, device: str, seed: int, max_pairs: int | None,
          val_pairs: int, threads: int | None, checkpoint_minutes: float, init: Path | None,
          init_new_vocabulary: bool, quiet: bool) -> None:
    """Train the two-stage generator (stage 1, then stage 2 on stage 1's outputs) into a run folder."""
    from facedata.faceset import FaceSet
    from generator.train import TrainConfig, train as run_training

    config = TrainConfig(
        task=task, arch=arch, self_pairs=self_pairs, stages=(1, 2) if stage == "both" else (int(stage),), epochs=epochs, optimizer=optimizer, lr=lr,
        schedule=schedule, batch_size=batch_size, seed=seed, max_pairs=max_pairs, val_pairs=val_pairs,
        normalization=normalization.replace("-", "_"), device=device, threads=threads,
        checkpoint_minutes=checkpoint_minutes,
    )
    metrics = run_training(FaceSet.open(data), config, out, init=init, init_new_vocabulary=init_new_vocabulary, progress=not quiet)
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
@click.option("--pairs", type=int, default=10_000, show_default=True, help="Random test pairs (Table 1 uses 10,000).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True)
def eval_generation(model: Path, data: Path, out: Path, pairs: int, seed: int, batch_size: int, device: str) -> None:
    """Table 1 (per-pixel MSE of each stage on random test pairs) and the paper's figures."""
    from facedata.errors import UserError
    from facedata.faceset import FaceSet
    from generator.evaluate import evaluate_generation, table_markdown
    from generator.inference import Generator

    if pairs < 1:
        raise UserError(f"--pairs must be positive, got {pairs}")
    record = evaluate_generation(Generator.load(model, device), FaceSet.open(data), out, pairs, seed, batch_size)
    click.echo(table_markdown(record), nl=False)
    click.echo(f"written: {out}/table.md, table.json, figures")


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Checkpoint or run folder.")
@click.option("--pose", default=None, help="Target pose, e.g. +30 (for a pose model).")
@click.option("--accessory", default=None, help="Target accessory (for an accessory model).")
@click.option("--occluded", default=None, help="Target occlusion, e.g. no (for a completion model).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="PNG of the stage-2 image.")
@click.option("--both-stages", is_flag=True, help="Also write OUT's stem + '_stage1.png'.")
@click.option("--scale", type=int, default=1, show_default=True, help="Upscale the PNG (nearest) by this factor.")
@click.option("--device", default="auto", show_default=True)
@face_options
def generate(image: Path, model: Path, pose: str | None, accessory: str | None, occluded: str | None, out: Path,
             both_stages: bool, scale: int, device: str, align: bool | None, face: int) -> None:
    """Edit one face: IMAGE (a photo, its face found and eye-aligned, see --align; or FACESET:ROW) → OUT PNG."""
    import warnings

    import numpy as np
    from PIL import Image

    from facedata.atomic import atomic_file
    from facedata.errors import UserError
    from generator.inference import Generator
    from retrieval.query import load_query_image

    if scale < 1:
        raise UserError(f"--scale must be ≥ 1, got {scale}")
    generator = Generator.load(model, device)
    given = {name: value for name, value in (("pose", pose), ("accessory", accessory), ("occluded", occluded)) if value is not None}
    factor = generator.edit_factor
    other = sorted(set(given) - {factor})
    if factor not in given or other:
        refused = f"--{other[0]} does not apply; " if other else ""
        raise UserError(f"{model} edits {factor} only: {refused}give --{factor} VALUE (valid: {', '.join(generator.vocabulary)})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = load_query_image(str(image), tuple(generator.image_size), align=align, face=face).image
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    stage1, stage2 = generator.generate(source[None], given[factor])
    outputs = [(out, stage2[0])]
    if both_stages:
        outputs.append((out.with_name(out.stem + "_stage1.png"), stage1[0]))
    for path, pixels in outputs:
        picture = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        picture = np.kron(picture, np.ones((scale, scale), np.uint8))
        with atomic_file(path) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
        click.echo(f"written: {path}")
