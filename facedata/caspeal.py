"""CAS-PEAL-R1's accessory subset read into a FaceSet of the paper's protocol (§4.2): 7 accessory
classes (none, 3 hats, 3 glasses), eye-aligned, grayscale, 32×32, first 350 identities train.

File names carry the conditions, e.g. MY_000064_IEU+00_PM+00_EN_A1_D0_T0_BB_M0_R1_S0.tif: gender/age
prefix, 6-digit person id, lighting I…, pose P…, expression E…, accessory A0–A6, distance D…, time T…,
background B…, then M…, R…, S…. The accessory code gives the class: A0 none, A1–A3 hats, A4–A6 glasses
(the distribution's documentation names the kinds hats and glasses).

The distribution keeps the accessory images (A1–A6) in FRONTAL/Accessory and each person's plain
image (A0) in FRONTAL/Normal: give both folders to get all 7 classes. Identities with no accessory
image at all (the Normal folder's other people) are dropped and counted in
`info.extra["dropped_identities"]`, so the set holds the accessory subset's people only.

Eye file (optional): CAS-PEAL's FaceFP_2.txt style, one line per image, `<name> lx ly rx ry`
(whitespace separated; name with or without its extension; pixels of the original image). Faces are
aligned by the similarity taking the eyes to fixed places (facedata.imageio.EyesTemplate), as the
paper aligns on the eyes. Without it, a fixed centred square crop (CASPEAL_FIXED_CROP) is used: it
is APPROXIMATE (faces are not aligned), meant for a first look.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.imageio import SquareCrop, Size, align_on_eyes, crop_square, is_image_file, load_gray, size_hw
from facedata.provenance import provenance as make_provenance
from facedata.splits import check_split_sizes

CASPEAL_ACCESSORIES: dict[str, str] = {
    "A0": "none", "A1": "hat1", "A2": "hat2", "A3": "hat3", "A4": "glasses1", "A5": "glasses2", "A6": "glasses3",
}
CASPEAL_ACCESSORY_VALUES = tuple(CASPEAL_ACCESSORIES.values())

# Approximate crop of the 360×480 (W×H) frontal images, as fractions of the frame: the face is near
# the centre; the box is high enough to keep a hat's brim.
CASPEAL_FIXED_CROP = SquareCrop(cx=0.50, cy=0.45, side=0.55)

_FILE_NAME = re.compile(r"(?P<prefix>[A-Z]{2})_(?P<person>\d{6})_(?P<lighting>I[^_]*)_(?P<pose>P[^_]*)_"
                        r"(?P<expression>E[^_]*)_(?P<accessory>A[^_]*)_(?P<rest>.*)")


def parse_name(path: Path) -> tuple[str, str]:
    """(person id, accessory class) from a CAS-PEAL file name; a DataError naming the file otherwise."""
    match = _FILE_NAME.fullmatch(path.stem)
    if not match:
        raise DataError(f"{path}: not a CAS-PEAL file name (expected e.g. MY_000064_IEU+00_PM+00_EN_A1_D0_T0_BB_M0_R1_S0.tif)")
    code = match["accessory"]
    if code not in CASPEAL_ACCESSORIES:
        raise DataError(f"{path}: unknown accessory code {code} (valid: A0..A6)")
    return match["person"], CASPEAL_ACCESSORIES[code]


def read_eyes(path: Path) -> dict[str, tuple[float, float, float, float]]:
    """Eye coordinates keyed by image stem, from a FaceFP_2.txt style file: `<name> lx ly rx ry` per line."""
    if not path.is_file():
        raise DataError(f"{path}: no such eye-coordinate file")
    table: dict[str, tuple[float, float, float, float]] = {}
    for line, text in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DataError(f"{path}:{line}: expected '<name> lx ly rx ry', got {len(fields)} fields")
        try:
            coords = tuple(float(v) for v in fields[1:])
        except ValueError:
            raise DataError(f"{path}:{line}: eye coordinates must be numbers") from None
        stem = Path(fields[0]).stem if is_image_file(Path(fields[0])) else fields[0]
        if stem in table:
            raise DataError(f"{path}:{line}: duplicate image name '{fields[0]}'")
        table[stem] = coords  # type: ignore[assignment]
    return table


def _scan(roots: Sequence[Path]) -> list[tuple[str, str, Path]]:
    """Every image under the roots as (person, accessory, path); a file name seen twice is an error."""
    found: list[tuple[str, str, Path]] = []
    seen: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            raise DataError(f"{root}: no such folder (expected a CAS-PEAL-R1 folder such as FRONTAL/Accessory)")
        for path in sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p)):
            if path.stem in seen:
                raise DataError(f"{path}: the same image as {seen[path.stem]} (give each folder once)")
            seen[path.stem] = path
            person, accessory = parse_name(path)
            found.append((person, accessory, path))
    return found


def read_caspeal(roots: str | Path | Sequence[str | Path], size: Size = 32, eyes: str | Path | None = None,
                 train_identities: int = 350, progress: bool = True, val_identities: int | None = None) -> FaceSet:
    """Read the CAS-PEAL-R1 accessory images under the given folder(s) into a FaceSet.

    Rows run by person id (sorted), accessory class, file name; identity is the 6-digit person id,
    source the path relative to its root folder; the first `train_identities` people are the train side,
    its last `val_identities` (None: about 10 %) val, the rest test.
    """
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    if not roots:
        raise DataError("no CAS-PEAL folder given")
    h, w = size_hw(size)
    table = read_eyes(Path(eyes)) if eyes is not None else None
    found = _scan(roots)
    if not found:
        raise DataError(f"{', '.join(map(str, roots))}: no image files found")
    with_accessory = {person for person, accessory, _ in found if accessory != "none"}
    if not with_accessory:
        raise DataError(f"{', '.join(map(str, roots))}: no accessory images (codes A1..A6) among {len(found)} images")
    dropped = sorted({person for person, _, _ in found} - with_accessory)
    found = [item for item in found if item[0] in with_accessory]
    # checked before the long read, not after
    val_identities = check_split_sizes(", ".join(map(str, roots)), len(with_accessory), train_identities,
                                       val_identities, "people")
    accessory_rank = {value: i for i, value in enumerate(CASPEAL_ACCESSORY_VALUES)}
    found.sort(key=lambda item: (item[0], accessory_rank[item[1]], item[2].name))

    images = np.empty((len(found), h, w), dtype=np.uint8)  # (N, H, W)
    for i, (_, _, path) in enumerate(tqdm(found, desc="cas-peal", unit="img", disable=not progress)):
        frame = load_gray(path)
        if table is not None:
            if path.stem not in table:
                raise DataError(f"{path}: no eye coordinates for it in {eyes}")
            lx, ly, rx, ry = table[path.stem]
            images[i] = align_on_eyes(frame, (lx, ly), (rx, ry), (h, w))
        else:
            images[i] = crop_square(frame, CASPEAL_FIXED_CROP.transform(frame.shape), (h, w))

    def relative(path: Path) -> str:
        for root in roots:
            if path.is_relative_to(root):
                return (Path(root.name) / path.relative_to(root)).as_posix()
        return path.as_posix()

    faces = pd.DataFrame({
        "identity": [item[0] for item in found],
        "accessory": [item[1] for item in found],
        "source": [relative(item[2]) for item in found],
    })
    counts = Counter(faces["accessory"])
    faceset = FaceSet.from_arrays(
        images, faces, name="cas-peal-r1-accessory",
        factors={"accessory": CASPEAL_ACCESSORY_VALUES},
        provenance=make_provenance(source=[str(r) for r in roots], eyes=str(eyes) if eyes else None),
        extra={"dataset": "CAS-PEAL-R1 accessory subset",
               "alignment": "eyes similarity from eye file" if table is not None else "fixed centred crop (approximate)",
               "accessory_codes": dict(CASPEAL_ACCESSORIES),
               "dropped_identities": len(dropped),
               "missing_classes": [v for v in CASPEAL_ACCESSORY_VALUES if counts[v] == 0]},
    )
    return faceset.with_split_by_identity(train_identities, val_identities)
