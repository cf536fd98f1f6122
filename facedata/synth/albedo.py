"""What a SynthPIE head looks like under white light: albedo and material over its surface.

Painted on the same (θ, y) grid as the head's radius (see `heads`): skin with a soft blotch
pattern, lips and mouth line, brows, eyes (sclera, iris, pupil, lash line), nostrils, an optional
beard shadow, and hair above the hairline with fine strands.
"""

from __future__ import annotations

import numpy as np

from scipy.ndimage import gaussian_filter

from facedata.synth.heads import FACE_RADIUS, HeadParams, hair_mask, mouth_line_y

# Materials and their Blinn-Phong specular (strength, shininess).
SKIN, EYE, HAIR, FRAME, DARK_LENS, FABRIC = range(6)
SPECULAR = np.array(
    [
        [0.06, 14.0],  # skin
        [0.3, 80.0],  # eye: catches a highlight
        [0.05, 8.0],  # hair
        [0.3, 40.0],  # spectacle frame
        [0.6, 90.0],  # dark lens
        [0.0, 1.0],  # fabric
    ],
    dtype=np.float32,
)


def _inside(a: np.ndarray, edge: float) -> np.ndarray:
    """Soft step: 1 where a < 0, 0 where a > 0, blurred over `edge`."""
    return 1.0 / (1.0 + np.exp(np.clip(a / edge, -30.0, 30.0)))


def paint_head(theta: np.ndarray, y: np.ndarray, p: HeadParams) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (R, T) float32 in 0..1 and material (R, T) int8 of a head on a (θ, y) grid."""
    th, yy = theta[None, :], y[:, None]
    u = FACE_RADIUS * th
    au = np.abs(u)
    shape = np.broadcast_shapes(th.shape, yy.shape)
    material = np.full(shape, SKIN, dtype=np.int8)

    # Skin: tone, a faint low-frequency blotch pattern, slightly darker neck and ears.
    blotch = p.skin_blotch * np.sin(3.1 * th + p.skin_blotch_phase) * np.cos(2.3 * yy + 0.7 * p.skin_blotch_phase)
    skin = p.skin_tone * (1.0 + blotch) * (1.0 - 0.1 * _inside(yy - p.chin_y + 0.05, 0.08))
    albedo = np.broadcast_to(skin, shape).astype(np.float32).copy()

    # Beard shadow: jaw, chin and upper lip, for the identities that have one.
    if p.beard > 0:
        jaw = _inside(yy - (p.mouth_y + 0.13), 0.04) * _inside(np.abs(th) - 1.35, 0.06)
        albedo *= 1.0 - 0.6 * p.beard * jaw

    # Age: forehead lines, crow's feet and the folds from the nose to the mouth corners.
    if p.wrinkles > 0:
        forehead = _inside(au - 0.5, 0.1) * _inside(p.brow_y + 0.12 - yy, 0.03) * _inside(yy - p.hairline_y + 0.12, 0.03)
        lines = forehead * np.maximum(np.sin(55.0 * yy), 0.0) ** 4
        crows = _gauss2(au - p.eye_spacing - p.eye_size - 0.07, 0.04) * np.maximum(np.sin(70.0 * yy + 8.0 * au), 0.0) ** 4
        crows = crows * _gauss2(yy, 0.08)
        t = np.clip((p.nose_tip_y - yy) / (p.nose_tip_y - p.mouth_y), 0.0, 1.0)
        fold_u = 0.55 * p.nose_ala + t * (p.mouth_width + 0.06 - 0.55 * p.nose_ala)
        folds = _gauss2(au - fold_u, 0.018) * _inside(yy - p.nose_tip_y - 0.02, 0.02) * _inside(p.mouth_y - 0.06 - yy, 0.03)
        albedo *= 1.0 - p.wrinkles * (0.18 * lines + 0.2 * crows + 0.3 * folds)

    # Lips and the mouth line; an open mouth shows a dark cavity and, in a smile, teeth.
    lip_w = p.mouth_width
    mouth_y = mouth_line_y(u, p)
    gap = p.mouth_open / 2
    taper = np.clip(1.0 - (u / lip_w) ** 2, 0.0, 1.0)  # lips thin out toward the corners
    bow = 0.012 * np.cos(np.clip(u / 0.06, -np.pi, np.pi))  # the upper lip's cupid's bow
    upper = _inside(np.abs(yy - mouth_y - 0.035 - gap - bow * taper) - 0.035 * np.sqrt(taper), 0.008)
    lower = _inside(np.abs(yy - mouth_y + 0.05 + gap) - 0.045 * np.sqrt(taper), 0.01)
    lips = np.clip(upper + lower, 0.0, 1.0) * (taper > 0)
    albedo *= 1.0 - (1.0 - p.lip_tone) * lips
    mouth_line = np.exp(-0.5 * (u / (1.02 * lip_w)) ** 8) * _gauss2(yy - mouth_y, 0.011)
    albedo *= 1.0 - 0.8 * mouth_line
    if p.mouth_open > 0:
        cavity = _inside(np.abs(yy - mouth_y) - gap * np.sqrt(taper), 0.006) * (taper > 0)
        teeth = p.teeth * _inside(mouth_y + 0.3 * gap - yy, 0.006) * _inside(au - 0.8 * lip_w, 0.01)
        albedo += (0.05 + 0.65 * teeth - albedo) * cavity

    # Nostrils, under the tip.
    for side in (-1.0, 1.0):
        nostril = _gauss2(u - side * 0.35 * p.nose_ala, 0.03) * _gauss2(yy - p.nose_tip_y + 0.07, 0.022)
        albedo *= 1.0 - 0.8 * nostril

    # Brows: an arched band above each eye, thinning toward the temple.
    span = np.clip((au - 0.12) / 0.55, 0.0, 1.0)
    brow_center = p.brow_y + p.brow_arch * np.sin(np.pi * np.clip(span * 1.2, 0.0, 1.0)) + p.brow_inner * (1.0 - span) ** 2
    thickness = p.brow_thickness * (1.0 - 0.55 * span)
    brow = _inside(np.abs(yy - brow_center) - thickness / 2, 0.012) * _inside(au - 0.68, 0.03) * _inside(0.11 - au, 0.02)
    brow_tone = min(p.hair_tone, 0.25)
    albedo += (brow_tone - albedo) * (p.brow_darkness * brow)

    # Eyes: almond opening with sclera, iris and pupil; lash line along the upper lid.
    du = au - p.eye_spacing
    across = np.clip(1.0 - (du / p.eye_size) ** 2, 0.0, 1.0)
    upper, lower = p.eye_open * across**0.6, -0.75 * p.eye_open * across**0.8
    opening = _inside(yy - upper, 0.006) * _inside(lower - yy, 0.006) * (across > 0)
    iris_r = 0.48 * p.eye_size
    ring = np.hypot(du, yy - 0.004)
    eye = np.where(ring < 0.4 * iris_r, 0.03, np.where(ring < iris_r, p.iris_tone * (0.8 + 0.4 * ring / iris_r), 0.62))
    eye = eye * (1.0 - 0.25 * (np.abs(du) / p.eye_size) ** 2)
    albedo += (eye - albedo) * opening
    lash = _inside(np.abs(yy - upper - 0.008) - 0.012, 0.004) * (across > 0.02)
    albedo *= 1.0 - 0.85 * lash * (1.0 - opening)
    crease = _gauss2(yy - upper - 0.06, 0.015) * np.sqrt(across)
    albedo *= 1.0 - 0.15 * crease
    material = np.where(opening > 0.5, EYE, material).astype(np.int8)

    # Disgust wrinkles the nose bridge.
    if p.nose_wrinkle > 0:
        creases = _gauss2(u, 0.1) * _gauss2(yy - 0.02, 0.06) * np.maximum(np.sin(90.0 * yy), 0.0) ** 2
        albedo *= 1.0 - 0.35 * p.nose_wrinkle * creases

    # Fine skin texture: a smooth random field (pores, unevenness) and a few darker spots.
    if p.skin_texture > 0:
        albedo *= 1.0 + p.skin_texture * skin_field(shape, int(p.texture_seed))

    # Hair above the hairline, with strands running down the head.
    hair = hair_mask(theta, y, p)
    strands = 1.0 + 0.25 * np.sin(90.0 * np.abs(th) + 4.0 * yy + p.hair_phase) * np.sin(23.0 * np.abs(th) - 2.0 * yy)
    albedo += (p.hair_tone * strands - albedo) * hair
    material = np.where(hair > 0.5, HAIR, material).astype(np.int8)

    return np.clip(albedo, 0.0, 1.0).astype(np.float32), material


def skin_field(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Relative albedo change of textured skin on the (θ, y) grid: zero-mean, about ±0.1 at texture 1."""
    rng = np.random.default_rng([seed, 77])
    fine = gaussian_filter(rng.standard_normal(shape), 3.0)
    coarse = gaussian_filter(rng.standard_normal(shape), 8.0)
    field = 0.04 * fine / (fine.std() + 1e-9) + 0.06 * coarse / (coarse.std() + 1e-9)
    spots = gaussian_filter((rng.random(shape) < 0.0015).astype(np.float64), 1.2)
    field -= 0.5 * spots / (spots.max() + 1e-9)
    return field.astype(np.float32)


def _gauss2(a: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (a / sigma) ** 2)
