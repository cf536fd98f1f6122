"""Re-framing a face crop taken from a photo: a small CNN reads how far the crop sits off the dataset's
framing, and the crop is taken again where it says.

A crop framed from a detector's box is right on average (facedata.align.BoxFraming) but off from face
to face by a few hundredths of a side and a few percent of size, and the generator's features are not
made for that: on KDEF, crops moved by 0.05 sides and scaled by 10 % (standard deviations) take "ours,
all poses" from 75 to 40 R@1 (benchmarks/framing_sensitivity.py). The regressor is trained on crops of
the train people's faces taken at known random offsets and scales around their true crop (in photos,
so that the background fills what the crop takes beyond the face), to predict that offset (right and
down, in sides of the true crop) and log-scale. It is index.pose_cnn's network with 3 outputs; members
of different seeds are averaged, each also on the mirrored crop (its horizontal offset negated).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facedata.imageio import crop_square
from facedata.scenes import scenes
from index.pose_cnn import standardized_batch, train_net

UNIT = 0.1  # the network predicts offsets and log-scales in tenths: outputs of order 1


@dataclass(frozen=True)
class ReframeConfig:
    """The random framing errors the regressor learns from, and its training budget."""

    offset_sd: float = 0.08  # standard deviation of the training crops' offsets, in sides
    log_scale_sd: float = 0.12  # … and of their log-scale
    offset_clip: float = 0.25  # drawn errors are clipped here: a crop further off is not the detector's
    log_scale_clip: float = 0.35
    members: int = 2
    steps: int = 2500  # optimizer steps per member
    batch_size: int = 64
    lr: float = 3e-3  # peak of a one-cycle schedule
    seed: int = 0

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n training errors: offsets (n, 2) in sides (right, down) and log-scales (n,)."""
        offsets = rng.normal(0.0, self.offset_sd, (n, 2)).clip(-self.offset_clip, self.offset_clip)
        return offsets, rng.normal(0.0, self.log_scale_sd, n).clip(-self.log_scale_clip, self.log_scale_clip)


def _train_member(x: torch.Tensor, y: torch.Tensor, config: ReframeConfig, seed: int, on_step) -> torch.nn.Sequential:
    """One member from its own seed, with random mirroring (the horizontal offset negated); global RNG kept."""
    rng = torch.Generator().manual_seed(seed)

    def step_loss(net: torch.nn.Sequential) -> torch.Tensor:
        batch = torch.randint(0, len(x), (config.batch_size,), generator=rng)
        inputs, targets = x[batch], y[batch].clone()
        flip = torch.rand(len(batch), generator=rng) < 0.5
        inputs[flip] = inputs[flip].flip(3)
        targets[flip, 0] = -targets[flip, 0]
        return F.smooth_l1_loss(net(inputs), targets / UNIT)

    return train_net(3, config.steps, config.lr, 1e-4, seed, step_loss, on_step)


class Reframer:
    """Predicts a crop's framing error (`errors`) and moves its crop transform to undo it (`corrected`)."""

    def __init__(self, nets: list[torch.nn.Sequential]):
        self.nets = nets

    @classmethod
    def fit(cls, crops: np.ndarray, offsets: np.ndarray, log_scales: np.ndarray,
            config: ReframeConfig = ReframeConfig(), progress: bool = True) -> "Reframer":
        """Train on crops (n, H, W) uint8 taken at known offsets (n, 2) and log-scales (n,) off the true crop."""
        assert len(crops) == len(offsets) == len(log_scales), (crops.shape, offsets.shape, log_scales.shape)
        x = standardized_batch(crops)
        y = torch.as_tensor(np.column_stack([offsets, log_scales]), dtype=torch.float32)
        with tqdm(total=config.members * config.steps, desc="reframing regressor", unit="step", disable=not progress) as bar:
            nets = [_train_member(x, y, config, config.seed + m, lambda: bar.update(1)) for m in range(config.members)]
        return cls(nets)

    @torch.no_grad()
    def errors(self, crops: np.ndarray) -> np.ndarray:
        """(n, 3) float64: each crop's offset right, down (sides of the true crop) and log-scale, as read."""
        x = standardized_batch(crops)
        total = torch.zeros(len(x), 3)
        for net in self.nets:
            mirrored = net(x.flip(3))
            mirrored[:, 0] = -mirrored[:, 0]
            total += (net(x) + mirrored) / 2
        return (UNIT * total / len(self.nets)).double().numpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every member's weights and batch-norm statistics as arrays, keyed `reframe.<member>.<name>` (safetensors)."""
        return {f"reframe.{m}.{name}": value.detach().cpu().numpy()
                for m, net in enumerate(self.nets) for name, value in net.state_dict().items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Reframer":
        """The regressor state_arrays() saved, in eval mode."""
        from index.pose_cnn import build_net

        nets = []
        for m in sorted({int(k.split(".")[1]) for k in arrays if k.startswith("reframe.")}):
            prefix = f"reframe.{m}."
            net = build_net(3)
            net.load_state_dict({k[len(prefix):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith(prefix)})
            nets.append(net.eval())
        return cls(nets)

    @staticmethod
    def error_between(transform: np.ndarray, true_transform: np.ndarray) -> np.ndarray:
        """(3,): how far the crop `transform` is off `true_transform` (both (2, 3), unit square → photo pixels):
        the centres' offset in the true crop's own axes and sides, and the log of the sides' ratio."""
        true_linear = true_transform[:, :2]
        centre = np.array([0.5, 0.5, 1.0])
        offset = np.linalg.solve(true_linear, transform @ centre - true_transform @ centre)
        scale = np.linalg.norm(transform[:, 0]) / np.linalg.norm(true_linear[:, 0])
        return np.array([offset[0], offset[1], np.log(scale)])

    @staticmethod
    def corrected(transform: np.ndarray, error: np.ndarray) -> np.ndarray:
        """The crop transform ((2, 3), unit square → photo pixels) with a read error undone: the true crop's
        side is this one's / exp(log-scale), its centre this one's less the offset in true sides."""
        scale = float(np.exp(error[2]))
        centre = transform @ np.array([0.5, 0.5, 1.0]) - transform[:, :2] @ np.asarray(error[:2]) / scale
        linear = transform[:, :2] / scale
        return np.column_stack([linear, centre - linear @ np.array([0.5, 0.5])])


def jittered_transform(truth: tuple[float, float, float, float], aspect: float, shift: np.ndarray,
                       scale: float) -> np.ndarray:
    """The (2, 3) unit-square transform of the pasted square `truth` moved by `shift` (its sides, right
    and down) and scaled by `scale` about its centre; `aspect` = crop height / width."""
    left, top, right, bottom = truth
    side = (right - left) * scale
    cx = (left + right) / 2 + shift[0] * (right - left)
    cy = (top + bottom) / 2 + shift[1] * (right - left)
    height = side * aspect
    return np.array([[side, 0.0, cx - side / 2], [0.0, height, cy - height / 2]])


def fit_reframer(faces: np.ndarray, size: tuple[int, int], config: ReframeConfig, copies: int,
                 seed: int, progress: bool = True) -> tuple["Reframer", dict]:
    """The reframing regressor, trained on `copies` crops of each face (n, h, w) uint8 pasted into a photo,
    each taken at a random error off the pasted square (ReframeConfig.draw), seeded."""
    aspect = faces.shape[1] / faces.shape[2]
    crops, errors = [], []
    for copy in range(copies):
        rng = np.random.default_rng([seed, copy])
        placed = scenes(faces, seed + 100 + copy)
        offsets, log_scales = config.draw(rng, len(placed))
        for scene, offset, log_scale in zip(tqdm(placed, desc=f"reframing crops {copy + 1}/{copies}", unit="photo",
                                                                 disable=not progress),
                                            offsets, log_scales):
            truth = jittered_transform(scene.truth, aspect, np.zeros(2), 1.0)
            moved = jittered_transform(scene.truth, aspect, offset, float(np.exp(log_scale)))
            crops.append(crop_square(scene.image, moved, size))
            errors.append(Reframer.error_between(moved, truth))
    errors = np.asarray(errors)
    t = time.perf_counter()
    reframer = Reframer.fit(np.stack(crops), errors[:, :2], errors[:, 2], config, progress)
    return reframer, {**asdict(config), "crops": len(crops), "faces": len(faces), "fit_seconds": round(time.perf_counter() - t, 1)}
