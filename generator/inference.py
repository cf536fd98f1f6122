"""Generation API: load a checkpoint, edit faces in batches, and read the refiner's features.

Input images are (n, H, W) uint8 grayscale. Images of another size, or with a channel axis (n, H, W, C)
with C = 1, 3 or 4, are converted (grayscale, then bilinear resize to the model's size) with one
ImageConversionWarning per call; any other shape or a non-uint8 dtype is a UserError.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facedata.combined import VALUE_JOIN, join_values, split_value
from facedata.errors import UserError
from facedata.faceset import format_pose, pose_degrees
from facedata.imageio import ImageConversionWarning, load_face
from generator.checkpoint import CheckpointInfo, load_checkpoint
from generator.int8 import INT8_LAYERS, quantize_all_values, run_every_value_int8
from generator.model import TwoStageGenerator
from generator.normalize import Normalization


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → cuda when available, else cpu; "cuda" without a GPU is a UserError."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but torch sees no CUDA GPU (valid here: auto, cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"unknown device '{name}' (valid: auto, cpu, cuda)")
    return torch.device(name)


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 → (H, W) uint8 with ITU-R 601 luma, as PIL's "L" mode."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    rgb = image[:, :, :3].astype(np.float32)
    return np.clip(np.rint(rgb @ np.array([0.299, 0.587, 0.114], np.float32)), 0, 255).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 → (H, W) uint8, bilinear (antialiased when shrinking)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def conform_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Check (n, H, W[, C]) uint8 images; convert channels and size to the model's, warning once."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise UserError(f"images must be uint8 on the 0–255 scale, got {images.dtype}")
    if images.ndim == 4 and images.shape[3] in (1, 3, 4):
        warnings.warn(f"images have {images.shape[3]} channels; converted to grayscale", ImageConversionWarning, stacklevel=3)
        images = np.stack([to_gray(im) for im in images]) if len(images) else images[..., 0]
    if images.ndim != 3:
        raise UserError(f"images must be (n, H, W) or (n, H, W, 1|3|4) uint8, got shape {images.shape}")
    if tuple(images.shape[1:]) != tuple(size):
        warnings.warn(f"images are {images.shape[1]}×{images.shape[2]}; resized to the model's {size[0]}×{size[1]}",
                      ImageConversionWarning, stacklevel=3)
        images = np.stack([resize(im, size) for im in images]) if len(images) else np.zeros((0, *size), np.uint8)
    return np.ascontiguousarray(images)


@torch.inference_mode()
def run_model(model: TwoStageGenerator, normalization: Normalization, images: np.ndarray, codes: np.ndarray,
              layer: str | tuple[str, str] = "pixels", batch_size: int = 256, device: torch.device | str = "cpu",
              channels_last: bool = False, generate: bool = True) -> tuple[np.ndarray, ...]:
    """Run both stages over (n, H, W) uint8 sources and (n,) codes in batches.

    layer="pixels" → (stage1, stage2), each (n, H, W) float32 on the 0–255 scale, unclipped;
    a feature layer name of Generator.FEATURE_LAYERS → a 1-tuple of (n, d) float32;
    ("pixels", a feature layer) → (stage1, stage2, features) from one pass.
    generate=False skips stage 1: the source itself stands in for its output (Generator.source_features).
    """
    assert images.ndim == 3 and images.dtype == np.uint8 and codes.shape == (len(images),), (images.shape, codes.shape)
    device = torch.device(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    outputs: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        raw = torch.from_numpy(np.array(images[start : start + batch_size], copy=True)).to(device)
        raw = raw.unsqueeze(1).float().contiguous(memory_format=memory)  # (b,1,H,W) 0–255
        code = torch.from_numpy(np.ascontiguousarray(codes[start : start + batch_size])).to(device)
        stats = normalization.stats(raw)
        parts = _forward(model, normalization, normalization.apply(raw, stats), code, stats, layer, generate)
        outputs.append([p.float().cpu().numpy() for p in parts])
    if not outputs:
        empty = np.zeros((0, *images.shape[1:]), np.float32)
        return (empty, empty) if layer == "pixels" else (np.zeros((0, 0), np.float32),)
    return tuple(np.concatenate(column) for column in zip(*outputs))


def _forward(model: TwoStageGenerator, norm: Normalization, x: torch.Tensor, codes: torch.Tensor,
             stats: tuple[torch.Tensor, torch.Tensor], layer: str | tuple[str, str], generate: bool = True) -> tuple[torch.Tensor, ...]:
    """One batch through as much of the network as `layer` needs (without stage 1 when not `generate`)."""
    n = len(x)
    if layer == "stage1.fusion":
        return (model.stage1.fused(x, codes).reshape(n, -1),)
    coarse = model.stage1(x, codes) if generate else x
    if layer == "stage1.pixels":
        return (norm.invert(coarse, stats).clamp(0, 255).reshape(n, -1),)
    if layer == "stage2.descriptor":
        return (model.stage2.descriptor(model.stage2.middle_maps(x, coarse)),)
    if layer in ("stage2.mid", "stage2.mid128"):
        return (model.stage2.middle_maps(x, coarse, convs=4 if layer == "stage2.mid" else 3).reshape(n, -1),)
    if isinstance(layer, tuple):  # ("pixels", feature layer): the images and the features of one pass
        return (norm.invert(coarse, stats)[:, 0], *_images_and_features(model, norm, x, codes, stats, coarse, layer[1]))
    refined = model.stage2(x, coarse)
    if layer == "stage2.pixels":
        return (norm.invert(refined, stats).clamp(0, 255).reshape(n, -1),)
    assert layer == "pixels", layer
    return norm.invert(coarse, stats)[:, 0], norm.invert(refined, stats)[:, 0]


def _images_and_features(model: TwoStageGenerator, norm: Normalization, x: torch.Tensor, codes: torch.Tensor,
                         stats: tuple[torch.Tensor, torch.Tensor], coarse: torch.Tensor,
                         layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2's image and the features of `layer` from one pass: the refiner's middle maps are both the
    decoder's input and the default feature layer, so the query's image costs nothing beside its features."""
    n = len(x)
    middle = model.stage2.middle_maps(x, coarse)
    image = norm.invert(model.stage2.decode(middle, coarse), stats)
    features = {
        "stage2.mid": lambda: middle,
        "stage2.mid128": lambda: model.stage2.middle_maps(x, coarse, convs=3),
        "stage2.pixels": lambda: image.clamp(0, 255),
        "stage1.pixels": lambda: norm.invert(coarse, stats).clamp(0, 255),
        "stage1.fusion": lambda: model.stage1.fused(x, codes),
        "stage2.descriptor": lambda: model.stage2.descriptor(middle),
    }[layer]()
    return image[:, 0], features.reshape(n, -1)


@torch.inference_mode()
def run_every_value(model: TwoStageGenerator, normalization: Normalization, images: np.ndarray, codes: np.ndarray,
                    layer: str, pictures: np.ndarray | None = None, batch_size: int = 256,
                    device: torch.device | str = "cpu", channels_last: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Each of (n, H, W) uint8 sources generated in each of the (V,) codes, sharing what the code does not change.

    Returns the (n, V, d) float32 features of `layer` and, given `pictures` ((n,) indices into codes), the
    stage-2 image of each source in its chosen code, (n, H, W) float32 (0–255, unclipped), else None.
    Stage 1 encodes each source once (TwoStageGenerator's stage1.every_value); the refiner's decoder runs
    only for the pictures asked for, unless the layer is the image itself.
    """
    assert layer != "stage1.fusion", "stage1.fusion is read by run_model on repeated sources"
    device = torch.device(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    v = len(codes)
    step = max(1, batch_size // max(v, 1))
    code = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)).to(device)
    features, images_out = [], []
    for start in range(0, len(images), step):
        raw = torch.from_numpy(np.array(images[start : start + step], copy=True)).to(device)
        raw = raw.unsqueeze(1).float().contiguous(memory_format=memory)
        m = len(raw)
        stats = normalization.stats(raw)
        x = normalization.apply(raw, stats)
        every = tuple(t.repeat_interleave(v, dim=0) for t in stats)
        coarse = model.stage1.every_value(x, code)
        sources = x.repeat_interleave(v, dim=0)
        if layer == "stage1.pixels":
            found = normalization.invert(coarse, every).clamp(0, 255)
        else:
            middle = model.stage2.middle_maps(sources, coarse, convs=3 if layer == "stage2.mid128" else 4)
            found = {"stage2.mid": lambda: middle, "stage2.mid128": lambda: middle,
                     "stage2.descriptor": lambda: model.stage2.descriptor(middle),
                     "stage2.pixels": lambda: normalization.invert(model.stage2.decode(middle, coarse), every).clamp(0, 255),
                     }[layer]()
        features.append(found.reshape(m, v, -1).float().cpu().numpy())
        if pictures is not None:
            chosen = torch.arange(m, device=device) * v + torch.from_numpy(
                np.ascontiguousarray(pictures[start : start + m], dtype=np.int64)).to(device)
            if layer in ("stage1.pixels", "stage2.mid128"):
                middle = model.stage2.middle_maps(sources[chosen], coarse[chosen])
                picked = model.stage2.decode(middle, coarse[chosen])
            else:
                picked = model.stage2.decode(middle[chosen], coarse[chosen])
            images_out.append(normalization.invert(picked, stats)[:, 0].float().cpu().numpy())
    if not features:
        return np.zeros((0, v, 0), np.float32), (np.zeros((0, *images.shape[1:]), np.float32) if pictures is not None else None)
    return np.concatenate(features), (np.concatenate(images_out) if pictures is not None else None)


def canonical_value(value: str, vocabulary: Sequence[str]) -> str:
    """A factor value as `vocabulary` spells it: as given where listed, else a number as a signed pose ("30" → "+30")."""
    degrees = pose_degrees(value)
    return format_pose(degrees) if value not in vocabulary and degrees is not None else value


class Generator:
    """A trained two-stage generator: edit one factor of faces, or read features for retrieval.

    Feature layers (all (n, d) float32, no gradient):
      stage2.mid     the refiner's middle layer, default: output of the last 16×16 conv block
                     (Conv64 + ReLU before unpool), 64×16×16 = 16,384-d
      stage2.mid128  the 3rd conv of that block (128 ch), 32,768-d
      stage2.pixels  the generated image (0–255, clipped), H·W-d
      stage1.pixels  stage 1's image (0–255, clipped), H·W-d
      stage1.fusion  stage 1's fused maps before its decoder, 64×16×16-d (arch skip: its 192×4×4 bottleneck)
      stage2.descriptor  a model trained with --distill-images: its DescriptorHead's prediction of
                     dlib's 128-d face descriptor of the generated face
    The default is "stage2.mid": the paper takes "feature maps extracted from the middle layer of the
    second stage network" (§4.1.2); in an encoder-decoder the middle is the bottleneck between pool and
    unpool, whose last map is this one; and at half the width of the 128-channel maps it halves the
    FAISS memory and search time (PERF-NOTES: 1.37 GB and ≈ 225 q/s vs 2.73 GB and 114 q/s).
    """

    FEATURE_LAYERS: tuple[str, ...] = ("stage2.mid", "stage2.mid128", "stage2.pixels", "stage1.pixels", "stage1.fusion",
                                       "stage2.descriptor")
    default_feature_layer: str = "stage2.mid"
    image_layer: str = "stage2.pixels"  # the generated image as a feature (ours / image)

    def __init__(self, model: TwoStageGenerator, info: CheckpointInfo, checkpoint_hash: str,
                 device: torch.device, path: Path | None = None):
        self.model = model.to(device).eval()
        self.info = info
        self.normalization = Normalization.from_json(info.normalization)
        self.task: str = info.task
        self.edit_factor: str = info.edit_factor
        self.vocabulary: tuple[str, ...] = tuple(info.vocabulary)
        self.factors: tuple[str, ...] = info.factors  # the edited factors: (edit_factor,), or each one of several
        self.factor_vocabularies: dict[str, tuple[str, ...]] = (
            {f: tuple(v) for f, v in info.factor_vocabularies.items()} or {self.edit_factor: self.vocabulary})
        self.image_size: tuple[int, int] = info.image_size
        self.checkpoint_hash: str = checkpoint_hash
        self.device = device
        self.path = path
        self.channels_last = device.type == "cpu"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.int8_networks: dict[str, torch.nn.Module] = {}  # layer → int8 network of every_value (use_int8)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Generator":
        """Load a checkpoint folder, a training run folder holding checkpoint/, or a shipped model by name (synthpie-pose)."""
        dev = resolve_device(device)
        model, info, folder = load_checkpoint(path, dev)
        untrained = [s for s in ("1", "2") if not info.trained_epochs.get(s)]
        if untrained:
            warnings.warn(f"{folder}: stage {' and '.join(untrained)} not trained yet", UserWarning, stacklevel=2)
        return cls(model, info, info.model_sha256, dev, folder)

    def __repr__(self) -> str:
        return (f"Generator(task={self.task!r}, {self.edit_factor} over {list(self.vocabulary)}, "
                f"{self.image_size[0]}×{self.image_size[1]}, {self.device}, sha256={self.checkpoint_hash[:12]})")

    # -- targets ----------------------------------------------------------------------------------
    def target_codes(self, targets, n: int | None = None) -> np.ndarray:
        """Target values ("+30", "sunglasses") or codes → (n,) int64 codes; one value is repeated n times."""
        if isinstance(targets, (str, bytes, int, np.integer)):
            values = [targets] * (1 if n is None else n)
        else:
            values = list(np.asarray(targets).tolist()) if isinstance(targets, np.ndarray) else list(targets)
            if n is not None and len(values) == 1:
                values = values * n
            if n is not None and len(values) != n:
                raise UserError(f"{len(values)} targets for {n} images (give one value for all, or one per image)")
        lookup = {v: i for i, v in enumerate(self.vocabulary)}
        codes = np.empty(len(values), np.int64)
        for i, value in enumerate(values):
            codes[i] = self._code(value, lookup)
        return codes

    def _code(self, value, lookup: dict[str, int]) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if 0 <= int(value) < len(self.vocabulary):
                return int(value)
            raise UserError(f"{self.edit_factor} code {value} out of range 0..{len(self.vocabulary) - 1} "
                            f"(valid values: {', '.join(self.vocabulary)})")
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text in lookup:
            return lookup[text]
        parts = split_value(text, len(self.factors))
        if parts is not None:
            spelled = join_values(canonical_value(part, self.factor_vocabularies[f]) for f, part in zip(self.factors, parts))
            if spelled in lookup:
                return lookup[spelled]
        if len(self.factors) > 1:
            raise UserError(f"unknown {self.edit_factor} '{text}' (give one value of each of "
                            f"{', '.join(self.factors)}, joined by '{VALUE_JOIN}': e.g. {self.vocabulary[-1]})")
        raise UserError(f"unknown {self.edit_factor} '{text}' (valid: {', '.join(self.vocabulary)})")

    def combine_targets(self, values: dict[str, str | None], known: dict | None = None, given_as=str) -> str:
        """One target value from a value per edited factor ({"pose": "+30", "accessory": "sunglasses"}), checked.

        A factor left out (None) keeps the source's value from `known` (the query face's factors, where it
        came from a FaceSet); unknown there, it is a UserError asking for it by `given_as(factor)`.
        """
        chosen = []
        for factor in self.factors:
            value = values.get(factor)
            value = value if value is not None else (known or {}).get(factor)
            valid = self.factor_vocabularies[factor]
            if value is None:
                raise UserError(f"the model edits {' and '.join(self.factors)}: give {given_as(factor)} VALUE "
                                f"(valid: {', '.join(valid)})")
            spelled = canonical_value(str(value), valid)
            if spelled not in valid:
                raise UserError(f"unknown {factor} '{value}' (valid: {', '.join(valid)})")
            chosen.append(spelled)
        return join_values(chosen)

    # -- generation -------------------------------------------------------------------------------
    def generate(self, images: np.ndarray, targets, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(n, H, W) uint8 sources + targets → (stage1, stage2), each (n, H, W) float32, 0–255, unclipped."""
        images = conform_images(images, self.image_size)
        codes = self.target_codes(targets, len(images))
        return run_model(self.model, self.normalization, images, codes, "pixels", batch_size, self.device, self.channels_last)

    def features(self, images: np.ndarray, targets, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
        """(n, H, W) uint8 sources + targets → (n, d) float32 activations of `layer` (default: stage2.mid)."""
        layer = self.check_layer(layer)
        images = conform_images(images, self.image_size)
        codes = self.target_codes(targets, len(images))
        (features,) = run_model(self.model, self.normalization, images, codes, layer, batch_size, self.device, self.channels_last)
        return features.reshape(len(images), self.feature_dim(layer))

    def generate_with_features(self, images: np.ndarray, targets, layer: str | None = None,
                               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(n, H, W) uint8 sources + targets → the stage-2 images (n, H, W) float32 (0–255, unclipped) and the
        (n, d) float32 features of `layer` of the same generations, from one pass through the network."""
        layer = self.check_layer(layer)
        images = conform_images(images, self.image_size)
        codes = self.target_codes(targets, len(images))
        if not len(images):
            return np.zeros((0, *self.image_size), np.float32), np.zeros((0, self.feature_dim(layer)), np.float32)
        _, stage2, features = run_model(self.model, self.normalization, images, codes, ("pixels", layer), batch_size,
                                        self.device, self.channels_last)
        return stage2, features.reshape(len(images), self.feature_dim(layer))

    def every_value(self, images: np.ndarray, layer: str | None = None, pictures=None,
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Each source generated in every value of the vocabulary: (n, V, d) float32 features of `layer`, and
        with `pictures` (one target for all or one per image) the stage-2 image in it, (n, H, W) float32.

        The same numbers as `features` on each image repeated V times (to float rounding), at about 60 %
        of the arithmetic: the sources are encoded once and only the pictures asked for are decoded.
        """
        layer = self.check_layer(layer)
        images = conform_images(images, self.image_size)
        values = list(self.vocabulary)
        chosen = None
        if pictures is not None:
            chosen = self.target_codes(pictures, len(images))
        if layer == "stage1.fusion":  # inside stage 1: nothing to share
            n, v = len(images), len(values)
            features = self.features(np.repeat(images, v, axis=0), values * n, layer, batch_size).reshape(n, v, -1)
            shown = (self.generate(images, list(np.asarray(values)[chosen]), batch_size)[1]
                     if chosen is not None else None)
            return features, shown
        if layer in self.int8_networks:
            return run_every_value_int8(self.int8_networks[layer], self.model, self.normalization, images, layer,
                                        chosen, batch_size)
        codes = self.target_codes(values)
        return run_every_value(self.model, self.normalization, images, codes, layer, chosen, batch_size,
                               self.device, self.channels_last)

    def use_int8(self, calibration: np.ndarray, layer: str | None = None) -> None:
        """From now on, every_value of `layer` runs int8 (generator.int8), its activation ranges observed on
        `calibration`, (m, H, W) uint8 faces like those to be searched. CPU only; an arch-skip model."""
        layer = self.check_layer(layer)
        if self.device.type != "cpu":
            raise UserError(f"int8 queries run on the CPU; this generator is on {self.device}")
        if layer not in INT8_LAYERS:
            raise UserError(f"int8 queries read {' or '.join(INT8_LAYERS)}, not '{layer}'")
        images = conform_images(calibration, self.image_size)
        if not len(images):
            raise UserError("int8 calibration needs at least one face")
        raw = torch.from_numpy(np.array(images)).unsqueeze(1).float()
        sources = self.normalization.apply(raw, self.normalization.stats(raw))
        self.int8_networks[layer] = quantize_all_values(self.model, sources, convs=4 if layer == "stage2.mid" else 3)

    def source_features(self, images: np.ndarray, targets, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
        """Features of the images as they are, with no generation: (n, d) float32 of `layer`.

        Stage 1 is skipped and the refiner reads each source as its own coarse image: half a network
        pass instead of the 8 generations of pose normalization (`--normalize none`). `targets` (an
        estimate of each image's own value) only enter stage1.fusion, the one layer inside stage 1.
        """
        layer = self.check_layer(layer)
        images = conform_images(images, self.image_size)
        codes = self.target_codes(targets, len(images))
        (features,) = run_model(self.model, self.normalization, images, codes, layer, batch_size, self.device,
                                self.channels_last, generate=False)
        return features.reshape(len(images), self.feature_dim(layer))

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The feature layers this model has: stage2.descriptor only where it was trained with a head."""
        return tuple(l for l in self.FEATURE_LAYERS if l != "stage2.descriptor" or self.model.config.descriptor_dim)

    def check_layer(self, layer: str | None) -> str:
        """`layer`, or the default for None; UserError naming the valid ones for a layer this model lacks."""
        layer = layer or self.default_feature_layer
        if layer not in self.feature_layers:
            lacking = " (this model has no descriptor head: train it with --distill-images)" if layer in self.FEATURE_LAYERS else ""
            raise UserError(f"unknown feature layer '{layer}'{lacking} (valid: {', '.join(self.feature_layers)})")
        return layer

    def feature_dim(self, layer: str | None = None) -> int:
        """Width d of a feature layer's vectors."""
        layer = layer or self.default_feature_layer
        h, w = self.image_size
        fusion = 64 * h * w // 4 if self.model.config.arch == "paper" else 192 * h * w // 64  # Stage1Skip's bottleneck
        return {"stage2.mid": 64 * h * w // 4, "stage2.mid128": 128 * h * w // 4, "stage2.pixels": h * w,
                "stage1.pixels": h * w, "stage1.fusion": fusion,
                "stage2.descriptor": self.model.config.descriptor_dim}[layer]

    @torch.inference_mode()
    def attribute_maps(self, targets: Sequence | None = None) -> np.ndarray:
        """The attribute encoder's maps per target value (Figure 4): (V, 7, H/2, W/2) float32."""
        codes = self.target_codes(list(self.vocabulary) if targets is None else targets)
        return self.model.stage1.attribute_maps(torch.from_numpy(codes).to(self.device)).float().cpu().numpy()
