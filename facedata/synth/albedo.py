"""What a SynthPIE head looks like under white light: albedo and material over its surface.

Painted on the same (θ, y) grid as the head's radius (see `heads`): skin with a soft blotch
pattern, lips and mouth line, brows, eyes (sclera, iris, pupil, lash line), nostrils, an optional
beard shadow, and hair above the hairline with fine strands.
"""

from __future__ import annotations

import numpy as np

from facedata.synth.heads import FACE_RADIUS, HeadParams, hair_mask

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

    # Lips and the mouth line.
    lip_w = p.mouth_width
    taper = np.clip(1.0 - (u / lip_w) ** 2, 0.0, 1.0)  # lips thin out toward the corners
    bow = 0.012 * np.cos(np.clip(u / 0.06, -np.pi, np.pi))  # the upper lip's cupid's bow
    upper = _inside(np.abs(yy - p.mouth_y - 0.035 - bow * taper) - 0.035 * np.sqrt(taper), 0.008)
    lower = _inside(np.abs(yy - p.mouth_y + 0.05) - 0.045 * np.sqrt(taper), 0.01)
    lips = np.clip(upper + lower, 0.0, 1.0) * (taper > 0)
    albedo *= 1.0 - (1.0 - p.lip_tone) * lips
    mouth_line = np.exp(-0.5 * (u / (1.02 * lip_w)) ** 8) * _gauss2(yy - p.mouth_y, 0.011)
    albedo *= 1.0 - 0.8 * mouth_line

    # Nostrils, under the tip.
    for side in (-1.0, 1.0):
        nostril = _gauss2(u - side * 0.35 * p.nose_ala, 0.03) * _gauss2(yy - p.nose_tip_y + 0.07, 0.022)
        albedo *= 1.0 - 0.8 * nostril

    # Brows: an arched band above each eye, thinning toward the temple.
    span = np.clip((au - 0.12) / 0.55, 0.0, 1.0)
    brow_center = p.brow_y + p.brow_arch * np.sin(np.pi * np.clip(span * 1.2, 0.0, 1.0))
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

    # Hair above the hairline, with strands running down the head.
    hair = hair_mask(theta, y, p)
    strands = 1.0 + 0.25 * np.sin(90.0 * np.abs(th) + 4.0 * yy + p.hair_phase) * np.sin(23.0 * np.abs(th) - 2.0 * yy)
    albedo += (p.hair_tone * strands - albedo) * hair
    material = np.where(hair > 0.5, HAIR, material).astype(np.int8)

    return np.clip(albedo, 0.0, 1.0).astype(np.float32), material


def _gauss2(a: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (a / sigma) ** 2)
