"""Checkpoints: a folder of safetensors weights plus a JSON manifest; never a pickle.

A checkpoint folder holds
  model.safetensors   both stages' weights (the state dict of TwoStageGenerator)
  checkpoint.json     architecture, task, edited factor and its vocabulary, normalization, epochs
                      trained per stage, training config, data fingerprint, metrics, provenance, the
                      sha256 of model.safetensors and the model hash (model_hash): the sha256 over that
                      and every field that changes what the model computes, checked on load
A training run's resume state is a second folder of the same kind with the optimizer's tensors
(optimizer.safetensors) and the loop's position (state.json) added.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from facedata.atomic import atomic_dir, default_file_mode
from facedata.combined import combined_vocabulary
from facedata.outputs import ArtifactKind
from facedata.errors import UserError
from facedata.faceset import FACES_FILE, INFO_FILE, FaceSet
from facedata.file_hash import sha256_file
from generator.model import ARCHITECTURE, ARCHITECTURE_VERSION, ModelConfig, TwoStageGenerator
from generator.normalize import Normalization
from generator.shipped import shipped_model, shipped_names

WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FORMAT_VERSION = 2  # 2: the model hash covers the manifest fields that shape the outputs
KIND = ArtifactKind("checkpoint", META_FILE, (WEIGHTS_FILE, META_FILE, OPTIMIZER_FILE, STATE_FILE))  # what save_checkpoint writes
MODEL_FIELDS = ("architecture", "task", "edit_factor", "vocabulary", "normalization", "weights_sha256")


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or does not fit the data or code it is used with."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What checkpoint.json holds."""

    architecture: dict  # ModelConfig.to_json()
    task: str
    edit_factor: str
    vocabulary: tuple[str, ...]
    normalization: dict  # Normalization.to_json()
    trained_epochs: dict = field(default_factory=dict)  # {"1": epochs of stage 1, "2": epochs of stage 2}
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    weights_sha256: str = ""
    model_sha256: str = ""  # model_hash(): what a Generator, an index or a report names the model by
    factor_vocabularies: dict = field(default_factory=dict)  # several edited factors: {factor: its values}, in order

    @property
    def factors(self) -> tuple[str, ...]:
        """The edited factors: (edit_factor,) for one, the combined one's parts in block order for several."""
        return tuple(self.factor_vocabularies) or (self.edit_factor,)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_json(self.architecture)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.model_config.image_size

    def to_json(self) -> dict:
        record = asdict(self)
        record["vocabulary"] = list(self.vocabulary)
        record["factor_vocabularies"] = {k: list(v) for k, v in self.factor_vocabularies.items()}
        if not self.factor_vocabularies:  # one factor: the manifest as before
            del record["factor_vocabularies"]
        record["format_version"] = FORMAT_VERSION
        return record

    @classmethod
    def from_json(cls, record: dict, source: Path) -> "CheckpointInfo":
        try:
            info = cls(
                architecture=dict(record["architecture"]),
                task=str(record["task"]),
                edit_factor=str(record["edit_factor"]),
                vocabulary=tuple(str(v) for v in record["vocabulary"]),
                normalization=dict(record["normalization"]),
                trained_epochs={str(k): int(v) for k, v in record.get("trained_epochs", {}).items()},
                training=dict(record.get("training", {})),
                data=dict(record.get("data", {})),
                metrics=dict(record.get("metrics", {})),
                provenance=dict(record.get("provenance", {})),
                weights_sha256=str(record.get("weights_sha256", "")),
                model_sha256=str(record.get("model_sha256", "")),
                factor_vocabularies={str(k): tuple(str(x) for x in v)
                                     for k, v in dict(record.get("factor_vocabularies", {})).items()},
            )
            Normalization.from_json(info.normalization)
            config = info.model_config
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{source}: not a valid checkpoint manifest ({exc!r})") from None
        arch = info.architecture
        if arch.get("name") != ARCHITECTURE or int(arch.get("version", -1)) != ARCHITECTURE_VERSION:
            raise CheckpointError(
                f"{source}: architecture {arch.get('name')} v{arch.get('version')} is not this code's "
                f"{ARCHITECTURE} v{ARCHITECTURE_VERSION}"
            )
        if config.num_values != len(info.vocabulary):
            raise CheckpointError(f"{source}: one-hot width {config.num_values} ≠ vocabulary of {len(info.vocabulary)}")
        blocks = tuple(len(v) for v in info.factor_vocabularies.values())
        if blocks != config.factor_sizes or (blocks and tuple(info.vocabulary) != combined_vocabulary(
                list(info.factor_vocabularies.values()))):
            raise CheckpointError(f"{source}: factor vocabularies {dict(info.factor_vocabularies)} do not fit the "
                                  f"one-hot blocks {list(config.factor_sizes)} and the vocabulary")
        return info


def model_hash(info: CheckpointInfo) -> str:
    """sha256 of the weights' sha256 with the architecture (image size), task, vocabulary and normalization.

    These are the manifest fields that change what the model computes, so an edited checkpoint.json
    (another vocabulary order, image size or mean/std) no longer matches the hash it records. Hashed
    in their JSON form, so the value is the same before and after writing the manifest.
    """
    fields = MODEL_FIELDS + (("factor_vocabularies",) if info.factor_vocabularies else ())  # one factor: as before
    record = json.loads(json.dumps({name: getattr(info, name) for name in fields}))
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def data_fingerprint(faces: FaceSet) -> dict:
    """Name plus hashes of faceset.json and faces.parquet (or of the table, for an in-memory FaceSet)."""
    record = {"name": faces.info.name, "count": int(len(faces)), "image_size": list(faces.image_size)}
    if faces.root is not None and (faces.root / FACES_FILE).is_file():
        record["path"] = str(faces.root)
        record[INFO_FILE] = sha256_file(faces.root / INFO_FILE)
        record[FACES_FILE] = sha256_file(faces.root / FACES_FILE)
    else:
        table = pd.util.hash_pandas_object(faces.faces, index=True).to_numpy()
        record["faces_table"] = hashlib.sha256(table.tobytes()).hexdigest()
    return record


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder at `path` (inside it for a training run folder), else the shipped one so named.

    A path that exists wins over a shipped name, so a local folder called `synthpie-pose` is read as given.
    """
    root = Path(path)
    if not root.exists():
        root = shipped_model(str(path)) or root
    for candidate in (root, root / "checkpoint"):
        if (candidate / META_FILE).is_file():
            return candidate
    if not root.exists():
        raise CheckpointError(f"{root}: no such checkpoint folder, nor a shipped model's name ({', '.join(shipped_names())})")
    raise CheckpointError(f"{root}: missing {META_FILE} (a checkpoint folder holds {WEIGHTS_FILE} and {META_FILE})")


def save_checkpoint(path: str | Path, model: TwoStageGenerator, info: CheckpointInfo,
                    extra_files: dict[str, dict[str, torch.Tensor]] | None = None,
                    extra_json: dict[str, dict] | None = None, dtype: torch.dtype | None = None) -> CheckpointInfo:
    """Write weights + manifest (and any extra tensor/JSON files) atomically; returns the info as written.

    `dtype` (e.g. torch.float16) stores the floating-point weights in that type: half the bytes for the
    shipped models; load_checkpoint casts them back to the model's float32.
    """
    target = Path(path)
    with atomic_dir(target, kind=KIND) as tmp:
        tensors = {k: stored(v, dtype) for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"architecture": ARCHITECTURE})
        info = CheckpointInfo(**{**asdict(info), "weights_sha256": sha256_file(tmp / WEIGHTS_FILE)})
        info = CheckpointInfo(**{**asdict(info), "model_sha256": model_hash(info)})
        for name, extra in (extra_files or {}).items():
            save_file({k: v.detach().to("cpu").contiguous() for k, v in extra.items()}, str(tmp / name))
        for name, record in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(record, indent=2) + "\n")
        (tmp / META_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")
        for written in tmp.iterdir():
            written.chmod(default_file_mode())  # safetensors writes owner-only files; weights are shared
    return info


def store_half(path: str | Path) -> CheckpointInfo:
    """Rewrite checkpoint `path`'s weights as float16, its other files kept: how the shipped models are stored.

    The manifest's hashes are recomputed for the new weights. The two files are replaced one after the
    other; a stop between them leaves a manifest whose hash refuses the weights, never a silent mix.
    """
    model, info, folder = load_checkpoint(path)
    with tempfile.TemporaryDirectory(prefix=".half-", dir=folder.parent) as scratch:
        written = save_checkpoint(Path(scratch) / "half", model, info, dtype=torch.float16)
        for name in (WEIGHTS_FILE, META_FILE):
            os.replace(Path(scratch) / "half" / name, folder / name)
    return written


def stored(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A weight as written to disk: on the CPU, contiguous, floating point in `dtype` when given."""
    tensor = tensor.detach().to("cpu")
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous()


def read_info(path: str | Path) -> tuple[Path, CheckpointInfo]:
    """The checkpoint folder and its parsed manifest; a missing or malformed manifest is a CheckpointError."""
    folder = resolve_checkpoint_dir(path)
    meta = folder / META_FILE
    try:
        record = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta}: unreadable JSON ({exc})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{meta}: not a JSON object")
    info = CheckpointInfo.from_json(record, meta)
    computed = model_hash(info)
    version = record.get("format_version")
    if not info.model_sha256 and version != 1:
        raise CheckpointError(f"{meta}: its model hash (model_sha256) is missing (format_version {version}; only format 1 "
                              "was written without one): an edited file, whose edits cannot be checked; restore the file")
    if not info.model_sha256:  # format 1 recorded the weights' hash only
        warnings.warn(f"{meta}: written before the model hash covered the vocabulary, image size and normalization; "
                      "edits to it cannot be detected (saving the checkpoint again adds the hash)", UserWarning, stacklevel=2)
        info = CheckpointInfo(**{**asdict(info), "model_sha256": computed})
    elif info.model_sha256 != computed:
        raise CheckpointError(f"{meta}: its fields differ from the model hash it records (an edited checkpoint.json: "
                              "vocabulary, image size, normalization, task and weights hash are covered); restore the file")
    return folder, info


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; missing or corrupt is a CheckpointError naming it."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        return load_file(str(file), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged headers and bodies
        raise CheckpointError(f"{file}: corrupt safetensors file ({exc})") from None


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy `tensors` into `model`, refusing any missing, unexpected or differently shaped weight."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    reshaped = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or reshaped:
        detail = "; ".join(
            part for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"{reshaped[0]} is {tuple(tensors[reshaped[0]].shape)}, expected {tuple(expected[reshaped[0]].shape)}" if reshaped else "",
            ) if part
        )
        raise CheckpointError(f"{source}: weights do not fit the {ARCHITECTURE} architecture ({detail})")
    model.load_state_dict({k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in tensors.items()})


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[TwoStageGenerator, CheckpointInfo, Path]:
    """Model (eval mode, on `device`), manifest and folder of a checkpoint, verified against its hash."""
    folder, info = read_info(path)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    if info.weights_sha256 and sha256_file(weights) != info.weights_sha256:
        raise CheckpointError(f"{weights}: sha256 differs from the one in {META_FILE} (corrupt or replaced file)")
    model = TwoStageGenerator(info.model_config)
    load_weights(model, read_tensors(weights), weights)
    return model.to(device).eval(), info, folder


def check_vocabulary(info: CheckpointInfo, factor: str, vocabulary: tuple[str, ...], where: str) -> None:
    """Refuse a checkpoint whose edited factor or one-hot vocabulary differs from the data's."""
    if info.edit_factor != factor or tuple(info.vocabulary) != tuple(vocabulary):
        raise CheckpointError(
            f"{where}: the checkpoint edits {info.edit_factor} over {list(info.vocabulary)}, "
            f"the data has {factor} over {list(vocabulary)}"
        )


# -- resume state -------------------------------------------------------------------------------
def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state dict split into flat named tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], record: dict) -> None:
    """Inverse of optimizer_tensors."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, slots in record.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(slots)
    optimizer.load_state_dict({"state": state, "param_groups": record["param_groups"]})


def save_training_state(path: Path, model: TwoStageGenerator, info: CheckpointInfo,
                        optimizer: torch.optim.Optimizer | None, loop_state: dict) -> None:
    """Write the resume folder: weights, manifest, optimizer tensors and the loop's position."""
    tensors, record = optimizer_tensors(optimizer) if optimizer is not None else ({}, {})
    save_checkpoint(
        path, model, info,
        extra_files={OPTIMIZER_FILE: tensors} if optimizer is not None else None,
        extra_json={STATE_FILE: {**loop_state, "optimizer": record}},
    )


def load_training_state(path: Path) -> tuple[TwoStageGenerator, CheckpointInfo, dict, dict[str, torch.Tensor]]:
    """Model, manifest, loop state (with "optimizer" record) and optimizer tensors of a resume folder."""
    model, info, folder = load_checkpoint(path)
    state_file = folder / STATE_FILE
    try:
        loop_state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{state_file}: unreadable resume state ({exc})") from None
    optim = read_tensors(folder / OPTIMIZER_FILE) if (folder / OPTIMIZER_FILE).exists() else {}
    return model, info, loop_state, optim

