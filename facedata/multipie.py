"""Multi-PIE session 1 as distributed, read into a FaceSet of the paper's protocol (§4.1): 7 cameras
as yaw −45°..+45°, 20 illuminations, grayscale, aligned or cropped, 32×32, first 100 subjects train.

Layout: <root>/session01/multiview/<subject>/<recording>/<camera>/<subject>_01_<recording>_<code>_<illum>.png
with camera folders like "08_0" whose file code is "080". ROOT may also be the `multiview` folder.

Landmark file (optional, CSV with a header): columns `file,left_eye_x,left_eye_y,right_eye_x,right_eye_y,
chin_x,chin_y` in pixels of the original frame (x right, y down). `file` is a file name or a path
ending in one (only its name is used; Multi-PIE names are unique); a name may also be given without
its illumination, `<subject>_01_<recording>_<code>`, to apply to all 20 flashes of that camera (they
fire within a second). Which eye is "left" does not matter. Faces are aligned by a similarity taking
the eyes' midpoint and the chin to fixed places (facedata.imageio.EyesChinTemplate), as the paper
aligns on eyes and chin (it used the annotations of Shafey et al.).

Without landmarks, each camera gets a fixed square crop (MULTIPIE_FIXED_CROPS): centred on where the
rig's cameras aim, the head, and wide enough to hold the face at ±45°. It is APPROXIMATE: faces are
not aligned, scale varies with head size and the face sits off-centre at the extreme yaws; use a
landmark file for the paper's alignment.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.imageio import SquareCrop, Size, align_on_eyes_chin, crop_square, load_gray, size_hw
from facedata.provenance import provenance as make_provenance
from facedata.splits import check_split_sizes

# §4.1: the 7 cameras of the protocol, in yaw order (camera codes 080, 130, 140, 051, 050, 041, 190).
MULTIPIE_CAMERAS: dict[str, str] = {
    "08_0": "-45", "13_0": "-30", "14_0": "-15", "05_1": "0", "05_0": "+15", "04_1": "+30", "19_0": "+45",
}
MULTIPIE_POSES = tuple(MULTIPIE_CAMERAS.values())
MULTIPIE_ILLUMINATIONS = tuple(f"{i:02d}" for i in range(20))

# Approximate crops of the 640×480 frames (fractions of the frame, so they scale with it): the rig aims
# every camera at the head, so one box centred on it serves all 7; it is per camera so it can be tuned.
_HEAD_BOX = SquareCrop(cx=0.50, cy=0.45, side=0.45)
MULTIPIE_FIXED_CROPS: dict[str, SquareCrop] = {camera: _HEAD_BOX for camera in MULTIPIE_CAMERAS}

_FILE_NAME = re.compile(r"(?P<subject>\d+)_(?P<session>\d{2})_(?P<recording>\d{2})_(?P<code>\d{3})_(?P<illum>\d+)\.png")
_LANDMARK_COLUMNS = ("file", "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "chin_x", "chin_y")


def multiview_folder(root: Path) -> Path:
    """The `multiview` folder of session 1 under ROOT (ROOT may be it, or hold session01/multiview)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected the Multi-PIE root holding session01/multiview)")
    for candidate in (root / "session01" / "multiview", root / "multiview", root):
        if candidate.name == "multiview" and candidate.is_dir():
            return candidate
    raise DataError(f"{root}: no session01/multiview folder (expected Multi-PIE as distributed: "
                    "session01/multiview/<subject>/<recording>/<camera>/*.png)")


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """Landmark rows keyed by file stem (or stem without illumination): name → (3, 2) eyes, eyes, chin."""
    if not path.is_file():
        raise DataError(f"{path}: no such landmark file")
    table: dict[str, np.ndarray] = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _LANDMARK_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: landmark file lacks column(s) {', '.join(missing)} "
                            f"(expected a header {','.join(_LANDMARK_COLUMNS)})")
        for line, row in enumerate(reader, start=2):
            name = Path(row["file"].strip().replace("\\", "/")).name
            stem = name[:-4] if name.lower().endswith(".png") else name
            try:
                points = np.array([float(row[c]) for c in _LANDMARK_COLUMNS[1:]]).reshape(3, 2)
            except (TypeError, ValueError):
                raise DataError(f"{path}:{line}: landmark coordinates must be numbers") from None
            if not stem or stem in table:
                raise DataError(f"{path}:{line}: {'empty' if not stem else 'duplicate'} file name '{name}'")
            table[stem] = points
    return table


def _landmarks_for(table: dict[str, np.ndarray], stem: str, source: Path, landmarks: Path) -> np.ndarray:
    """This file's landmarks: its own row, else its camera's row without illumination."""
    if stem in table:
        return table[stem]
    camera_key = stem.rsplit("_", 1)[0]
    if camera_key in table:
        return table[camera_key]
    raise DataError(f"{source}: no landmarks for it in {landmarks} (neither '{stem}' nor '{camera_key}')")


def _scan(folder: Path, recording: str) -> tuple[list[tuple[str, str, str, Path]], Counter]:
    """The protocol's files as (subject, pose, illumination, path), checked against their folders;
    and the count of files skipped per other camera."""
    found: list[tuple[str, str, str, Path]] = []
    skipped: Counter = Counter()
    for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        recording_dir = subject_dir / recording
        if not recording_dir.is_dir():
            continue
        for camera_dir in sorted(p for p in recording_dir.iterdir() if p.is_dir()):
            files = sorted(p for p in camera_dir.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
            if camera_dir.name not in MULTIPIE_CAMERAS:
                skipped[camera_dir.name] += len(files)
                continue
            code = camera_dir.name.replace("_", "")
            for path in files:
                match = _FILE_NAME.fullmatch(path.name)
                if not match:
                    raise DataError(f"{path}: not a Multi-PIE file name (expected "
                                    f"{subject_dir.name}_01_{recording}_{code}_<illumination 00-19>.png)")
                if match["code"] != code:
                    raise DataError(f"{path}: camera code {match['code']} in the name, but the folder is "
                                    f"{camera_dir.name} (code {code})")
                if match["subject"] != subject_dir.name or match["recording"] != recording or match["session"] != "01":
                    raise DataError(f"{path}: name says subject {match['subject']}, session {match['session']}, "
                                    f"recording {match['recording']}; its folders say {subject_dir.name}, 01, {recording}")
                if match["illum"] not in MULTIPIE_ILLUMINATIONS:
                    raise DataError(f"{path}: unknown illumination code {match['illum']} (valid: 00..19)")
                found.append((subject_dir.name, MULTIPIE_CAMERAS[camera_dir.name], match["illum"], path))
    return found, skipped


def read_multipie(root: str | Path, size: Size = 32, landmarks: str | Path | None = None,
                  train_identities: int = 100, recording: str = "01", progress: bool = True,
                  val_identities: int | None = None) -> FaceSet:
    """Read Multi-PIE session 1 (one recording) into a FaceSet: 7 poses × 20 illuminations per subject.

    Rows run by subject (sorted by id), pose, illumination; identity is the subject id, source the path
    relative to the multiview folder; the first `train_identities` subjects are the train side, its last
    `val_identities` (None: about 10 %) val, the rest test.
    Files of the other 8 cameras are skipped and counted in `info.extra["skipped_cameras"]`.
    """
    root = Path(root)
    folder = multiview_folder(root)
    h, w = size_hw(size)
    table = read_landmarks(Path(landmarks)) if landmarks is not None else None
    found, skipped = _scan(folder, recording)
    if not found:
        raise DataError(f"{folder}: no images of the 7 protocol cameras ({', '.join(MULTIPIE_CAMERAS)}) "
                        f"for recording {recording}")
    subjects = len({item[0] for item in found})
    val_identities = check_split_sizes(str(folder), subjects, train_identities, val_identities, "subjects")  # before the long read
    pose_rank = {pose: i for i, pose in enumerate(MULTIPIE_POSES)}
    found.sort(key=lambda item: (item[0], pose_rank[item[1]], item[2]))
    camera_of = {pose: camera for camera, pose in MULTIPIE_CAMERAS.items()}

    images = np.empty((len(found), h, w), dtype=np.uint8)  # (N, H, W)
    for i, (_, pose, _, path) in enumerate(tqdm(found, desc="multipie", unit="img", disable=not progress)):
        frame = load_gray(path)
        if table is not None:
            points = _landmarks_for(table, path.stem, path, Path(landmarks))
            images[i] = align_on_eyes_chin(frame, points[0], points[1], points[2], (h, w))
        else:
            crop = MULTIPIE_FIXED_CROPS[camera_of[pose]]
            images[i] = crop_square(frame, crop.transform(frame.shape), (h, w))

    faces = pd.DataFrame({
        "identity": [item[0] for item in found],
        "pose": [item[1] for item in found],
        "illumination": [item[2] for item in found],
        "source": [item[3].relative_to(folder).as_posix() for item in found],
    })
    alignment = "eyes+chin similarity from landmarks" if table is not None else "fixed per-camera crop (approximate)"
    faceset = FaceSet.from_arrays(
        images, faces, name="multipie",
        factors={"pose": MULTIPIE_POSES, "illumination": MULTIPIE_ILLUMINATIONS},
        provenance=make_provenance(source=str(root), landmarks=str(landmarks) if landmarks else None),
        extra={"dataset": "Multi-PIE session 1", "recording": recording, "alignment": alignment,
               "skipped_cameras": dict(sorted(skipped.items()))},
    )
    return faceset.with_split_by_identity(train_identities, val_identities)
