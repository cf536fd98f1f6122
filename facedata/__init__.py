"""Faces with known factors (identity, pose, illumination, accessory, ...): the FaceSet format,
the built-in SynthPIE renderer, readers for real sets, and the paper's pair lists."""

from facedata.errors import DataError, UserError
from facedata.faceset import FACTOR_COLUMNS, FaceSet, FaceSetInfo, format_pose, pose_degrees

__all__ = ["DataError", "UserError", "FACTOR_COLUMNS", "FaceSet", "FaceSetInfo", "format_pose", "pose_degrees"]
