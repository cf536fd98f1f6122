"""Surfaces as dense point samples with normals, albedo and material: what the renderer splats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Surface:
    """Points of a surface in head coordinates, sampled densely enough to splat without holes.

    `two_sided` surfaces (hat brims, spectacle parts) show whichever side faces the camera;
    closed ones (the head) drop points facing away. A `transmittance` below 1 makes a clear or
    tinted lens, composited over whatever lies behind it instead of hiding it.
    """

    points: np.ndarray  # (M, 3) float32
    normals: np.ndarray  # (M, 3) float32, unit
    albedo: np.ndarray  # (M,) float32
    material: np.ndarray  # (M,) int8
    two_sided: bool = False
    transmittance: float = 0.0

    def __post_init__(self) -> None:
        m = len(self.points)
        assert self.points.shape == (m, 3) and self.normals.shape == (m, 3), (self.points.shape, self.normals.shape)
        assert self.albedo.shape == (m,) and self.material.shape == (m,), (self.albedo.shape, self.material.shape)


def unit(v: np.ndarray) -> np.ndarray:
    """Vectors scaled to unit length along the last axis (zero vectors stay zero)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)


def sheet_normals(points: np.ndarray) -> np.ndarray:
    """Unit normals of a surface sampled on a regular (A, B) parameter grid: (A, B, 3)."""
    da = np.gradient(points, axis=0)
    db = np.gradient(points, axis=1)
    return unit(np.cross(da, db))


def revolved_surface(
    theta: np.ndarray, y: np.ndarray, radius: np.ndarray, albedo: np.ndarray, material: np.ndarray, step: float
) -> Surface:
    """The closed surface r(θ, y) of a head or hat sampled on its (θ, y) grid, outward normals.

    θ (T,) is evenly spaced, around the whole circle or an arc of it; y (R,) runs down the rows;
    radius (R, T) ≤ 0 marks rows with no surface. Where neighbouring samples of a row lie more
    than 1.5 `step` apart (a steep slope, or the step where a hat's edge meets the face) extra
    samples fill the gap, facing across it.
    """
    wrap = bool(np.isclose(len(theta) * (theta[1] - theta[0]), 2 * np.pi, rtol=1e-4))
    sin, cos = np.sin(theta)[None, :], np.cos(theta)[None, :]
    x, z = radius * sin, radius * cos  # (R, T)
    rows = np.broadcast_to(y[:, None], radius.shape)
    points = np.stack([x, rows, z], axis=-1).astype(np.float32)  # (R, T, 3)
    # Normal = (-∂P/∂y) × ∂P/∂θ by central differences; rows run down, ∂y/∂θ = 0.
    if wrap:
        x_t, z_t = np.roll(x, -1, axis=1) - np.roll(x, 1, axis=1), np.roll(z, -1, axis=1) - np.roll(z, 1, axis=1)
    else:
        x_t, z_t = np.gradient(x, axis=1), np.gradient(z, axis=1)
    x_d, z_d = np.gradient(x, axis=0), np.gradient(z, axis=0)
    y_d = np.gradient(y)[:, None] if len(y) > 1 else np.full((1, 1), -1.0, np.float32)
    normals = np.stack([y_d * z_t, z_d * x_t - x_d * z_t, -y_d * x_t], axis=-1)
    normals /= np.maximum(np.sqrt(np.sum(normals * normals, axis=-1, keepdims=True)), 1e-12)
    albedo = np.broadcast_to(np.asarray(albedo, dtype=np.float32), radius.shape)
    material = np.broadcast_to(np.asarray(material, dtype=np.int8), radius.shape)
    keep = radius > 1e-3
    fill = _fill_gaps(theta, points, normals, albedo, material, keep, step, wrap)
    idx = np.flatnonzero(keep)  # np.take on flat indices: far faster than a 2-D boolean mask
    return Surface(
        points=np.concatenate([np.take(points.reshape(-1, 3), idx, axis=0), fill.points]),
        normals=np.concatenate([np.take(normals.reshape(-1, 3), idx, axis=0).astype(np.float32), fill.normals]),
        albedo=np.concatenate([np.take(albedo, idx), fill.albedo]),
        material=np.concatenate([np.take(material, idx), fill.material]),
    )


def _fill_gaps(
    theta: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    albedo: np.ndarray,
    material: np.ndarray,
    keep: np.ndarray,
    step: float,
    wrap: bool,
) -> Surface:
    """Samples along the segments between row neighbours (j, j+1) that lie too far apart."""
    step_x = np.roll(points[..., 0], -1, axis=1) - points[..., 0]
    step_z = np.roll(points[..., 2], -1, axis=1) - points[..., 2]
    gap = np.sqrt(step_x * step_x + step_z * step_z)  # (R, T): rows are level, y does not change
    wide = (gap > 1.5 * step) & keep & np.roll(keep, -1, axis=1)
    if not wrap:
        wide[:, -1] = False  # the arc's last sample has no neighbour after it
    r_idx, t_idx = np.nonzero(wide)
    counts = np.ceil(gap[r_idx, t_idx] / step).astype(np.int64) - 1
    total = int(counts.sum())
    if total == 0:
        empty = np.zeros((0, 3), np.float32)
        return Surface(empty, empty, np.zeros(0, np.float32), np.zeros(0, np.int8))
    rr, tt = np.repeat(r_idx, counts), np.repeat(t_idx, counts)
    tn = (tt + 1) % points.shape[1]
    rank = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    frac = ((rank + 1) / np.repeat(counts + 1, counts)).astype(np.float32)[:, None]
    a, b = points[rr, tt], points[rr, tn]
    filled = a + frac * (b - a)
    # Normal: across the segment in the horizontal plane, facing out and toward the lower side.
    seg = b - a
    across = np.stack([seg[:, 2], np.zeros(total, np.float32), -seg[:, 0]], axis=-1)
    mid = 0.5 * (theta[tt] + theta[np.where(tn == 0, tt, tn)])
    radial = np.stack([np.sin(mid), np.zeros(total), np.cos(mid)], axis=-1)
    tangent = np.stack([np.cos(mid), np.zeros(total), -np.sin(mid)], axis=-1)
    lower = np.sign(np.linalg.norm(a[:, [0, 2]], axis=-1) - np.linalg.norm(b[:, [0, 2]], axis=-1))[:, None]
    facing = radial + lower * tangent
    across = np.where((np.sum(across * facing, axis=-1) < 0)[:, None], -across, across)
    lean = normals[rr, tt, 1] * (1 - frac[:, 0]) + normals[rr, tn, 1] * frac[:, 0]
    normal = unit(unit(across) + np.stack([np.zeros(total), lean, np.zeros(total)], axis=-1))
    near_a = frac[:, 0] < 0.5
    return Surface(
        points=filled.astype(np.float32),
        normals=normal.astype(np.float32),
        albedo=np.where(near_a, albedo[rr, tt], albedo[rr, tn]).astype(np.float32),
        material=np.where(near_a, material[rr, tt], material[rr, tn]).astype(np.int8),
    )


def sheet_surface(points: np.ndarray, albedo: float, material: int, keep: np.ndarray | None = None, transmittance: float = 0.0) -> Surface:
    """A two-sided sheet sampled on a regular (A, B) grid, optionally only where `keep` (A, B) holds."""
    normals = sheet_normals(points)
    mask = np.ones(points.shape[:2], bool) if keep is None else keep
    count = int(mask.sum())
    return Surface(
        points=points[mask].astype(np.float32),
        normals=normals[mask].astype(np.float32),
        albedo=np.full(count, albedo, np.float32),
        material=np.full(count, material, np.int8),
        two_sided=True,
        transmittance=transmittance,
    )


def concat_surfaces(parts: list[Surface]) -> Surface:
    """One surface holding several with the same sidedness and transmittance."""
    first = parts[0]
    assert all(p.two_sided == first.two_sided and p.transmittance == first.transmittance for p in parts)
    return Surface(
        points=np.concatenate([p.points for p in parts]),
        normals=np.concatenate([p.normals for p in parts]),
        albedo=np.concatenate([p.albedo for p in parts]),
        material=np.concatenate([p.material for p in parts]),
        two_sided=first.two_sided,
        transmittance=first.transmittance,
    )
