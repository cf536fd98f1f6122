"""dlib and the model files of face-recognition-models: the optional `deep` extra, found without importing it.

The face_recognition_models package imports pkg_resources, which setuptools ≥ 81 no longer ships, so
its folder is located with importlib.util.find_spec and the package itself is never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from facedata.errors import UserError

INSTALL_HINT = "pip install -e '.[deep]'"


def import_dlib(purpose: str):
    """The dlib module; a UserError naming `purpose` and the deep extra when it is not installed."""
    try:
        import dlib
    except ImportError:
        raise UserError(f"{purpose} needs dlib, which is not installed: {INSTALL_HINT} (the deep extra)") from None
    return dlib


def model_file(name: str) -> Path:
    """The path of one model file of face_recognition_models (e.g. shape_predictor_5_face_landmarks.dat)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "models" / name if locations else None
    if path is None or not path.is_file():
        raise UserError(f"dlib's face model {name} is not installed: {INSTALL_HINT} (the deep extra)")
    return path
