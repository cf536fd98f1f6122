"""A large synthetic gallery around a real one: real vectors at seeded places among synthetic distractors.

Nothing large is kept in memory: the gallery is a stream of fixed-size blocks, each made on demand
from the real vectors and a seed, so the same block comes out identical however the stream is read.
A distractor is a random mix of two real faces of different identities kept in the same value
(pose), plus Gaussian noise, re-normalized: a face-like vector of no identity in the gallery, which
every query must count as a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from facedata.errors import UserError
from index.features import l2_normalize


@dataclass(frozen=True)
class DistractorConfig:
    """How distractors are made from the real vectors; saved with every result."""

    mix_low: float = 0.3  # weight of the first face, drawn uniformly in [mix_low, mix_high]
    mix_high: float = 0.7
    noise: float = 0.02  # L2 norm of the Gaussian noise added to the (unit-scale) mix, before re-normalizing
    block: int = 2048  # stream rows per block: with the seed, it fixes every distractor


@dataclass(frozen=True)
class StreamLayout:
    """Where the real faces sit in a gallery of `total` rows: real_at[row] = real face, -1 = distractor."""

    real_at: np.ndarray  # (total,) int64

    @property
    def total(self) -> int:
        return len(self.real_at)

    @classmethod
    def place(cls, real_count: int, total: int, seed: int) -> "StreamLayout":
        """The `real_count` real faces in a random order at random rows (seeded) of a `total`-row gallery."""
        if not 1 <= real_count <= total:
            raise UserError(f"--total {total}: must hold the {real_count} real faces (use --total ≥ {real_count})")
        rng = np.random.default_rng([seed, 0])
        real_at = np.full(total, -1, dtype=np.int64)
        real_at[rng.choice(total, size=real_count, replace=False)] = rng.permutation(real_count)
        return cls(real_at)

    def distractor_count(self) -> int:
        return int(np.sum(self.real_at < 0))

    def real_rows(self, ranked: np.ndarray) -> np.ndarray:
        """Ranked gallery rows (q, k) as real face numbers, -1 for a distractor or a missing item."""
        ranked = np.asarray(ranked, dtype=np.int64)
        return np.where(ranked >= 0, self.real_at[np.maximum(ranked, 0)], -1)


def partner_faces(first: np.ndarray, identities: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each real face in `first`, another real face of the same group (kept value) and a different identity."""
    second = np.empty_like(first)
    for group in np.unique(groups[first]):
        members = np.flatnonzero(groups == group)
        wanted = np.flatnonzero(groups[first] == group)
        if len(np.unique(identities[members])) < 2:
            raise UserError(f"kept value '{group}' holds a single identity: no distractor can mix two")
        picks = members[rng.integers(0, len(members), size=len(wanted))]
        same = identities[picks] == identities[first[wanted]]
        while same.any():  # redraw the few that fell on the same identity
            picks[same] = members[rng.integers(0, len(members), size=int(same.sum()))]
            same = identities[picks] == identities[first[wanted]]
        second[wanted] = picks
    return second


def make_distractors(real: np.ndarray, identities: np.ndarray, groups: np.ndarray, count: int,
                     rng: np.random.Generator, config: DistractorConfig) -> tuple[np.ndarray, np.ndarray]:
    """`count` distractors (count, d) float32, unit-norm, and the two real faces each mixes (count, 2)."""
    assert real.ndim == 2 and identities.shape == groups.shape == (len(real),), (real.shape, identities.shape, groups.shape)
    first = rng.integers(0, len(real), size=count)
    second = partner_faces(first, identities, groups, rng)
    weight = rng.uniform(config.mix_low, config.mix_high, size=(count, 1)).astype(np.float32)
    mixed = real[first] * weight
    mixed += real[second] * (1 - weight)
    noise = rng.standard_normal(mixed.shape, dtype=np.float32)
    noise *= np.float32(config.noise / np.sqrt(real.shape[1]))
    mixed += noise
    return l2_normalize(mixed), np.stack([first, second], axis=1)


@dataclass(frozen=True)
class SyntheticGallery:
    """The real vectors placed in a stream of distractors; every block made on demand, the same each time."""

    real: np.ndarray  # (n, d) float32 unit-norm real gallery vectors
    identities: np.ndarray  # (n,) identity of each real face
    groups: np.ndarray  # (n,) kept value of each real face: distractors mix faces of one value
    layout: StreamLayout
    seed: int
    config: DistractorConfig = DistractorConfig()

    @property
    def dimension(self) -> int:
        return self.real.shape[1]

    @property
    def blocks(self) -> int:
        return -(-self.layout.total // self.config.block)

    def block(self, b: int) -> np.ndarray:
        """Stream rows [b·block, (b+1)·block) as (m, d) float32: real vectors in place, distractors around them."""
        start = b * self.config.block
        real_at = self.layout.real_at[start : start + self.config.block]
        out = np.empty((len(real_at), self.dimension), dtype=np.float32)
        is_real = real_at >= 0
        out[is_real] = self.real[real_at[is_real]]
        if not is_real.all():
            rng = np.random.default_rng([self.seed, 1, b])
            out[~is_real] = make_distractors(self.real, self.identities, self.groups, int((~is_real).sum()), rng, self.config)[0]
        return out

    def iter_blocks(self, first: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block vectors) for every block from `first` on."""
        for b in range(first, self.blocks):
            yield b * self.config.block, self.block(b)

    def head(self, count: int) -> np.ndarray:
        """The first `count` stream rows (count, d): a random sample of the gallery, as the real rows are placed at random."""
        count = min(count, self.layout.total)
        parts, held = [], 0
        for _, vectors in self.iter_blocks():
            parts.append(vectors[: count - held])
            held += len(parts[-1])
            if held >= count:
                break
        return np.concatenate(parts)
