"""What makes SynthPIE faces more like photos: expressions, sex and age, and per-photo nuisances.

Everything here is drawn from its own random stream keyed by (seed, identity, ...), apart from the
identity's shape (`heads.sample_head`), so switching variety on changes no head's shape parameters
and every knob at 0 renders the images SynthPIE always rendered.

- Expressions (a factor, like the pose) move the mouth, brows, eyes and cheeks of one head.
- Sex and age (per identity) shift jaw, brow ridge, nose, lips, hair length and beard, and add
  wrinkles and grey hair.
- Per session (identity × expression, like a photo session): the backdrop (a gray level, a gradient
  and soft blotches) and the exposure. Per photo: an in-plane head tilt and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import rotate

from facedata.synth.heads import HeadParams

# Expression name → changes to a neutral head: added (+) or scaled (×, for the `*_scale` keys).
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"mouth_curve": 0.06, "mouth_open": 0.05, "teeth": 1.0, "cheek_raise": 0.04, "eye_open_scale": 0.75,
              "mouth_width_scale": 1.15},
    "surprised": {"mouth_open": 0.16, "teeth": 0.15, "eye_open_scale": 1.45, "brow_y": 0.08, "mouth_width_scale": 0.85},
    "angry": {"brow_y": -0.04, "brow_inner": -0.06, "eye_open_scale": 0.85, "mouth_curve": -0.01,
              "lip_fullness_scale": 0.7},
    "sad": {"brow_inner": 0.05, "mouth_curve": -0.035, "eye_open_scale": 0.85},
    "disgusted": {"nose_wrinkle": 1.0, "mouth_curve": -0.02, "brow_inner": -0.03, "eye_open_scale": 0.7,
                  "mouth_open": 0.02, "brow_y": -0.02},
    "afraid": {"brow_y": 0.06, "brow_inner": 0.04, "eye_open_scale": 1.35, "mouth_open": 0.06, "mouth_width_scale": 1.1},
}

BACKDROP_LEVELS = (0.2, 0.8)  # display gray of a session's backdrop, uniform in this range


def express(p: HeadParams, expression: str) -> HeadParams:
    """The head `p` making `expression` (a key of EXPRESSIONS)."""
    changes = {}
    for key, value in EXPRESSIONS[expression].items():
        if key.endswith("_scale"):
            name = key[: -len("_scale")]
            changes[name] = getattr(p, name) * value
        else:
            changes[key] = getattr(p, key) + value
    return replace(p, **changes) if changes else p


@dataclass(frozen=True)
class Person:
    """An identity's sex (+1 male, −1 female) and age (0 = young adult, 1 = old)."""

    sex: int
    age: float


def draw_person(seed: int, index: int) -> Person:
    rng = np.random.default_rng([seed, index, 1009])
    return Person(sex=1 if rng.random() < 0.5 else -1, age=float(rng.random()))


def with_sex_and_age(p: HeadParams, person: Person, seed: int, index: int) -> HeadParams:
    """`p` made male or female and aged: the shape differences that show at 32 px, and hair and skin."""
    rng = np.random.default_rng([seed, index, 1013])
    s, a = person.sex, person.age
    changes = {
        "jaw_width": p.jaw_width + 0.04 * s,
        "chin_width": p.chin_width + 0.045 * s,
        "brow_ridge": max(p.brow_ridge + 0.028 * s, 0.0),
        "nose_protrusion": p.nose_protrusion + 0.03 * s,
        "nose_width": p.nose_width + 0.012 * s,
        "lip_fullness": max(p.lip_fullness - 0.012 * s, 0.005) * (1.0 - 0.4 * a),
        "brow_y": p.brow_y - 0.025 * s,
        "brow_thickness": p.brow_thickness + 0.012 * s,
        "eye_size": p.eye_size - 0.008 * s,
        "eye_open": p.eye_open * (1.0 - 0.2 * a),
        "cheek_fullness": p.cheek_fullness - 0.02 * a,
        "wrinkles": float(np.clip((a - 0.3) * 1.6, 0.0, 1.0)),
    }
    if s < 0:
        changes |= {"beard": 0.0, "hair_recession": min(p.hair_recession, 0.05),
                    "hair_length": float(rng.uniform(0.3, 1.0)), "hair_volume": p.hair_volume + 0.1}
    else:
        changes |= {"hair_recession": p.hair_recession + 0.3 * a, "hair_length": float(rng.uniform(0.0, 0.3)) ** 2}
    if a > 0.7:  # greying
        grey = (a - 0.7) / 0.3
        changes["hair_tone"] = p.hair_tone + (0.35 - p.hair_tone) * grey
    return replace(p, **changes)


def with_skin_texture(p: HeadParams, amplitude: float, seed: int, index: int) -> HeadParams:
    rng = np.random.default_rng([seed, index, 1019])
    return replace(p, skin_texture=amplitude * float(rng.uniform(0.5, 1.5)), texture_seed=float(seed * 100003 + index))


@dataclass(frozen=True)
class Session:
    """What stays fixed over one identity × expression's photos: the backdrop and the exposure."""

    backdrop: np.ndarray | None  # (H, W) display gray 0..1 of the backdrop, or None for the config's flat gray
    gain: float  # exposure: the display intensities' scale


def draw_session(rng: np.random.Generator, height: int, width: int, varied_backdrop: bool, exposure: float) -> Session:
    backdrop = _backdrop(rng, height, width) if varied_backdrop else None
    gain = float(np.exp(exposure * rng.standard_normal())) if exposure > 0 else 1.0
    return Session(backdrop, gain)


def _backdrop(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A backdrop in display gray 0..1: a level, a linear gradient and a few soft blotches."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height - 0.5, xx / width - 0.5
    level = rng.uniform(*BACKDROP_LEVELS)
    angle = rng.uniform(0, 2 * np.pi)
    display = level + rng.uniform(-0.2, 0.2) * (np.cos(angle) * xx + np.sin(angle) * yy)
    for _ in range(rng.integers(0, 4)):
        cy, cx = rng.uniform(-0.6, 0.6, size=2)
        radius = rng.uniform(0.1, 0.4)
        display = display + rng.uniform(-0.15, 0.15) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    return np.clip(display, 0.0, 1.0).astype(np.float32)


def tilt_images(display: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate each (H, W) image of `display` (..., H, W) by its angle in degrees (counter-clockwise) about its centre."""
    out = np.empty_like(display)
    flat, flat_out = display.reshape(-1, *display.shape[-2:]), out.reshape(-1, *display.shape[-2:])
    for i, angle in enumerate(angles.reshape(-1)):
        flat_out[i] = rotate(flat[i], float(angle), reshape=False, order=1, mode="nearest") if angle else flat[i]
    return out


def expose_and_add_noise(images: np.ndarray, gain: float, noise_sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (..., H, W) scaled by `gain` with Gaussian sensor noise of per-image sd `noise_sd` (gray levels)."""
    out = images.astype(np.float32) * gain
    if noise_sd.any():
        out += rng.standard_normal(images.shape).astype(np.float32) * noise_sd.reshape(*noise_sd.shape, 1, 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
