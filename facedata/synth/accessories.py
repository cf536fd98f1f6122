"""SynthPIE's accessories in 3D, worn on the head so they turn and cast shadows with it.

Seven classes like CAS-PEAL-R1's A0–A6: none; three spectacles (thin-rimmed clear glasses,
thick-rimmed tinted glasses, sunglasses with opaque dark lenses) built as frames, bridge and
temples in front of the eyes; three hats (a cap with a visor, a brimmed hat, a ribbed beanie)
built as a shell over the skull that hides the hairline, plus their brims as two-sided sheets.
Every identity wears the same accessory the same way: only its head decides where it sits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facedata.synth.albedo import DARK_LENS, FABRIC, FRAME
from facedata.synth.heads import CRANIUM_CENTER, FACE_RADIUS, HeadParams, base_radius, head_radius
from facedata.synth.surface import Surface, concat_surfaces, sheet_surface

HATS = ("cap", "brimmed_hat", "beanie")
GLASSES = ("glasses", "tinted_glasses", "sunglasses")


@dataclass(frozen=True)
class Spectacles:
    """One kind of spectacles: lens half-size and roundness, rim width, tones, lens transmittance."""

    half_width: float
    half_height: float
    roundness: float  # superellipse exponent of the lens outline: 2 = ellipse, larger = squarer
    rim: float
    frame_tone: float
    transmittance: float  # 0 = opaque dark lens
    lens_tone: float = 0.04


SPECTACLES = {
    "glasses": Spectacles(0.26, 0.17, 2.6, 0.022, 0.12, 0.92),
    "tinted_glasses": Spectacles(0.26, 0.15, 4.5, 0.05, 0.05, 0.5),
    "sunglasses": Spectacles(0.29, 0.2, 2.3, 0.03, 0.04, 0.0),
}


@dataclass(frozen=True)
class Hat:
    """One kind of hat: where its lower edge runs around the head, shell thickness, tone, brim."""

    edge: tuple[tuple[float, ...], tuple[float, ...]]  # (|θ| knots, edge heights)
    thickness: float
    tone: float
    ribs: int = 0
    straight_crown: bool = False


HAT_KINDS = {
    "cap": Hat(edge=((0.0, 1.0, 1.57, 2.4, np.pi), (0.62, 0.52, 0.36, 0.08, 0.02)), thickness=0.05, tone=0.72),
    "brimmed_hat": Hat(edge=((0.0, np.pi), (0.58, 0.52)), thickness=0.09, tone=0.3, straight_crown=True),
    "beanie": Hat(edge=((0.0, 0.9, 1.45, 2.2, np.pi), (0.5, 0.44, 0.24, -0.1, -0.22)), thickness=0.1, tone=0.42, ribs=56),
}


def hat_edge(kind: str, theta: np.ndarray) -> np.ndarray:
    """Height of a hat's lower edge at each θ."""
    knots, heights = HAT_KINDS[kind].edge
    return np.interp(np.abs(theta), knots, heights)


def wear_hat(
    kind: str,
    theta: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    albedo: np.ndarray,
    material: np.ndarray,
    p: HeadParams,
    base: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head's (radius, albedo, material) grids with a hat's shell over the skull: each (R, T).

    `base` is the smooth skull's `base_radius` on the same grid: the shell follows it.
    """
    hat = HAT_KINDS[kind]
    edge = hat_edge(kind, theta)[None, :]
    yy = y[:, None]
    covered = yy > edge
    lift = p.hair_volume * 0.7 + hat.thickness
    if hat.straight_crown:
        widest = base_radius(theta[None, :], np.array([[CRANIUM_CENTER + 0.2]]), p)  # (1, T)
        shell = np.where(yy < p.crown + 0.3, widest + lift, 0.0)
    else:
        shell = np.where(base > 0, base + lift, 0.0)
    tone = np.full(radius.shape, hat.tone, np.float32)
    if hat.ribs:
        rib = np.cos(hat.ribs * theta)[None, :]
        cuff = (yy < edge + 0.16).astype(np.float32)
        shell = shell + 0.008 * rib + 0.03 * cuff
        tone = tone * (1.0 + 0.18 * rib) * (1.0 - 0.12 * cuff)
    if kind == "brimmed_hat":
        band = (yy < edge + 0.12).astype(np.float32)
        tone = tone * (1.0 - 0.75 * band)
    if kind == "cap":
        seams = np.exp(-0.5 * ((np.abs(theta) % 1.05 - 0.0) / 0.015) ** 2)[None, :]
        tone = tone * (1.0 - 0.35 * seams)
    new_radius = np.where(covered, np.maximum(shell, radius), radius)
    new_albedo = np.where(covered, tone, albedo).astype(np.float32)
    new_material = np.where(covered, FABRIC, material).astype(np.int8)
    return new_radius.astype(np.float32), new_albedo, new_material


def brim(kind: str, p: HeadParams, step: float) -> list[Surface]:
    """The brim of a hat as two-sided sheets (a cap's visor, a hat's all-round brim; none for a beanie)."""
    hat = HAT_KINDS[kind]
    lift = p.hair_volume * 0.7 + hat.thickness
    if kind == "cap":
        span, length, droop = 1.0, 0.55, 0.3
    elif kind == "brimmed_hat":
        span, length, droop = np.pi, 0.36, 0.12
    else:
        return []
    n_theta = int(np.ceil(2 * span * (1.2 + length) / step))
    n_out = int(np.ceil(length / step)) + 1
    theta = np.linspace(-span, span, n_theta, endpoint=kind == "cap")
    edge = hat_edge(kind, theta)
    if hat.straight_crown:
        inner = base_radius(theta, np.array([CRANIUM_CENTER + 0.2]), p) + lift
    else:
        inner = base_radius(theta, edge, p) + lift
    s = np.linspace(0.0, 1.0, n_out)[:, None]  # (S, 1) fraction of the way out
    if kind == "cap":
        reach = length * np.sqrt(np.clip(1.0 - (theta / span) ** 2, 0.0, 1.0))[None, :]
    else:
        reach = np.full((1, n_theta), length)
    r = inner[None, :] + s * reach
    height = edge[None, :] - 0.01 - droop * (s * reach) ** 1.5 - (0.06 * np.sin(theta) ** 2 if kind == "cap" else 0.0)
    sheet = np.stack([r * np.sin(theta), height, r * np.cos(theta)], axis=-1)
    keep = np.broadcast_to(reach > 0.02, sheet.shape[:2])
    parts = [sheet_surface(sheet, hat.tone * 0.9, FABRIC, keep)]
    # The brim's outer rim, so it shows as a band even seen edge-on.
    n_rim = max(2, int(np.ceil(0.035 / step)) + 1)
    drop = np.linspace(0.0, 0.035, n_rim)[:, None]
    around = (n_rim, n_theta)
    rim = np.stack(
        [np.broadcast_to(r[-1] * np.sin(theta), around), height[-1] - drop, np.broadcast_to(r[-1] * np.cos(theta), around)], axis=-1
    )
    parts.append(sheet_surface(rim, hat.tone * 0.8, FABRIC, np.broadcast_to(reach[-1] > 0.02, around)))
    return [concat_surfaces(parts)]


def eye_centers(p: HeadParams) -> np.ndarray:
    """The front of both eyes in head coordinates: (2, 3), right eye (negative x) first."""
    theta = np.array([-1.0, 1.0]) * p.eye_spacing / FACE_RADIUS
    r = head_radius(theta, np.array([0.0]), p)[0]
    return np.stack([r * np.sin(theta), np.zeros(2), r * np.cos(theta)], axis=-1).astype(np.float32)


def spectacles(kind: str, p: HeadParams, step: float) -> list[Surface]:
    """Frames (rims, bridge, temples) and lenses of one kind of spectacles fitted to a head.

    The frame front sits 0.17 units (about 1.3 cm) before the eyes, or just clear of the nose
    bridge, and wraps back slightly toward the temples. Returns [opaque parts, clear lenses?].
    """
    spec = SPECTACLES[kind]
    eyes = eye_centers(p)
    bridge_z = float(head_radius(np.array([0.0]), np.array([0.05]), p)[0, 0])
    front = max(float(eyes[0, 2]) + 0.17, bridge_z + 0.03)

    def depth(x: np.ndarray) -> np.ndarray:
        return front - 0.2 * x**2

    frames, lenses = _rims_and_lenses(spec, eyes, depth, step)
    frames.append(_bridge(spec, eyes, depth, step))
    frames.extend(_temples(spec, eyes, depth, p, step))
    return [concat_surfaces(frames)] + ([concat_surfaces(lenses)] if lenses else [])


def _rims_and_lenses(spec: Spectacles, eyes: np.ndarray, depth, step: float) -> tuple[list[Surface], list[Surface]]:
    """Each eye's rim (opaque) and lens (opaque and dark, or clear/tinted)."""
    wx, wy, rim, k = spec.half_width, spec.half_height, spec.rim, spec.roundness
    n_x, n_y = int(np.ceil(2 * (wx + rim) / step)) + 1, int(np.ceil(2 * (wy + rim) / step)) + 1
    dx, dy = np.meshgrid(np.linspace(-wx - rim, wx + rim, n_x), np.linspace(-wy - rim, wy + rim, n_y))
    inside = np.abs(dx / wx) ** k + np.abs(dy / wy) ** k <= 1.0
    within_rim = np.abs(dx / (wx + rim)) ** k + np.abs(dy / (wy + rim)) ** k <= 1.0
    frames, lenses = [], []
    for eye in eyes:
        x = eye[0] + dx
        sheet = np.stack([x, 0.01 + dy, depth(x)], axis=-1)
        frames.append(sheet_surface(sheet, spec.frame_tone, FRAME, within_rim & ~inside))
        if spec.transmittance > 0:
            lenses.append(sheet_surface(sheet, 0.0, FRAME, inside, transmittance=spec.transmittance))
        else:
            frames.append(sheet_surface(sheet, spec.lens_tone, DARK_LENS, inside))
    return frames, lenses


def _bar_height(spec: Spectacles) -> float:
    return max(spec.rim, 0.018)


def _bridge(spec: Spectacles, eyes: np.ndarray, depth, step: float) -> Surface:
    """The arched bar between the lenses, above the nose."""
    inner = float(eyes[1, 0]) - spec.half_width * 0.92
    bar = _bar_height(spec)
    bx, by = np.meshgrid(
        np.linspace(-inner, inner, int(np.ceil(2 * inner / step)) + 2), np.linspace(-bar / 2, bar / 2, int(np.ceil(bar / step)) + 2)
    )
    return sheet_surface(np.stack([bx, 0.06 + by + 0.03 * (1 - (bx / inner) ** 2), depth(bx)], axis=-1), spec.frame_tone, FRAME)


def _temples(spec: Spectacles, eyes: np.ndarray, depth, p: HeadParams, step: float) -> list[Surface]:
    """Both arms: from the hinge at the lens's outer edge, back along the side of the head to the ear."""
    hinge_x = float(eyes[1, 0]) + spec.half_width + spec.rim
    hinge_z = float(depth(np.array(hinge_x)))
    theta = np.linspace(0.3, 2.0, 96)
    slice_r = head_radius(theta, np.array([0.07]), p)[0]
    slice_x, slice_z = slice_r * np.sin(theta), slice_r * np.cos(theta)  # z falls as θ grows

    def hug(z: float) -> float:
        """Just outside the side of the head at depth z."""
        return float(np.interp(z, slice_z[::-1], slice_x[::-1])) + 0.035

    bend = hinge_z - 0.25
    path = np.array([[hinge_x, hinge_z], [max(hug(bend), hinge_x), bend], [hug(0.3), 0.3], [hug(-0.15), -0.15]])
    pieces = []
    for (x0, z0), (x1, z1) in zip(path[:-1], path[1:]):
        t = np.linspace(0.0, 1.0, int(np.ceil(np.hypot(x1 - x0, z1 - z0) / step)) + 1)
        pieces.append(np.stack([x0 + t * (x1 - x0), z0 + t * (z1 - z0)], axis=-1))
    xz = np.concatenate(pieces)  # (L, 2)
    bar = _bar_height(spec)
    heights = 0.07 + np.linspace(-bar / 2, bar / 2, int(np.ceil(bar / step)) + 2)[:, None]
    shape = (len(heights), len(xz))
    arms = []
    for sign in (-1.0, 1.0):
        sheet = np.stack([np.broadcast_to(sign * xz[:, 0], shape), np.broadcast_to(heights, shape), np.broadcast_to(xz[:, 1], shape)], axis=-1)
        arms.append(sheet_surface(sheet, spec.frame_tone, FRAME))
    return arms
