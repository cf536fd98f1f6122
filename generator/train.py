"""Training of the two networks one after the other (§3.4), with validation, checkpoints and resume.

A run folder holds
  config.json    the resolved TrainConfig, data fingerprint, vocabulary, normalization, provenance
  log.jsonl      one line of metrics per finished epoch
  checkpoint/    the latest loadable model (Generator.load)
  resume/        the same plus the optimizer's state and the loop's position
Re-running the same command continues from resume/: each epoch's shuffle is drawn from
(seed, stage, epoch), so a resumed run makes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from facedata.atomic import atomic_file, write_json
from facedata.combined import edited_factors, with_factor
from facedata.errors import UserError
from facedata.faceset import FaceSet, mirror_value
from facedata.provenance import provenance
from generator.augment import jitter_sources
from generator.checkpoint import (
    CheckpointError, CheckpointInfo, check_vocabulary, data_fingerprint, load_checkpoint, load_training_state,
    restore_optimizer, save_checkpoint, save_training_state,
)
from generator.distill import distill_loss
from generator.evaluate import pair_errors
from generator.inference import resolve_device, run_model
from generator.model import ARCHES, REFINERS, ModelConfig, TwoStageGenerator
from generator.normalize import Normalization, fit_normalization
from generator.tasks import Task, get_task, pixel_loss, task_pairs

OPTIMIZERS = ("adam", "paper")
# Settings that define a run: resuming with any of them changed is refused. Epochs may grow.
RUN_DEFINING = ("task", "arch", "refiner", "self_pairs", "mirror", "pair_match", "optimizer", "lr", "momentum", "schedule", "batch_size", "seed", "max_pairs", "normalization", "distill_weight", "jitter")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; `resolved()` fills the optimizer-dependent defaults.

    optimizer "paper" is §3.4's SGD, momentum 0.95, learning rate 1e-5, for the loss of eq. (1)-(2):
    the squared error SUMMED over the H·W pixels of an image (and averaged over the batch, as
    mini-batch gradient descent does). Our loss is the mean over pixels and batch, whose gradient is
    1/(H·W) of the summed one, so the SGD step uses lr × H·W (1e-5 × 1024 = 0.01024 at 32×32): the
    same update as the paper's. (Summing over the batch too would multiply it by another 32.)
    optimizer "adam" (default): Adam at lr 1e-3 with a cosine decay to zero over each stage's steps.
    """

    task: str = "pose"
    arch: str = "paper"  # generator.model.ARCHES: the paper's stage 1, or the skip-connection variant
    refiner: str = "paper"  # generator.model.REFINERS: the paper's stage 2, or one adding a correction to stage 1
    self_pairs: bool = False  # also teach (face, its own value) → the face itself: sharper pose normalization
    mirror: bool = False  # also train on every pair mirrored left-right, with the poses negated
    pair_match: tuple[str, ...] | None = None  # factors a pair shares (None: every factor but the edited one)
    stages: tuple[int, ...] = (1, 2)
    epochs: int = 10  # per stage
    optimizer: str = "adam"
    lr: float | None = None  # None: 1e-3 for adam, 1e-5 (per summed-error unit) for paper
    momentum: float = 0.95
    schedule: str | None = None  # "cosine" or "constant"; None: cosine for adam, constant for paper
    batch_size: int = 32
    seed: int = 0
    max_pairs: int | None = None  # train on a fixed random subset of the pairs
    val_pairs: int = 1000  # fixed random sample of val pairs scored after every epoch (never test pairs)
    normalization: str = "dataset"  # or "per_image"
    device: str = "auto"
    threads: int | None = None
    checkpoint_minutes: float = 10.0  # also save the resume state this often within an epoch
    distill_weight: float = 0.0  # > 0: stage 2 also trains a DescriptorHead on given descriptors, this weight on its loss
    jitter: tuple[float, float] = (0.0, 0.0)  # sources re-cropped off their framing: offset sd (sides), log-scale sd

    def resolved(self) -> "TrainConfig":
        """This config with lr and schedule filled in, after checking every value."""
        get_task(self.task)
        if self.arch not in ARCHES:
            raise UserError(f"unknown arch '{self.arch}' (valid: {', '.join(ARCHES)})")
        if self.refiner not in REFINERS:
            raise UserError(f"unknown refiner '{self.refiner}' (valid: {', '.join(REFINERS)})")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer '{self.optimizer}' (valid: {', '.join(OPTIMIZERS)})")
        if not self.stages or any(s not in (1, 2) for s in self.stages):
            raise UserError(f"stages must be 1, 2 or both, got {self.stages}")
        for name in ("epochs", "batch_size", "val_pairs"):
            if getattr(self, name) < (0 if name == "val_pairs" else 1):
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not self.distill_weight >= 0:
            raise UserError(f"--distill-weight must be ≥ 0, got {self.distill_weight}")
        if len(self.jitter) != 2 or not all(v >= 0 for v in self.jitter):
            raise UserError(f"--jitter takes two standard deviations ≥ 0 (offset in sides, log-scale), got {self.jitter}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise UserError(f"--max-pairs must be positive, got {self.max_pairs}")
        schedule = self.schedule or ("cosine" if self.optimizer == "adam" else "constant")
        if schedule not in ("cosine", "constant"):
            raise UserError(f"unknown schedule '{schedule}' (valid: cosine, constant)")
        lr = self.lr if self.lr is not None else (1e-3 if self.optimizer == "adam" else 1e-5)
        if not lr > 0:
            raise UserError(f"--lr must be positive, got {lr}")
        return replace(self, lr=lr, schedule=schedule, stages=tuple(sorted(set(self.stages))))

    def to_json(self) -> dict:
        record = asdict(self)
        record["stages"] = list(self.stages)
        record["pair_match"] = list(self.pair_match) if self.pair_match is not None else None
        record["jitter"] = [float(v) for v in self.jitter]
        return record


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class PairSet:
    """One split's images and its (source, target) pairs."""

    images: torch.Tensor  # (N, H, W) uint8
    codes: np.ndarray  # (N,) int64 code of each image's edited factor
    pairs: np.ndarray  # (P, 2) int64 positions into images
    descriptors: torch.Tensor | None = None  # (N, d) float32 distillation target of each image (NaN: none)

    def batch(self, index: np.ndarray, norm: Normalization, device: torch.device):
        """Standardized sources (b,1,H,W), target codes (b,), standardized targets (b,1,H,W)."""
        pairs = torch.from_numpy(self.pairs[index])
        src = self.images[pairs[:, 0]].unsqueeze(1).float()
        tgt = self.images[pairs[:, 1]].unsqueeze(1).float()
        stats = norm.stats(src)
        codes = torch.from_numpy(self.codes[self.pairs[index, 1]])
        return norm.apply(src, stats).to(device), codes.to(device), norm.apply(tgt, stats).to(device)

    def target_descriptors(self, index: np.ndarray, device: torch.device) -> torch.Tensor:
        """The distillation targets of the batch's target images: (b, d) float32, NaN rows where none."""
        return self.descriptors[torch.from_numpy(self.pairs[index, 1])].to(device)


def pair_set(faces: FaceSet, task: Task, limit: int | None, seed: int, self_pairs: bool = False,
             mirror: bool = False, match: tuple[str, ...] | None = None,
             descriptors: np.ndarray | None = None) -> PairSet:
    """Images and task pairs of one split, at most `limit` pairs drawn at random (fixed by seed).

    With `self_pairs` every face is also paired with itself (target = its own value): the network then
    learns to leave a face alone when asked for the value it has, which is what pose normalization
    (§4.1.2: regenerate in every value, keep the closest to the original) relies on. With `mirror`
    the images are also taken flipped left-right, each flipped face carrying the mirrored value
    (yaw −p for p, left for right): every pair again as a pair of a "mirror person", twice the data.
    `descriptors` (one row per row of the whole FaceSet, see FaceSet.rows) are the distillation
    targets; a mirrored face keeps its original's.
    """
    pairs = task_pairs(task, faces, match)
    if self_pairs:
        own = np.arange(len(faces), dtype=np.int64)
        pairs = np.concatenate([pairs, np.stack([own, own], axis=1)])
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    if limit is not None and len(pairs) > limit:
        pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), limit, replace=False))]
    images, codes = np.ascontiguousarray(faces.images), faces.codes(task.edit_factor)
    if mirror:
        mirrored = mirrored_codes(faces.vocabulary(task.edit_factor), task.edit_factor)
        pairs = np.concatenate([pairs, pairs + len(images)])
        images = np.concatenate([images, np.ascontiguousarray(images[:, :, ::-1])])
        codes = np.concatenate([codes, mirrored[codes]])
    targets = None
    if descriptors is not None:
        own = np.asarray(descriptors, dtype=np.float32)[faces.rows]
        targets = torch.from_numpy(np.concatenate([own, own]) if mirror else own)
    return PairSet(torch.from_numpy(images), codes, pairs, targets)


def validation_pairs(faces: FaceSet, task: Task, config: TrainConfig,
                     descriptors: np.ndarray | None = None) -> tuple[PairSet | None, dict]:
    """The pairs scored after every epoch — of the val people only — and a record of what validates.

    Without val people (a FaceSet from before val splits, or made with --val-identities 0) there is
    no validation: choices are never made on the test people.
    """
    if not config.val_pairs:
        return None, {"split": None, "said": "off (--val-pairs 0)"}
    if not faces.has_split("val"):
        return None, {"split": None, "said": "off: no val split (make one with --val-identities; the test people are "
                                             "never used for it)"}
    val = faces.split("val")
    data = pair_set(val, task, config.val_pairs, config.seed + 1, match=config.pair_match, descriptors=descriptors)
    people = val.num_identities
    if len(data.pairs) == 0:
        return None, {"split": None, "said": f"off: the {people} val people have no {task.name} pairs"}
    return data, {"split": "val", "identities": people, "pairs": int(len(data.pairs)),
                  "said": f"on {len(data.pairs)} pairs of the {people} val people"}


def mirrored_codes(vocabulary: tuple[str, ...], factor: str) -> np.ndarray:
    """Code of each value's mirror image, (V,) int64: yaw p ↔ −p, left ↔ right, others unchanged."""
    if factor != "pose":
        raise UserError(f"--mirror flips poses; the task edits '{factor}'")
    lookup = {v: i for i, v in enumerate(vocabulary)}
    out = []
    for value in vocabulary:
        twin = mirror_value(value)
        if twin not in lookup:
            raise UserError(f"--mirror needs the mirror of every pose: '{value}' has none ('{twin}' is not a pose "
                            f"of {', '.join(vocabulary)})")
        out.append(lookup[twin])
    return np.asarray(out, dtype=np.int64)


def evaluate(model: TwoStageGenerator, norm: Normalization, data: PairSet, device: torch.device,
             batch_size: int = 256) -> dict:
    """Validation: each stage's per-pixel MSE/MAE (0–255 scale) on the pairs of `data`, and with a
    DescriptorHead the mean squared distance of its predictions to the known targets ("distill")."""
    images = data.images.numpy()
    src, tgt = data.pairs[:, 0], data.pairs[:, 1]
    stage1, stage2 = run_model(model, norm, images[src], data.codes[tgt], "pixels", batch_size, device,
                               channels_last=device.type == "cpu")
    errors = pair_errors(stage1, stage2, images[tgt])
    if model.stage2.descriptor is not None and data.descriptors is not None:
        (predicted,) = run_model(model, norm, images[src], data.codes[tgt], "stage2.descriptor", batch_size, device,
                                 channels_last=device.type == "cpu")
        loss = distill_loss(torch.from_numpy(predicted), data.descriptors[torch.from_numpy(tgt)])
        if loss is not None:
            errors["stage2_distill"] = float(loss)
    return errors


@torch.no_grad()
def stage1_outputs(model: TwoStageGenerator, norm: Normalization, data: PairSet, device: torch.device,
                   progress: bool, batch_size: int = 256) -> torch.Tensor:
    """The frozen stage 1's standardized outputs for every training pair: (P, 1, H, W) float32, on device."""
    out = []
    steps = range(0, len(data.pairs), batch_size)
    for start in tqdm_bar(steps, "stage 1 outputs for stage 2", progress, unit="batch"):
        x, codes, _ = data.batch(np.arange(start, min(start + batch_size, len(data.pairs))), norm, device)
        out.append(model.stage1(x, codes))
    return torch.cat(out)


def tqdm_bar(iterable, desc: str, enabled: bool, **kwargs):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


def make_optimizer(params, config: TrainConfig, pixels: int) -> torch.optim.Optimizer:
    """Adam, or §3.4's SGD with the learning rate scaled to our mean-reduced loss (see TrainConfig)."""
    if config.optimizer == "paper":
        return torch.optim.SGD(params, lr=config.lr * pixels, momentum=config.momentum)
    return torch.optim.Adam(params, lr=config.lr)


def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base lr at a stage's step: cosine from 1 to 0, or constant 1."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total)) if config.schedule == "cosine" else 1.0


class Run:
    """The run folder: config.json, log.jsonl, checkpoint/, resume/."""

    def __init__(self, out: str | Path):
        self.root = Path(out)
        self.checkpoint, self.resume = self.root / "checkpoint", self.root / "resume"
        visible = [p for p in self.root.iterdir() if not p.name.startswith(".")] if self.root.is_dir() else []
        if self.root.exists() and (not self.root.is_dir() or visible) and not (self.root / "config.json").exists():
            raise UserError(f"{self.root}: exists and is not a training run folder (use a new --out)")

    def write_json(self, name: str, record: dict) -> None:
        write_json(self.root / name, record)

    def write_log(self, history: list[dict]) -> None:
        with atomic_file(self.root / "log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(h) + "\n" for h in history))


def check_resumable(info: CheckpointInfo, config: TrainConfig, fingerprint: dict, where: Path) -> None:
    """Refuse to resume a run with other data or other run-defining settings."""
    before = info.training
    recorded = config.to_json()
    defaults = TrainConfig().to_json()  # settings added later are at their default in older runs
    changed = [k for k in RUN_DEFINING if before.get(k, defaults[k]) != recorded[k]]
    if changed:
        detail = ", ".join(f"{k}: {before.get(k, defaults[k])} → {recorded[k]}" for k in changed)
        raise UserError(f"{where}: cannot resume with changed settings ({detail}); use a new --out or the run's settings")
    same = {k: v for k, v in fingerprint.items() if k != "path"} == {k: v for k, v in info.data.items() if k != "path"}
    if not same:
        raise UserError(f"{where}: was trained on other data ({info.data.get('name')}); use a new --out or the same --data")


def init_weights(model: TwoStageGenerator, init: Path, factor: str, vocabulary: tuple[str, ...],
                 new_vocabulary: bool) -> tuple[str, dict]:
    """Copy a checkpoint's weights for fine-tuning; with `new_vocabulary`, all but the one-hot layer.

    A checkpoint with another refiner gives its stage 1 only (stage 2 keeps its fresh start). Returns
    the checkpoint's weight hash and its trained epochs per stage.
    """
    source, info, folder = load_checkpoint(init)
    if tuple(info.image_size) != tuple(model.config.image_size):
        raise CheckpointError(f"{folder}: image size {info.image_size} ≠ the data's {model.config.image_size}")
    if info.model_config.arch != model.config.arch:
        raise CheckpointError(f"{folder}: arch '{info.model_config.arch}' ≠ the requested --arch {model.config.arch}")
    if not new_vocabulary:
        try:
            check_vocabulary(info, factor, vocabulary, str(folder))
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (add --init-new-vocabulary to keep all but the one-hot layer)") from None
    onehot = ("stage1.attribute_encoder.0.weight", "stage1.attribute_encoder.0.bias")
    other_refiner = info.model_config.refiner != model.config.refiner
    own = model.state_dict()
    tensors = {k: v for k, v in source.state_dict().items()  # a descriptor head is kept only where both have one
               if k in own and not (new_vocabulary and k in onehot) and not (other_refiner and k.startswith("stage2."))}
    model.load_state_dict({**model.state_dict(), **tensors})
    return info.weights_sha256, dict(info.trained_epochs)


def train(faces: FaceSet, config: TrainConfig, out: str | Path, init: str | Path | None = None,
          init_new_vocabulary: bool = False, progress: bool = True, descriptors: np.ndarray | None = None,
          descriptor_source: dict | None = None) -> dict:
    """Train the stages of `config` on `faces` into run folder `out`, resuming it if it exists.

    With `config.distill_weight` > 0, `descriptors` ((len(faces), d) float32, NaN rows where unknown;
    see generator.distill.descriptor_targets) are what stage 2's DescriptorHead learns to predict for
    each pair's target, beside the pixel loss; `descriptor_source` says in config.json where they came from.

    Returns the last epoch's metrics. Pairs come from the train split; validation pairs from the val
    split, never from test: without val people there is no validation, said once on stderr and in
    config.json. A NaN loss raises TrainingDiverged, keeping the last checkpoint.
    """
    config = config.resolved()
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    task = get_task(config.task)
    run = Run(out)
    fingerprint = data_fingerprint(faces)
    faces = with_factor(faces, task.edit_factor)  # several factors: their combined column
    vocabulary = faces.vocabulary(task.edit_factor)
    parts = edited_factors(task.edit_factor)
    factor_vocabularies = {p: faces.vocabulary(p) for p in parts} if len(parts) > 1 else {}
    train_faces = faces.split("train")
    if (descriptors is None) != (config.distill_weight == 0):
        raise UserError("distillation needs both descriptors and --distill-weight > 0 (give --distill-images)")
    if descriptors is not None and len(descriptors) != len(faces):
        raise UserError(f"{len(descriptors)} descriptors for {len(faces)} faces of {faces.info.name}")
    train_data = pair_set(train_faces, task, config.max_pairs, config.seed, config.self_pairs, config.mirror,
                          config.pair_match, descriptors)
    if len(train_data.pairs) == 0:
        raise UserError(f"{faces.info.name}: no {task.name} training pairs (need faces of one identity that differ only in {task.edit_factor})")
    val_data, validation = validation_pairs(faces, task, config, descriptors)
    print(f"{faces.info.name}: validation {validation['said']}", file=sys.stderr)

    if run.resume.exists():
        model, info, loop, optim_tensors = load_training_state(run.resume)
        check_resumable(info, config, fingerprint, run.root)
        norm = Normalization.from_json(info.normalization)
    else:
        norm = fit_normalization((b for b, _ in train_faces.iter_batches(4096)), config.normalization)
        torch.manual_seed(config.seed)
        try:
            model_config = ModelConfig(num_values=len(vocabulary), image_size=faces.image_size, arch=config.arch,
                                       refiner=config.refiner,
                                       factor_sizes=tuple(len(v) for v in factor_vocabularies.values()),
                                       descriptor_dim=int(descriptors.shape[1]) if descriptors is not None else 0)
        except ValueError as exc:
            raise UserError(f"{faces.info.name}: {exc}") from None
        model = TwoStageGenerator(model_config)
        loop, optim_tensors = {"trained_epochs": {"1": 0, "2": 0}, "current": None, "history": []}, {}
        if init is not None:
            loop["init"], init_epochs = init_weights(model, Path(init), task.edit_factor, vocabulary, init_new_vocabulary)
            if config.stages == (2,) and not init_new_vocabulary:  # refine the given checkpoint's trained stage 1
                loop["trained_epochs"]["1"] = int(init_epochs.get("1", 0))
        elif init_new_vocabulary:
            raise UserError("--init-new-vocabulary needs --init CHECKPOINT")
    # channels_last: ≈ 7% faster training and ≈ 1.4× faster inference on CPU (benchmarks/bench_generator.py)
    model = model.to(device, memory_format=torch.channels_last if device.type == "cpu" else torch.contiguous_format)
    base_info = CheckpointInfo(
        architecture=model.config.to_json(), task=task.name, edit_factor=task.edit_factor, vocabulary=vocabulary,
        normalization=norm.to_json(), training=config.to_json(), data=fingerprint,
        provenance=provenance(seed=config.seed), factor_vocabularies=factor_vocabularies,
    )
    trained = loop["trained_epochs"]
    if config.stages == (2,) and not trained["1"]:
        raise UserError(f"{run.root}: no trained stage 1 to refine; run with --stage 1 or --stage both first")
    if 1 in config.stages and trained["2"] and config.epochs > trained["1"]:
        raise UserError(f"{run.root}: stage 2 was already trained on this stage 1 ({trained['1']} epochs); "
                        "train stage 2 longer with --stage 2, or stage 1 longer in a new --out")

    run.write_json("config.json", {**config.to_json(), "device_used": str(device), "data": fingerprint,
                                   "vocabulary": list(vocabulary), "normalization_stats": norm.to_json(),
                                   "train_pairs": int(len(train_data.pairs)),
                                   "val_pairs_used": int(len(val_data.pairs)) if val_data else 0,
                                   "validation": validation,
                                   **({"distill": descriptor_source} if descriptor_source else {}),
                                   "provenance": base_info.provenance})
    metrics: dict = loop["history"][-1] if loop["history"] else {}
    for stage in config.stages:
        if trained[str(stage)] >= config.epochs:
            continue
        metrics = _train_stage(stage, model, norm, task, config, train_data, val_data, device, run,
                               base_info, loop, optim_tensors, progress)
        optim_tensors = {}
    return metrics


def run_estimate(stage: int, config: TrainConfig, pairs: int, rate: float, left: int) -> str:
    """One line: the time left for this stage and, with a later stage to come, for the run, at `rate` samples/s."""
    later = sum(config.epochs * pairs for s in config.stages if s > stage)  # a later stage trains on as many pairs
    line = f"estimate at {rate:.0f} samples/s: {_duration(left / rate)} for the rest of stage {stage}"
    return line + (f", about {_duration((left + later) / rate)} for the run" if later else "")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _train_stage(stage: int, model: TwoStageGenerator, norm: Normalization, task: Task, config: TrainConfig,
                 train_data: PairSet, val_data: PairSet | None, device: torch.device, run: Run,
                 base_info: CheckpointInfo, loop: dict, optim_tensors: dict, progress: bool) -> dict:
    """Train one stage from where `loop` says it stopped up to config.epochs; save after each epoch."""
    net = model.stage1 if stage == 1 else model.stage2
    model.requires_grad_(False)
    net.requires_grad_(True)
    optimizer = make_optimizer(net.parameters(), config, int(np.prod(model.config.image_size)))
    current = loop["current"] if loop["current"] and loop["current"]["stage"] == stage else None
    if current is not None and optim_tensors:
        restore_optimizer(optimizer, {k: v.to(device) for k, v in optim_tensors.items()}, loop["optimizer"])
    jittered = any(config.jitter)
    # with jitter each batch's sources differ from epoch to epoch: stage 1 runs on them batch by batch
    coarse = stage1_outputs(model, norm, train_data, device, progress) if stage == 2 and not jittered else None
    pairs = len(train_data.pairs)
    steps = math.ceil(pairs / config.batch_size)
    total = steps * config.epochs
    metrics: dict = {}
    estimated = not progress  # the run's time is estimated once per stage, from its first batches
    if progress:
        print(f"stage {stage}: {pairs:,} training pairs per epoch ({steps:,} batches of {config.batch_size}), "
              f"epochs {loop['trained_epochs'][str(stage)] + 1}–{config.epochs}", file=sys.stderr)

    def kept() -> str:
        return f"the last good checkpoint in {run.resume} is kept" if run.resume.exists() else "no checkpoint was written"

    def save(epoch_done: int, position: dict | None) -> None:
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise TrainingDiverged(f"stage {stage}: weights became NaN/inf; {kept()} (try a lower --lr)")
        loop["trained_epochs"][str(stage)] = epoch_done
        loop["current"] = {"stage": stage, **(position or {"epoch": epoch_done, "step": 0, "loss_sum": 0.0, "samples": 0, "seconds": 0.0})}
        info = replace(base_info, trained_epochs=dict(loop["trained_epochs"]), metrics=loop["history"][-1] if loop["history"] else {})
        save_training_state(run.resume, model, info, optimizer, {k: v for k, v in loop.items() if k != "optimizer"})
        if position is None:
            save_checkpoint(run.checkpoint, model, info)
            run.write_log(loop["history"])

    for epoch in range(loop["trained_epochs"][str(stage)] + 1, config.epochs + 1):
        resume_at = current if current is not None and current["epoch"] == epoch - 1 and current["step"] else None
        current = None
        start = resume_at["step"] if resume_at else 0
        loss_sum = resume_at["loss_sum"] if resume_at else 0.0
        samples = resume_at["samples"] if resume_at else 0
        distill_sum = resume_at.get("distill_sum", 0.0) if resume_at else 0.0
        seconds = resume_at["seconds"] if resume_at else 0.0
        order = np.random.default_rng([config.seed, stage, epoch]).permutation(pairs)
        net.train()
        began = last_save = time.perf_counter()
        fresh = samples
        bar = tqdm_bar(range(start, steps), f"stage {stage} epoch {epoch}/{config.epochs}", progress,
                       total=steps, initial=start, unit="batch")
        for step in bar:
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, codes, y = train_data.batch(index, norm, device)
            if jittered:
                x = jitter_sources(x, config.jitter, np.random.default_rng([config.seed, stage, epoch, step]))
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * lr_factor(config, (epoch - 1) * steps + step, total)
            described = None
            if stage == 1:
                out = model.stage1(x, codes)
            else:
                if coarse is None:
                    with torch.no_grad():
                        batch_coarse = model.stage1(x, codes)
                else:
                    batch_coarse = coarse[torch.from_numpy(index).to(device)]
                out, described = model.stage2.refine_and_describe(x, batch_coarse)
            loss = pixel_loss(task, out, y)
            if described is not None:
                distilled = distill_loss(described, train_data.target_descriptors(index, device))
                if distilled is not None:
                    distill_sum += float(distilled.item()) * len(index)
                    loss = loss + config.distill_weight * distilled
            value = float(loss.item())
            if not math.isfinite(value):
                bar.close()
                raise TrainingDiverged(
                    f"loss became {value} at stage {stage}, epoch {epoch}, batch {step}; {kept()} (try a lower --lr)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += value * len(index)
            samples += len(index)
            now = time.perf_counter()
            if not estimated and step + 1 - start == min(20, steps - start):
                estimated = True
                bar.write(run_estimate(stage, config, pairs, (samples - fresh) / max(now - began, 1e-9),
                                       (steps - step - 1) * config.batch_size + (config.epochs - epoch) * pairs),
                          file=sys.stderr)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum / samples:.4f}", samples_s=f"{(samples - fresh) / max(now - began, 1e-9):.0f}")
            if config.checkpoint_minutes and now - last_save > 60 * config.checkpoint_minutes and step + 1 < steps:
                save(epoch - 1, {"epoch": epoch - 1, "step": step + 1, "loss_sum": loss_sum, "samples": samples,
                                 "distill_sum": distill_sum, "seconds": seconds + now - began})
                last_save = time.perf_counter()
        bar.close()
        elapsed = seconds + time.perf_counter() - began
        net.eval()
        val = evaluate(model, norm, val_data, device) if val_data is not None else {}
        metrics = {
            "stage": stage, "epoch": epoch, "train_loss": loss_sum / max(samples, 1), "loss": task.loss,
            "lr": optimizer.param_groups[0]["lr"], "samples": samples, "seconds": round(elapsed, 2),
            "samples_per_s": round(samples / max(elapsed, 1e-9), 1),
            **({"train_distill_loss": distill_sum / max(samples, 1)} if stage == 2 and model.stage2.descriptor is not None else {}),
            **{f"val_{k}": v for k, v in val.items() if stage == 2 or not k.startswith("stage2")},  # stage 2 untrained
        }
        loop["history"].append(metrics)
        save(epoch, None)
        if progress:
            shown = f"val stage-{stage} MSE {val[f'stage{stage}_mse']:.1f}" if val else "no validation pairs"
            print(f"stage {stage} epoch {epoch}: train loss {metrics['train_loss']:.4f}, {shown}, "
                  f"{metrics['samples_per_s']:.0f} samples/s", file=sys.stderr)
    return metrics
