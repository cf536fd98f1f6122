"""A SynthPIE identity: random 3D head shape parameters, and the radius of the head they define.

Head coordinates: x to the subject's left as seen by the camera at yaw 0 (image right), y up,
z out of the face; the eye line is y = 0 and one unit is half a head's width (about 7.5 cm).
The head is star-shaped around the vertical axis: each horizontal slice at height y is a closed
curve r(θ, y), θ = atan2(x, z), so a yaw turn is a shift in θ and a slice is an image row.
r is a superellipse cranium and face, blended into a neck below the jaw line, plus smooth bumps
for brow ridge, eye sockets, eyeballs, nose, cheekbones, lips, chin and ears, plus hair volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

FACE_RADIUS = 1.05  # arc length per radian on the front of the face: u = FACE_RADIUS·θ
CRANIUM_CENTER = 0.25
EAR_THETA = np.pi / 2 + 0.12


def _p(mean: float, sd: float, lo: float, hi: float):
    return field(metadata={"mean": mean, "sd": sd, "lo": lo, "hi": hi})


@dataclass(frozen=True)
class HeadParams:
    """One identity: shape and albedo parameters (head units; tones are linear albedo 0..1)."""

    head_width: float = _p(1.0, 0.045, 0.85, 1.15)
    head_back: float = _p(1.3, 0.06, 1.1, 1.5)
    face_depth: float = _p(1.08, 0.04, 0.95, 1.2)
    crown: float = _p(1.55, 0.07, 1.35, 1.75)
    jaw_width: float = _p(0.9, 0.05, 0.75, 1.02)
    chin_y: float = _p(-1.42, 0.06, -1.6, -1.25)
    chin_width: float = _p(0.42, 0.06, 0.25, 0.58)
    chin_protrusion: float = _p(0.05, 0.03, -0.02, 0.14)
    cheekbone: float = _p(0.06, 0.025, 0.0, 0.13)
    cheek_fullness: float = _p(0.02, 0.03, -0.05, 0.1)
    brow_ridge: float = _p(0.07, 0.025, 0.0, 0.14)
    eye_spacing: float = _p(0.43, 0.025, 0.36, 0.5)
    eye_size: float = _p(0.19, 0.014, 0.15, 0.23)
    eye_open: float = _p(0.075, 0.012, 0.045, 0.1)
    eye_depth: float = _p(0.13, 0.03, 0.05, 0.2)
    iris_tone: float = _p(0.22, 0.1, 0.05, 0.55)
    nose_tip_y: float = _p(-0.55, 0.05, -0.7, -0.42)
    nose_protrusion: float = _p(0.3, 0.05, 0.18, 0.44)
    nose_width: float = _p(0.13, 0.022, 0.08, 0.2)
    nose_bridge_width: float = _p(0.075, 0.014, 0.045, 0.11)
    nose_ala: float = _p(0.2, 0.03, 0.13, 0.28)
    nose_shape: float = _p(1.3, 0.3, 0.7, 2.2)
    mouth_y: float = _p(-0.9, 0.045, -1.02, -0.78)
    mouth_width: float = _p(0.25, 0.03, 0.18, 0.34)
    lip_fullness: float = _p(0.045, 0.015, 0.01, 0.09)
    lip_tone: float = _p(0.78, 0.06, 0.6, 0.95)
    brow_y: float = _p(0.25, 0.03, 0.17, 0.33)
    brow_thickness: float = _p(0.07, 0.015, 0.04, 0.11)
    brow_darkness: float = _p(0.65, 0.15, 0.2, 1.0)
    brow_arch: float = _p(0.04, 0.025, -0.02, 0.1)
    skin_tone: float = _p(0.5, 0.1, 0.2, 0.8)
    hair_tone: float = _p(0.1, 0.08, 0.03, 0.6)
    hairline_y: float = _p(0.95, 0.12, 0.65, 1.35)
    hair_recession: float = _p(0.05, 0.1, -0.1, 0.35)
    hair_volume: float = _p(0.1, 0.05, 0.0, 0.25)
    sideburn_y: float = _p(-0.1, 0.12, -0.45, 0.2)
    hair_phase: float = _p(0.0, 1.5, -6.0, 6.0)
    beard: float = _p(-0.6, 0.6, 0.0, 1.0)
    ear_size: float = _p(1.0, 0.1, 0.75, 1.25)
    ear_protrusion: float = _p(0.14, 0.04, 0.05, 0.24)
    neck_width: float = _p(0.7, 0.04, 0.58, 0.82)
    skin_blotch: float = _p(0.0, 0.05, -0.12, 0.12)
    skin_blotch_phase: float = _p(0.0, 1.5, -6.0, 6.0)
    # Expression, sex and age: `sample_head` leaves these at 0 (the neutral face SynthPIE has always
    # rendered); `variety` sets them.
    mouth_curve: float = 0.0  # lift of the mouth corners (+ smile, − frown)
    mouth_open: float = 0.0  # gap between the lips
    teeth: float = 0.0  # 0..1: how much of the gap shows teeth
    brow_inner: float = 0.0  # lift of the brows' inner ends (+ worry, − frown)
    cheek_raise: float = 0.0  # cheeks pushed up by a smile
    nose_wrinkle: float = 0.0  # 0..1: creases over the nose bridge
    hair_length: float = 0.0  # 0 = short, 1 = falling to the shoulders
    wrinkles: float = 0.0  # 0..1: forehead lines, crow's feet, nasolabial folds
    skin_texture: float = 0.0  # amplitude of fine skin texture (pores, freckles)
    texture_seed: float = 0.0  # which texture pattern (an integer)


def mean_head() -> HeadParams:
    """The mean face: every parameter at its mean (identity_spread = 0)."""
    return sample_head(seed=0, index=0, spread=0.0)


def sample_head(seed: int, index: int, spread: float) -> HeadParams:
    """Identity `index`'s parameters; they depend only on (seed, index), so adding identities keeps earlier ones."""
    specs = [f.metadata for f in fields(HeadParams) if "sd" in f.metadata]
    z = np.random.default_rng([seed, index]).standard_normal(len(specs))
    values = [float(np.clip(s["mean"] + spread * s["sd"] * zi, s["lo"], s["hi"])) for s, zi in zip(specs, z)]
    return HeadParams(*values)


def _gauss(a: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (a / sigma) ** 2)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _superellipse(theta: np.ndarray, half_width: np.ndarray, front: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Radius of a slice: flat-fronted superellipse ahead (exponent 2.5), ellipse behind."""
    s, c = np.abs(np.sin(theta)), np.cos(theta)
    ahead = c >= 0
    depth = np.where(ahead, front, back)
    n = np.where(ahead, 2.5, 2.0)
    return (np.abs(s / half_width) ** n + np.abs(c / depth) ** n) ** (-1.0 / n)


def hairline(theta: np.ndarray, p: HeadParams) -> np.ndarray:
    """Height of the lower edge of the hair at each θ: forehead, temples, sideburns, over the ears, nape."""
    knots = np.array([0.0, 0.45, 0.8, 1.12, 1.3, 1.42, 1.85, 2.2, np.pi])
    drop = p.hair_length * np.array([0.0, 0.0, 0.0, 0.9, 1.3, 1.8, 1.8, 1.0, 1.0])  # long hair: sides and back
    level = np.array(
        [
            p.hairline_y,
            p.hairline_y + p.hair_recession,
            p.hairline_y + 0.5 * p.hair_recession - 0.15,
            p.sideburn_y,
            p.sideburn_y,
            0.18,
            0.12,
            -0.75,
            -0.85,
        ]
    )
    return np.interp(np.abs(theta), knots, level - drop)


def cranium_factor(y: np.ndarray, p: HeadParams) -> np.ndarray:
    """How much of the full skull width a slice keeps: 1 up to the cranium's center, 0 at the crown."""
    t = np.clip((y - CRANIUM_CENTER) / (p.crown - CRANIUM_CENTER), 0.0, 1.0)
    return np.sqrt(1.0 - t * t)


def base_radius(theta: np.ndarray, y: np.ndarray, p: HeadParams) -> np.ndarray:
    """Radius of the smooth head (skull, face mass and neck; no features, no hair) at broadcast (θ, y)."""
    f = cranium_factor(y, p)
    # Lower face: full width down to the cheeks, then the jaw tapers to the chin.
    jaw_angle = -1.0
    upper = _smoothstep(jaw_angle, -0.2, y)
    t = np.clip((jaw_angle - y) / (jaw_angle - p.chin_y), 0.0, 1.0)
    lower = p.chin_width + (p.jaw_width - p.chin_width) * np.sqrt(1.0 - t * t)
    width = np.where(y >= jaw_angle, p.jaw_width + (p.head_width - p.jaw_width) * upper, lower)
    width = np.maximum(width * f, 1e-3)
    front = np.maximum(p.face_depth * f**0.7, 1e-3)
    back = np.maximum(p.head_back * f**0.9 - 0.15 * _smoothstep(-0.2, -1.0, y), 1e-3)
    head = _superellipse(theta, width, front, back)
    # Neck: a circle behind the axis; the jaw line runs from the chin up to the jaw angle and nape.
    neck_center, neck_r = -0.18, p.neck_width
    s = np.sin(theta)
    neck = neck_center * np.cos(theta) + np.sqrt(np.maximum(neck_r**2 - (neck_center * s) ** 2, 0.0))
    a = np.abs(theta)
    jaw_line = p.chin_y + (jaw_angle - 0.05 - p.chin_y) * _smoothstep(0.0, 1.25, a) + 0.2 * _smoothstep(1.25, 2.0, a)
    softness = np.interp(np.abs(theta), [0.0, 1.2, 1.9, np.pi], [0.03, 0.04, 0.2, 0.25])
    blend = 1.0 / (1.0 + np.exp(-(y - jaw_line) / softness))
    below_crown = y < p.crown
    return np.where(below_crown, neck + np.maximum(head - neck, 0.0) * blend, 0.0)


def mouth_line_y(u: np.ndarray, p: HeadParams) -> np.ndarray:
    """Height of the line between the lips at arc position u: curved up by a smile, down by a frown."""
    return p.mouth_y + p.mouth_curve * np.clip(u / p.mouth_width, -1.4, 1.4) ** 2


def feature_relief(theta: np.ndarray, y: np.ndarray, p: HeadParams) -> np.ndarray:
    """Radial relief of the facial features and ears, added to the base radius: (R, T)."""
    theta, y = theta[None, :], y[:, None]
    u = FACE_RADIUS * theta
    au = np.abs(u)
    front = np.abs(theta) < 1.4
    relief = np.zeros(np.broadcast_shapes(u.shape, y.shape), dtype=np.float32)
    # Brows and eyes.
    relief += p.brow_ridge * _gauss(au - 0.38, 0.22) * _gauss(y - p.brow_y + 0.02, 0.07)
    relief += 0.6 * p.brow_ridge * _gauss(u, 0.1) * _gauss(y - p.brow_y + 0.04, 0.07)
    relief -= p.eye_depth * _gauss(au - p.eye_spacing, 0.19) * _gauss(y - 0.01, 0.13)
    relief += 0.55 * p.eye_depth * _gauss(au - p.eye_spacing, 0.11) * _gauss(y, 0.075)
    # Nose: a ridge from the nasion to the tip, widening, with a rounded lobule and alae.
    nasion, tip = 0.12, p.nose_tip_y
    t = np.clip((nasion - y) / (nasion - tip), 0.0, 1.0)
    profile = np.where(
        y > nasion,
        0.22 * p.nose_protrusion * _gauss(y - nasion, 0.09),
        np.where(y >= tip, p.nose_protrusion * (0.22 + 0.78 * t**p.nose_shape), p.nose_protrusion * _gauss(y - tip, 0.07)),
    )
    width = p.nose_bridge_width + (p.nose_width - p.nose_bridge_width) * t**2
    relief += profile * np.exp(-0.5 * (u / width) ** 2)
    relief += 0.28 * p.nose_protrusion * _gauss(au - 0.55 * p.nose_ala, 0.055) * _gauss(y - tip + 0.04, 0.06)
    # Cheeks.
    relief += p.cheekbone * _gauss(au - 0.62, 0.2) * _gauss(y + 0.32, 0.15)
    relief += p.cheek_fullness * _gauss(au - 0.6, 0.2) * _gauss(y - p.mouth_y - 0.1, 0.2)
    # Mouth: the muzzle, the two lips, the fold under the lower lip, and the chin.
    relief += 0.07 * _gauss(u, 0.33) * _gauss(y - p.mouth_y, 0.24)
    lip_w = p.mouth_width * 0.85
    mouth = mouth_line_y(u, p)
    gap = p.mouth_open / 2
    relief += p.lip_fullness * np.exp(-0.5 * (u / lip_w) ** 4) * _gauss(y - mouth - 0.045 - gap, 0.035)
    relief += 1.15 * p.lip_fullness * np.exp(-0.5 * (u / (0.9 * lip_w)) ** 4) * _gauss(y - mouth + 0.06 + gap, 0.04)
    if p.mouth_open > 0:
        relief -= 0.5 * p.mouth_open * np.exp(-0.5 * (u / lip_w) ** 4) * _gauss(y - mouth, 0.6 * gap + 0.01)
    relief += p.cheek_raise * _gauss(au - 0.55, 0.18) * _gauss(y + 0.42, 0.14)
    relief -= 0.025 * _gauss(u, 0.2) * _gauss(y - p.mouth_y + 0.19, 0.05)
    relief += p.chin_protrusion * _gauss(u, 0.22) * _gauss(y - p.chin_y - 0.2, 0.13)
    relief = np.where(front, relief, 0.0)
    # Ears: a flattened disc on each side with a hollow in the middle.
    ear_h, ear_w = 0.3 * p.ear_size, 0.13 * p.ear_size
    ear_y = -0.22
    for side in (-1.0, 1.0):
        du = (theta - side * EAR_THETA) * p.head_width
        rim = np.exp(-(((du / ear_w) ** 2 + ((y - ear_y) / ear_h) ** 2) ** 2))
        hollow = np.exp(-(((du / (0.55 * ear_w)) ** 2 + ((y - ear_y + 0.05) / (0.5 * ear_h)) ** 2) ** 2))
        relief += p.ear_protrusion * (rim - 0.4 * hollow)
    return relief


def hair_mask(theta: np.ndarray, y: np.ndarray, p: HeadParams, edge: float = 0.025) -> np.ndarray:
    """Soft 0..1 coverage of the scalp by hair at each (θ, y): (R, T)."""
    theta, y = theta[None, :], y[:, None]
    ragged = 0.012 * np.sin(37.0 * np.abs(theta) + p.hair_phase)
    return 1.0 / (1.0 + np.exp(-(y - hairline(theta, p) + ragged) / edge))


def head_radius(theta: np.ndarray, y: np.ndarray, p: HeadParams, base: np.ndarray | None = None) -> np.ndarray:
    """Radius of the full head (skull, neck, features, hair volume) on a (θ, y) grid: (R, T) float32.

    `base` may pass in `base_radius` on the same grid when the caller already has it.
    """
    if base is None:
        base = base_radius(theta[None, :], y[:, None], p)
    hair = hair_mask(theta, y, p, edge=0.06)
    volume_scale = np.interp(np.abs(theta), [0.0, 0.8, 1.2, 1.5, 2.0, np.pi], [1.0, 0.8, 0.25, 0.5, 1.0, 1.0])[None, :]
    radius = base + feature_relief(theta, y, p) + p.hair_volume * hair * volume_scale
    if p.hair_length > 0:  # long hair hangs straight down from the widest part of the head
        beside = _smoothstep(0.9, 1.3, np.abs(theta))[None, :] * _smoothstep(0.3, -0.1, y)[:, None]
        radius = radius + beside * hair * np.maximum(p.head_width + p.hair_volume - radius, 0.0)
    return np.where(base > 0, radius, 0.0).astype(np.float32)
