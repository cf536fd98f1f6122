"""Look at a FaceSet: a text summary of its factors and a labelled PNG contact sheet.

The sheet is laid out from the factors present, so any FaceSet works (SynthPIE, imported real
sets with named poses, non-square images): one block per factor that varies, rows = a spread of
identities, columns = that factor's values, every other factor held at a reference value
(faceset.json's extra["reference"] when given, else frontal pose / "none" / the commonest value).
Cells with no matching image stay blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from facedata.errors import DataError
from facedata.faceset import FaceSet, pose_degrees
from facedata.imageio import save_image

BLOCK_ORDER = ("pose", "accessory", "occluded", "expression", "illumination")
NEUTRAL_VALUES = ("none", "no", "neutral", "normal", "straight", "forward", "frontal", "front", "center", "open")
CELL_TARGET = 96  # upscale small faces to about this many pixels
GAP = 2
PAPER, INK = 255, 0


def factor_counts(faceset: FaceSet) -> dict[str, dict[str, int]]:
    """Images per value of each factor, in vocabulary order."""
    counts = {}
    for factor in faceset.factors:
        tally = faceset.faces[factor].value_counts()
        counts[factor] = {v: int(tally.get(v, 0)) for v in faceset.vocabulary(factor)}
    return counts


def summarize(faceset: FaceSet) -> str:
    """A plain-text table: image count and size, identities, per-split and per-factor counts."""
    faces = faceset.faces
    h, w = faceset.image_size
    named = sorted(set(faces["source"]) - {""})
    sources = ", ".join(named) if len(named) <= 3 else f"{named[0]}, {named[1]}, … {len(named)} in all"
    sources = sources or "unknown"
    lines = [f"FaceSet {faceset.info.name}: {len(faceset)} images of {h}×{w}, {faceset.num_identities} identities (source: {sources})"]
    lines.append(f"  {'split':<14}{'identities':>11}{'images':>9}")
    for split, part in faces.groupby("split", sort=False):
        lines.append(f"  {split:<14}{part['identity'].nunique():>11}{len(part):>9}")
    lines.append(f"  {'factor':<14}{'values':>11}  counts")
    for factor, counts in factor_counts(faceset).items():
        wrapped = _wrap_items([f"{v}: {n}" for v, n in counts.items()], width=72)
        lines.append(f"  {factor:<14}{len(counts):>11}  {wrapped[0]}")
        lines.extend(f"  {'':<25}  {more}" for more in wrapped[1:])
    return "\n".join(lines + import_notes(faceset.info.extra))


def import_notes(extra: dict) -> list[str]:
    """What an import recorded in faceset.json besides the faces: alignment, and what it left out and why."""
    notes = []
    if "alignment" in extra:
        notes.append(f"  alignment: {extra['alignment']}")
    if extra.get("skipped_cameras"):
        notes.append("  skipped (other cameras): " + ", ".join(f"{k} {v}" for k, v in extra["skipped_cameras"].items()))
    if extra.get("dropped_identities"):
        notes.append(f"  dropped: {extra['dropped_identities']} identities without any accessory image")
    if extra.get("missing_classes"):
        notes.append(f"  no images of: {', '.join(extra['missing_classes'])}")
    if extra.get("skipped_blank"):
        notes.append(f"  skipped: {len(extra['skipped_blank'])} blank placeholder images")
    if extra.get("unaligned"):
        notes.append(f"  left out: {len(extra['unaligned'])} rows without a usable face (listed in faceset.json)")
    if extra.get("ignored_columns"):
        notes.append(f"  ignored columns: {', '.join(extra['ignored_columns'])}")
    return notes


def reference_values(faceset: FaceSet) -> dict[str, str]:
    """The value each factor is held at while another one varies."""
    hints = faceset.info.extra.get("reference", {}) if isinstance(faceset.info.extra.get("reference"), dict) else {}
    chosen = {}
    for factor in faceset.factors:
        vocab = faceset.vocabulary(factor)
        present = set(faceset.faces[factor])
        hint = hints.get(factor)
        if hint in present:
            chosen[factor] = hint
        elif factor == "pose" and any(pose_degrees(v) is not None for v in present):
            chosen[factor] = min((v for v in present if pose_degrees(v) is not None), key=lambda v: abs(pose_degrees(v)))
        elif any(v in present for v in NEUTRAL_VALUES):
            chosen[factor] = next(v for v in NEUTRAL_VALUES if v in present)
        else:
            chosen[factor] = faceset.faces[factor].value_counts().index[0] if len(present) else vocab[0]
    return chosen


@dataclass(frozen=True)
class Block:
    """One panel of the sheet: `factor`'s values across, identities down; cells hold view positions or -1."""

    factor: str | None
    columns: tuple[str, ...]
    identities: tuple[str, ...]
    cells: np.ndarray  # (rows, columns) int64
    held: dict[str, str]


def pick_identities(faceset: FaceSet, rows: int) -> list[str]:
    """`rows` identities spread evenly over the set (so every split shows up)."""
    order = faceset.identities()
    if rows >= len(order):
        return order
    picks = np.unique(np.linspace(0, len(order) - 1, rows).round().astype(int))
    return [order[i] for i in picks]


def layout(faceset: FaceSet, rows: int = 6) -> list[Block]:
    """The sheet's blocks: one per varying factor (or a plain grid of images if nothing varies)."""
    if rows < 1:
        raise DataError(f"rows={rows}: must be at least 1")
    faces = faceset.faces.reset_index(drop=True)
    identities = pick_identities(faceset, rows)
    reference = reference_values(faceset)
    varied = [f for f in BLOCK_ORDER if f in faceset.factors and faces[f].nunique() > 1]
    blocks = []
    for factor in varied:
        columns = tuple(v for v in faceset.vocabulary(factor) if v in set(faces[factor]))
        others = [f for f in faceset.factors if f != factor]
        held = {f: reference[f] for f in others}
        cells = np.full((len(identities), len(columns)), -1, dtype=np.int64)
        for r, identity in enumerate(identities):
            mine = faces[faces["identity"] == identity]
            for c, value in enumerate(columns):
                candidates = mine[mine[factor] == value]
                if len(candidates):
                    score = sum((candidates[f] == held[f]).astype(int) for f in others) if others else pd.Series(0, candidates.index)
                    cells[r, c] = int(score.idxmax())
        blocks.append(Block(factor, columns, tuple(identities), cells, held))
    if not blocks:
        width = 8
        cells = np.full((len(identities), width), -1, dtype=np.int64)
        for r, identity in enumerate(identities):
            positions = np.flatnonzero((faces["identity"] == identity).to_numpy())[:width]
            cells[r, : len(positions)] = positions
        blocks.append(Block(None, tuple(str(i + 1) for i in range(width)), tuple(identities), cells, {}))
    return blocks


def contact_sheet(faceset: FaceSet, path: str | Path, rows: int = 6) -> Path:
    """Write a labelled PNG contact sheet of `faceset` to `path`, atomically; returns the path."""
    blocks = layout(faceset, rows)
    h, w = faceset.image_size
    zoom = max(1, round(CELL_TARGET / max(h, w)))
    ch, cw = h * zoom, w * zoom
    font = ImageFont.load_default(size=12)
    title_font = ImageFont.load_default(size=14)
    label_w = max(int(font.getlength(i)) for b in blocks for i in b.identities) + 10
    header_h, title_h = 18, 22
    widths = [label_w + len(b.columns) * (cw + GAP) for b in blocks]
    heights = [title_h + header_h + len(b.identities) * (ch + GAP) + 10 for b in blocks]
    sheet = Image.new("L", (max(widths) + 8, sum(heights) + 8), PAPER)
    draw = ImageDraw.Draw(sheet)
    top = 4
    for block in blocks:
        held = ", ".join(f"{k}={v}" for k, v in block.held.items())
        title = f"{block.factor} (others held at {held})" if block.factor and held else (block.factor or "images per identity")
        draw.text((4, top), title, fill=INK, font=title_font)
        y0 = top + title_h
        for c, value in enumerate(block.columns):
            x = 4 + label_w + c * (cw + GAP) + cw / 2
            draw.text((x, y0 + header_h / 2), fit_text(value, font, cw), fill=INK, font=font, anchor="mm")
        for r, identity in enumerate(block.identities):
            y = y0 + header_h + r * (ch + GAP)
            draw.text((4, y + ch / 2), identity, fill=INK, font=font, anchor="lm")
            for c in range(len(block.columns)):
                position = block.cells[r, c]
                if position < 0:
                    continue
                face = Image.fromarray(faceset.image(int(position))).resize((cw, ch), Image.NEAREST)
                sheet.paste(face, (4 + label_w + c * (cw + GAP), y))
        top += title_h + header_h + len(block.identities) * (ch + GAP) + 10
    return save_image(sheet, path)


def fit_text(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """`text` shortened with an ellipsis to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _wrap_items(items: list[str], width: int) -> list[str]:
    """Comma-separated items on lines of at most `width` characters, never splitting an item."""
    lines = [""]
    for item in items:
        candidate = f"{lines[-1]}, {item}" if lines[-1] else item
        if len(candidate) > width and lines[-1]:
            lines[-1] += ","
            lines.append(item)
        else:
            lines[-1] = candidate
    return lines
