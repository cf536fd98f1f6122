"""SynthPIE's illuminations: ambient plus one flash each, fixed in the camera frame like Multi-PIE's.

Multi-PIE fires 18 flashes spread left to right around the subject, mostly near head height with a
few above, plus frames with room light only. We mirror that layout: "00" is ambient only; the other
flashes lie on two rings of the frontal hemisphere, a low ring (elevation 10°) spread evenly over
azimuth ±light_range, and a high ring (elevation 35°) over two thirds of that range.
"""

from __future__ import annotations

import numpy as np

LOW_ELEVATION = 10.0
HIGH_ELEVATION = 35.0


def light_directions(count: int, light_range: float) -> np.ndarray:
    """Unit vectors toward each flash in camera coordinates (x right, y up, z toward the camera): (count, 3).

    Row 0 (label "00") is all zeros: ambient only. Of the remaining count-1 flashes, about two
    thirds go on the low ring and the rest on the high ring, each ordered from left to right.
    """
    assert count >= 1, count
    flashes = count - 1
    high = flashes // 3
    low = flashes - high
    directions = [np.zeros(3)]
    for n, elevation, reach in ((low, LOW_ELEVATION, light_range), (high, HIGH_ELEVATION, light_range * 2 / 3)):
        azimuths = np.linspace(-reach, reach, n) if n > 1 else np.zeros(n)
        for azimuth in azimuths:
            directions.append(_direction(azimuth, elevation))
    return np.asarray(directions, dtype=np.float32)


def _direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector toward a light at `azimuth` (positive = image right) and `elevation` degrees."""
    az, el = np.radians(azimuth), np.radians(elevation)
    return np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
