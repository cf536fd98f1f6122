"""KDEF (the Karolinska Directed Emotional Faces) as distributed, read into a FaceSet: 70 people × 5
yaws × 7 expressions × 2 sessions, the real multi-pose set that the README's benchmark uses.

The distribution keeps one folder per person and session, e.g. `AF01/AF01ANFL.JPG`: session A/B,
gender F/M, a two-digit number, the expression code (AF afraid, AN angry, DI disgusted, HA happy, NE
neutral, SA sad, SU surprised) and the angle (FL full left, HL half left, S straight, HR half right,
FR full right). Factors: `pose` (yaw: FL −90, HL −45, S 0, HR +45, FR +90; negative = face turned
towards the image's left), `expression`, `session`. Identity is gender + number ("F01" … "M35"); rows
run by identity (F01…F35, M01…M35), session, expression, yaw, so `train_identities=50` puts F01…M15
on the train side and M16…M35 in test; the default val people (facedata.splits) are then M11…M15.

Crop: the 562×762 portraits (a few other sizes are first resized to it) share one framing, so a fixed
full-width square centred 370 px from the top keeps the whole head at all five angles; eye-based
alignment is not possible for the profiles. Placeholders that are uniformly black (std < 12 grey
levels; the set has a few) are skipped and counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from facedata.errors import DataError
from facedata.faceset import FaceSet, format_pose
from facedata.imageio import Size, load_gray, resize, size_hw
from facedata.provenance import provenance as make_provenance
from facedata.splits import check_split_sizes

KDEF_EXPRESSIONS = {"AF": "afraid", "AN": "angry", "DI": "disgusted", "HA": "happy", "NE": "neutral",
                    "SA": "sad", "SU": "surprised"}
KDEF_YAWS = {"FL": -90, "HL": -45, "S": 0, "HR": 45, "FR": 90}
KDEF_FRAME = (762, 562)  # (H, W) of the distributed portraits
KDEF_CROP_CENTRE_Y = 370  # the square's centre, pixels from the top of the frame
BLANK_STD = 12.0  # a uniformly black placeholder has a grey-level std below this
_NAME = re.compile(r"([AB])([FM])(\d\d)(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)", re.IGNORECASE)


def parse_kdef_name(path: Path) -> tuple[str, str, str, str] | None:
    """(identity, session, expression, angle code) of a KDEF file name like AF01ANFL.JPG; None if not one."""
    match = _NAME.fullmatch(path.stem)
    if match is None:
        return None
    session, gender, number, expression, angle = (g.upper() for g in match.groups())
    return gender + number, session, KDEF_EXPRESSIONS[expression], angle


def kdef_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The fixed head square of a KDEF portrait, (H, W) uint8 at `size`."""
    if frame.shape != KDEF_FRAME:
        frame = np.asarray(Image.fromarray(frame).resize(KDEF_FRAME[::-1], Image.Resampling.BICUBIC), dtype=np.uint8)
    half = KDEF_FRAME[1] // 2
    top = KDEF_CROP_CENTRE_Y - half
    return resize(np.ascontiguousarray(frame[top : top + 2 * half, :]), size)


def read_kdef(root: str | Path, size: Size = 32, train_identities: int = 50, progress: bool = True,
              val_identities: int | None = None) -> FaceSet:
    """Read every KDEF portrait under `root` (any folder depth) into a FaceSet; see the module doc."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected KDEF's folders AF01/, AM01/, … of *.JPG)")
    h, w = size_hw(size)
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg")):
        parsed = parse_kdef_name(path)
        if parsed is not None:
            found.append((*parsed, path))
    if not found:
        raise DataError(f"{root}: no KDEF images (file names like AF01ANFL.JPG) found")
    seen: dict[tuple, Path] = {}
    for identity, session, expression, angle, path in found:
        key = (identity, session, expression, angle)
        if key in seen:
            raise DataError(f"{path}: the same portrait as {seen[key]} (give each KDEF folder once)")
        seen[key] = path
    identities = sorted({item[0] for item in found})
    val_identities = check_split_sizes(str(root), len(identities), train_identities, val_identities, "people")
    expression_rank = {name: i for i, name in enumerate(KDEF_EXPRESSIONS.values())}
    found.sort(key=lambda item: (item[0], item[1], expression_rank[item[2]], KDEF_YAWS[item[3]]))

    images, kept, blank = [], [], []
    for item in tqdm(found, desc="kdef", unit="img", disable=not progress):
        frame = load_gray(item[4])
        if frame.std() < BLANK_STD:
            blank.append(item[4].name)
            continue
        images.append(kdef_crop(frame, (h, w)))
        kept.append(item)
    if not kept:
        raise DataError(f"{root}: every KDEF image is blank")
    faces = pd.DataFrame({
        "identity": [item[0] for item in kept],
        "pose": [format_pose(KDEF_YAWS[item[3]]) for item in kept],
        "expression": [item[2] for item in kept],
        "session": [item[1] for item in kept],
        "source": [item[4].relative_to(root).as_posix() for item in kept],
    })
    faceset = FaceSet.from_arrays(
        np.stack(images), faces, name="kdef",
        factors={"pose": tuple(format_pose(v) for v in sorted(KDEF_YAWS.values())),
                 "expression": tuple(KDEF_EXPRESSIONS.values())},
        provenance=make_provenance(source=str(root), size=[h, w]),
        extra={"dataset": "KDEF (Karolinska Directed Emotional Faces); research use only, no redistribution",
               "alignment": f"fixed full-width square of the 562x762 frame centred {KDEF_CROP_CENTRE_Y} px from the top",
               "skipped_blank": blank},
        extra_factors=("session",),
    )
    return faceset.with_split_by_identity(train_identities, val_identities)
