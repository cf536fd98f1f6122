"""Cast shadows of directional lights over a depth map, one running maximum per light ray.

A point p of the visible surface, height h(p) toward the camera, is shadowed from a light whose
ray rises k pixels of height per pixel stepped toward it in the image when some surface point q
ahead on that ray sticks up above it: h(q) - k·t(q) > h(p) - k·t(p) with t(q) > t(p), t the step
count toward the light. We march along whichever image axis the light's image-plane direction
follows most (columns or rows), shear the image so each ray is one row of a grid (linear
interpolation across the other axis), take the running maximum of g = h - k·t from the light's
end, and read it back one step ahead of each pixel from the two rays that bracket it, weighted by
distance (a two-tap antialiased shadow edge). The grid depends only on the light and the image
size, so it is built once per render and reused for every face and pose. The depth map counts
everything under the visible surface as solid, exact for the occluders that matter on a face
(nose, brows, jaw, hat brims) as they face the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FRONTAL = 1e-3  # lights this close to the view axis cast no visible shadow
EMPTY = -1e6  # height of "no surface": finite so interpolation stays finite


@dataclass(frozen=True)
class ShadowRays:
    """Precomputed shearing of one light's rays over an (H, W) image; grid is (rays, steps)."""

    k: float  # rise of the ray per march step
    steps: np.ndarray  # (H*W,) float32, each pixel's march step count toward the light
    low: np.ndarray  # (rays, steps) int64 pixel below each grid sample; H*W = outside
    high: np.ndarray  # (rays, steps) int64 pixel above each grid sample; H*W = outside
    frac: np.ndarray  # (steps,) float32 interpolation weight of `high`
    first: int  # first pixel (flat) that receives shadows: rows above only cast them
    ahead: np.ndarray  # (2, H*W - first) int64 grid cell one step toward the light on the two bracketing rays; rays*steps = beyond
    weight: np.ndarray  # (2, H*W - first) float32 weights of the two rays


def shadow_rays(direction: np.ndarray, height: int, width: int, first_row: int = 0) -> ShadowRays | None:
    """The sheared ray grid of a light `direction` (camera frame, unit) over an image; None if it casts none.

    Rows above `first_row` cast shadows but receive none (a margin rendered for its occluders).
    """
    x, y, z = (float(c) for c in direction)
    planar = np.hypot(x, y)
    if planar < _FRONTAL or z <= 0:
        return None
    d_col, d_row = x / planar, -y / planar  # toward the light, in image columns and rows
    by_columns = abs(d_col) >= abs(d_row)
    n_march, n_cross = (width, height) if by_columns else (height, width)
    lead, drift = (d_col, d_row) if by_columns else (d_row, d_col)
    drift /= abs(lead)  # cross-axis pixels per march step
    toward = 1 if lead > 0 else -1

    def flat(cross: np.ndarray, march: np.ndarray) -> np.ndarray:
        return cross * width + march if by_columns else march * width + cross

    j = np.arange(n_march)  # grid step: 0 = the far end, increasing toward the light
    march = j if toward > 0 else n_march - 1 - j
    shift = drift * j
    offset = np.floor(shift).astype(np.int64)
    frac = (shift - offset).astype(np.float32)
    first = int(np.floor(-shift.max())) - 1
    last = int(np.ceil(n_cross - 1 - shift.min())) + 1
    rays = np.arange(first, last + 1)[:, None]  # ray R passes cross = R + shift[j] at step j
    outside = height * width
    low_cross, high_cross = rays + offset[None, :], rays + offset[None, :] + 1
    low = np.where((low_cross >= 0) & (low_cross < n_cross), flat(low_cross, march[None, :]), outside)
    high = np.where((high_cross >= 0) & (high_cross < n_cross), flat(high_cross, march[None, :]), outside)

    rows, cols = np.divmod(np.arange(height * width), width)
    p_cross, p_march = (rows, cols) if by_columns else (cols, rows)
    p_step = p_march if toward > 0 else n_march - 1 - p_march
    upper_ray = p_cross - offset[p_step] - first  # ray passing at cross + frac (index into the grid)
    lower_ray = upper_ray - 1  # ray passing at cross - 1 + frac
    nxt = p_step + 1
    beyond = len(rays) * n_march
    ahead = np.stack(
        [
            np.where(nxt < n_march, lower_ray * n_march + np.minimum(nxt, n_march - 1), beyond),
            np.where(nxt < n_march, upper_ray * n_march + np.minimum(nxt, n_march - 1), beyond),
        ]
    )
    weight = np.stack([frac[p_step], 1.0 - frac[p_step]]).astype(np.float32)
    rise = z / planar * np.sqrt(1.0 + drift**2)
    first = first_row * width
    return ShadowRays(
        k=float(rise),
        steps=p_step.astype(np.float32),
        low=low,
        high=high,
        frac=frac,
        first=first,
        ahead=np.ascontiguousarray(ahead[:, first:]),
        weight=np.ascontiguousarray(weight[:, first:]),
    )


def cast_shadow(height_map: np.ndarray, rays: ShadowRays, bias: np.ndarray | float) -> np.ndarray:
    """How much each receiving pixel is shadowed from the light, 0..1: (B, H*W - first) float32.

    `height_map` (B, H*W) holds EMPTY where there is no surface. `bias` (pixels of height, per
    receiving pixel or one number) keeps a lit surface from shadowing itself through
    interpolation error.
    """
    batch = height_map.shape[0]
    padded = np.empty((batch, height_map.shape[1] + 1), np.float32)
    np.subtract(height_map, np.float32(rays.k) * rays.steps, out=padded[:, :-1])  # g = h - k·t
    padded[:, -1] = EMPTY
    grid = np.take(padded, rays.low, axis=1)
    grid *= 1.0 - rays.frac
    grid += np.take(padded, rays.high, axis=1) * rays.frac  # (B, rays, steps)
    suffix = np.empty((batch, grid.shape[1] * grid.shape[2] + 1), np.float32)
    np.maximum.accumulate(grid[:, :, ::-1], axis=2, out=suffix[:, :-1].reshape(grid.shape)[:, :, ::-1])
    suffix[:, -1] = EMPTY
    threshold = padded[:, rays.first : -1] + bias
    blocked = (np.take(suffix, rays.ahead[0], axis=1) > threshold) * rays.weight[0]
    blocked += (np.take(suffix, rays.ahead[1], axis=1) > threshold) * rays.weight[1]
    return blocked
