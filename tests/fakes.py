"""Test doubles shared by the index and retrieval tests: an exact fake generator and tiny marker-face galleries."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from facedata.errors import UserError
from facedata.faceset import FaceSet
from generator.checkpoint import CheckpointInfo, save_checkpoint
from generator.model import ModelConfig, TwoStageGenerator
from generator.normalize import Normalization

POSES = ("-45", "-30", "-15", "0", "+15", "+30", "+45")
SIZE = (6, 16)


class FakeGenerator:
    """A generator with the real one's interface whose "generation" is exact on tiny marker images.

    A face is an identity pattern rolled right by its pose code, with a bright marker in row 0 at
    column = pose code; generating pose t rolls the image until the marker sits at column t, so the
    output for an image's own pose is the image itself. Features: "pixels" = the generated image
    flattened; "mid" = generated pixels and their squares (twice as wide).
    """

    FEATURE_LAYERS = ("mid", "pixels")
    feature_layers = FEATURE_LAYERS
    default_feature_layer = "mid"
    image_layer = "pixels"

    def __init__(self, checkpoint_hash: str = "a" * 64, fail_after: int | None = None):
        self.task = "pose"
        self.edit_factor = "pose"
        self.vocabulary = POSES
        self.image_size = SIZE
        self.checkpoint_hash = checkpoint_hash
        self.path = None
        self.fail_after = fail_after  # raise KeyboardInterrupt on this features() call (an interrupted build)
        self.generated = 0
        self.feature_calls = 0

    def target_codes(self, targets, n: int | None = None) -> np.ndarray:
        values = [targets] * (n or 1) if isinstance(targets, str) else list(targets)
        unknown = [v for v in values if str(v) not in self.vocabulary]
        if unknown:
            raise UserError(f"unknown pose '{unknown[0]}' (valid: {', '.join(self.vocabulary)})")
        return np.array([self.vocabulary.index(str(v)) for v in values], dtype=np.int64)

    def generate(self, images: np.ndarray, targets, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        codes = self.target_codes(targets, len(images))
        current = np.argmax(images[:, 0, :], axis=1)
        out = np.stack([np.roll(im, int(t - c), axis=1) for im, t, c in zip(images, codes, current)]).astype(np.float32)
        self.generated += len(images)
        return out, out

    def features(self, images: np.ndarray, targets, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
        self.feature_calls += 1
        if self.fail_after is not None and self.feature_calls >= self.fail_after:
            raise KeyboardInterrupt
        layer = layer or self.default_feature_layer
        assert layer in self.FEATURE_LAYERS, layer
        _, stage2 = self.generate(images, targets, batch_size)
        return self._read(stage2, layer)

    def generate_with_features(self, images: np.ndarray, targets, layer: str | None = None,
                               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """The stage-2 images and their features, as one pass of the real generator gives them."""
        layer = layer or self.default_feature_layer
        assert layer in self.FEATURE_LAYERS, layer
        _, stage2 = self.generate(images, targets, batch_size)
        return stage2, self._read(stage2, layer)

    def every_value(self, images: np.ndarray, layer: str | None = None, pictures=None,
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Each image generated in every pose: (n, V, d) features, and the images in `pictures`' poses."""
        n, v = len(images), len(self.vocabulary)
        features = self.features(np.repeat(images, v, axis=0), list(self.vocabulary) * n, layer, batch_size)
        shown = self.generate(images, pictures, batch_size)[1] if pictures is not None else None
        return features.reshape(n, v, -1), shown

    def feature_dim(self, layer: str | None = None) -> int:
        width = SIZE[0] * SIZE[1]
        return width if (layer or self.default_feature_layer) == "pixels" else 2 * width

    def source_features(self, images: np.ndarray, targets, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
        """The features of the images themselves, nothing generated (the targets are only checked)."""
        self.target_codes(targets, len(images))
        self.source_calls = getattr(self, "source_calls", 0) + 1
        return self._read(np.asarray(images, dtype=np.float32), layer or self.default_feature_layer)

    @staticmethod
    def _read(stage2: np.ndarray, layer: str) -> np.ndarray:
        flat = stage2.reshape(len(stage2), -1)
        return flat if layer == "pixels" else np.concatenate([flat, flat**2 / 255.0], axis=1)


def face(identity: int, pose_code: int, light: int = 0) -> np.ndarray:
    """Identity `identity` in pose `pose_code` under light level `light`: (H, W) uint8."""
    rng = np.random.default_rng(1000 + identity)
    pattern = rng.integers(0, 150, size=SIZE).astype(np.int64) + 40 * light
    pattern[0] = 0
    pattern[0, 0] = 255
    return np.roll(pattern, pose_code, axis=1).clip(0, 255).astype(np.uint8)


def tiny_gallery(identities: int = 3, lights: int = 2, train_identities: int | None = None) -> FaceSet:
    """identities × 7 poses × lights marker faces as a FaceSet (pose, illumination, split)."""
    images, rows = [], []
    for i in range(identities):
        for p, pose in enumerate(POSES):
            for light in range(lights):
                images.append(face(i, p, light))
                split = "train" if train_identities is not None and i < train_identities else "test"
                rows.append({"identity": f"id{i:02d}", "pose": pose, "illumination": f"{light:02d}", "split": split})
    return FaceSet.from_arrays(np.stack(images), pd.DataFrame(rows), name="tiny", factors={"pose": POSES})


def save_untrained(path, size=(16, 16), normalization=None, descriptor_dim=0, arch="paper"):
    """A real, untrained checkpoint of the pose task (weights seeded) for command-line tests."""
    normalization = normalization or Normalization(mean=90.0, std=40.0)
    torch.manual_seed(0)
    config = ModelConfig(num_values=len(POSES), image_size=size, descriptor_dim=descriptor_dim, arch=arch)
    info = CheckpointInfo(architecture=config.to_json(), task="pose", edit_factor="pose", vocabulary=POSES,
                          normalization=normalization.to_json(), trained_epochs={"1": 1, "2": 1})
    save_checkpoint(path, TwoStageGenerator(config), info)
    return path


def split_identities(summary: str) -> dict[str, int]:
    """The identities per split that facedata.contact_sheet.summarize prints (its split table)."""
    rows = re.findall(r"^  (train|val|test)\s+(\d+)\s+\d+$", summary, flags=re.M)
    return {split: int(count) for split, count in rows}
