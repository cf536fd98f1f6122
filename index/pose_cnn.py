"""A small convolutional pose classifier: the pose estimate for real photos, where pixels fail.

On cmu_faces (head and shoulders against clutter, 14 training people) a linear model on the pixels
names the pose of 74 % of unseen faces; the background and the person decide more of the pixels than
the head's turn does. Four 3×3 conv blocks with global pooling, trained with shifts, scaling, light
changes and left-right flips (a flipped face carries the mirrored pose), see where the head points
instead. A few members with different seeds are averaged, each on the image and its mirror.

The weights are plain arrays (`state_arrays` / `from_arrays`), so the classifier is saved with
safetensors like the logistic regression, and predicts in eval mode: the same answer every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from facedata.faceset import mirror_value

WIDTHS = (16, 32, 64, 64)


@dataclass(frozen=True)
class PoseCNNConfig:
    """Training budget and augmentation of each member; `members` seeds are averaged."""

    members: int = 3
    steps: int = 1200  # optimizer steps per member (batches of `batch_size`)
    batch_size: int = 32
    lr: float = 3e-3  # peak of a one-cycle schedule
    weight_decay: float = 1e-3
    shift: float = 0.1  # random translation, in half-widths of the image
    scale: float = 0.1  # random zoom, ± this share
    seed: int = 0


def build_net(classes: int) -> nn.Sequential:
    """Conv-BN-ReLU blocks (3 of them pooled 2×), global average pooling, dropout, a linear head."""
    layers: list[nn.Module] = []
    width_in = 1
    for i, width in enumerate(WIDTHS):
        layers += [nn.Conv2d(width_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.MaxPool2d(2) if i < len(WIDTHS) - 1 else nn.AdaptiveAvgPool2d(1))
        width_in = width
    layers += [nn.Flatten(), nn.Dropout(0.3), nn.Linear(width_in, classes)]
    return nn.Sequential(*layers)


def standardized_batch(images: np.ndarray) -> torch.Tensor:
    """(n, H, W) uint8 → (n, 1, H, W) float32, each image zero-mean and unit-variance."""
    x = torch.from_numpy(np.array(images, dtype=np.float32))[:, None]  # a copy: the images may be a read-only memory map
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)


def mirror_map(classes: tuple[str, ...]) -> np.ndarray | None:
    """Position of each class's mirror image ((C,) int64), or None when one has no mirror among them."""
    lookup = {c: i for i, c in enumerate(classes)}
    twins = [lookup.get(mirror_value(c)) for c in classes]
    return None if any(t is None for t in twins) else np.asarray(twins, dtype=np.int64)


def augment(x: torch.Tensor, y: torch.Tensor, mirror: torch.Tensor | None, config: PoseCNNConfig,
            rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips (labels mirrored), shifts, zooms and light changes of a standardized batch."""
    n = len(x)
    if mirror is not None:
        flip = torch.rand(n, generator=rng) < 0.5
        x, y = x.clone(), y.clone()
        x[flip], y[flip] = x[flip].flip(3), mirror[y[flip]]
    zoom = 1 + config.scale * (2 * torch.rand(n, generator=rng) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = zoom, zoom
    theta[:, :, 2] = config.shift * (2 * torch.rand(n, 2, generator=rng) - 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain = 1 + 0.2 * (torch.rand(n, 1, 1, 1, generator=rng) - 0.5)
    return x * gain + 0.2 * (torch.rand(n, 1, 1, 1, generator=rng) - 0.5), y


def train_net(outputs: int, steps: int, lr: float, weight_decay: float, seed: int,
              step_loss: Callable[[nn.Sequential], torch.Tensor],
              on_step: Callable[[], object] = lambda: None) -> nn.Sequential:
    """build_net(outputs) initialized from `seed`, trained `steps` AdamW steps on a one-cycle schedule peaking
    at `lr`, each on the loss step_loss(net) gives; the global torch RNG is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_net(outputs)
        optimizer = torch.optim.AdamW(net.parameters(), lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
        net.train()
        for _ in range(steps):
            loss = step_loss(net)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            on_step()
    return net.eval()


def shuffled_batches(count: int, batch_size: int, rng: torch.Generator):
    """Endless batches of positions < count, walking a permutation and drawing a new one when the next
    batch would run past its end."""
    order, at = torch.randperm(count, generator=rng), 0
    while True:
        if at + batch_size > len(order):
            order, at = torch.randperm(count, generator=rng), 0
        yield order[at : at + batch_size]
        at += batch_size


def train_member(x: torch.Tensor, y: torch.Tensor, classes: int, mirror: torch.Tensor | None,
                 config: PoseCNNConfig, seed: int, on_step: Callable[[], object] = lambda: None) -> nn.Sequential:
    """One member trained from its own seed; the global torch RNG is left as it was."""
    rng = torch.Generator().manual_seed(seed)
    batches = shuffled_batches(len(x), config.batch_size, rng)  # drawn from rng at the first step, after the init

    def step_loss(net: nn.Sequential) -> torch.Tensor:
        batch = next(batches)
        inputs, labels = augment(x[batch], y[batch], mirror, config, rng)
        return F.cross_entropy(net(inputs), labels, label_smoothing=0.1)

    return train_net(classes, config.steps, config.lr, config.weight_decay, seed, step_loss, on_step)


class PoseCNN:
    """Members trained by `fit`, or rebuilt from their arrays; `probabilities` averages them."""

    def __init__(self, nets: list[nn.Sequential], classes: tuple[str, ...]):
        self.nets, self.classes = nets, classes
        twins = mirror_map(classes)
        self.mirror = torch.as_tensor(twins) if twins is not None else None  # class of each class's mirror image

    @classmethod
    def fit(cls, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...],
            config: PoseCNNConfig = PoseCNNConfig(), progress: bool = True) -> "PoseCNN":
        lookup = {c: i for i, c in enumerate(classes)}
        x = standardized_batch(images)
        y = torch.as_tensor([lookup[v] for v in labels], dtype=torch.int64)
        untrained = cls([], classes)
        with tqdm(total=config.members * config.steps, desc="pose classifier (cnn)", unit="step",
                  disable=not progress) as bar:
            untrained.nets = [train_member(x, y, len(classes), untrained.mirror, config, config.seed + m,
                                           on_step=lambda: bar.update(1)) for m in range(config.members)]
        return untrained

    @torch.no_grad()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(n, C) float32: the members' softmax, averaged, each also on the mirrored image when poses mirror."""
        x = standardized_batch(images)
        total = torch.zeros(len(x), len(self.classes))
        for net in self.nets:
            total += net(x).softmax(1)
            if self.mirror is not None:
                total += net(x.flip(3)).softmax(1)[:, self.mirror]
        return (total / total.sum(1, keepdim=True)).numpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every member's weights and batch-norm statistics as float32 arrays, keyed `cnn.<member>.<name>`."""
        return {f"cnn.{m}.{name}": value.detach().cpu().numpy().astype(np.float32)
                for m, net in enumerate(self.nets) for name, value in net.state_dict().items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], classes: tuple[str, ...]) -> "PoseCNN":
        members = sorted({int(k.split(".")[1]) for k in arrays if k.startswith("cnn.")})
        nets = []
        for m in members:
            net = build_net(len(classes))
            prefix = f"cnn.{m}."
            state = {k[len(prefix):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith(prefix)}
            reference = net.state_dict()
            state = {k: v.to(reference[k].dtype) for k, v in state.items()}  # batch counters are int64
            net.load_state_dict(state)
            nets.append(net.eval())
        return cls(nets, classes)
