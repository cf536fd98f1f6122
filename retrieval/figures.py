"""Figure 7 of the paper for any query result: per query, the query | its generated face | the top-k
gallery faces, each found face captioned with identity and value and framed green (correct: the
query's identity in the target value), red (wrong) or grey (the query's identity is unknown)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from facedata.contact_sheet import fit_text
from facedata.imageio import save_image
from retrieval.query import QueryResult

GREEN, RED, GREY, WHITE, INK = (0, 160, 60), (215, 30, 30), (190, 190, 190), (255, 255, 255), (0, 0, 0)
EMPTY = (238, 238, 238)  # a place the search left empty (fewer than k found, or a batch query's own k)


@dataclass(frozen=True)
class GridStyle:
    """Sizes of the query grid, in output pixels."""

    cell: int = 96  # small faces are upscaled (nearest) to about this size
    border: int = 3  # the correct/wrong frame around each found face
    gap: int = 4  # between cells
    section_gap: int = 14  # between the generated face and the first found one
    font_size: int = 11
    max_rows: int = 20  # queries drawn; a batch's later queries are left out of the picture


def frame_colour(correct) -> tuple[int, int, int]:
    """Green for a correct item, red for a wrong one, grey when unknown (NA)."""
    if correct is pd.NA or correct is None or (isinstance(correct, float) and np.isnan(correct)):
        return GREY
    return GREEN if bool(correct) else RED


def short_label(label: str) -> str:
    """A query's label for a caption: a file's name, or FACESET:ROW with the FaceSet's folder name only."""
    head, sep, row = label.rpartition(":")
    if sep and row.isdigit():
        return f"{Path(head).name}:{row}"
    return Path(label).name or label


def draw_query_grid(result: QueryResult, retrieved: np.ndarray, style: GridStyle = GridStyle(), title: str = "") -> Image.Image:
    """The grid as an RGB image; `retrieved` is (q, k, H, W) uint8 (retrieval.query.retrieved_images)."""
    q, k = len(result), result.k
    assert retrieved.shape[:2] == (q, k) and retrieved.ndim == 4, (retrieved.shape, q, k)
    rows = min(q, style.max_rows)
    h, w = retrieved.shape[2:]
    zoom = max(1, round(style.cell / max(h, w)))
    ch, cw = h * zoom, w * zoom
    box_w, box_h = cw + 2 * style.border, ch + 2 * style.border
    font = ImageFont.load_default(size=style.font_size)
    line = style.font_size + 3
    caption_h = 2 * line + 2
    title_h = line + 6 if title else 0
    header_h = line + 4
    row_h = box_h + caption_h + style.gap
    x_of = [style.gap + c * (box_w + style.gap) + (style.section_gap if c >= 2 else 0) for c in range(2 + k)]
    width = x_of[-1] + box_w + style.gap
    height = title_h + header_h + rows * row_h + style.gap
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((style.gap, 3), fit_text(title, font, width - 2 * style.gap), fill=INK, font=font)
    headers = ["query", "generated", *[f"#{r + 1}" for r in range(k)]]
    for c, text in enumerate(headers):
        draw.text((x_of[c] + box_w / 2, title_h + header_h / 2), text, fill=INK, font=font, anchor="mm")

    def cell(c: int, r: int, pixels: np.ndarray | None, colour, captions: tuple[str, str]) -> None:
        x, y = x_of[c], title_h + header_h + r * row_h
        draw.rectangle((x, y, x + box_w - 1, y + box_h - 1), fill=colour)
        if pixels is not None:
            face = Image.fromarray(np.ascontiguousarray(pixels)).resize((cw, ch), Image.NEAREST).convert("RGB")
            canvas.paste(face, (x + style.border, y + style.border))
        for i, text in enumerate(captions):
            draw.text((x + box_w / 2, y + box_h + 2 + i * line), fit_text(text, font, box_w + style.gap), fill=INK, font=font, anchor="ma")

    edit = result.edit_factor
    groups = dict(tuple(result.table.groupby("query", sort=True)))
    for r in range(rows):
        truth = result.truth[r]
        known = f"{truth.get('identity', '?')}  {truth.get(edit, '?')}" if truth else ""
        cell(0, r, result.queries[r], WHITE, (short_label(result.labels[r]), known))
        cell(1, r, result.generated[r], WHITE, (str(result.targets[r]), ""))
        found = groups.get(r, pd.DataFrame(columns=result.table.columns)).set_index("rank")
        for rank in range(1, k + 1):
            if rank not in found.index:
                cell(1 + rank, r, None, EMPTY, ("", ""))
                continue
            item = found.loc[rank]
            caption = f"{item.get('identity', '?')}  {item.get(edit, '?')}"
            cell(1 + rank, r, retrieved[r, rank - 1], frame_colour(item["correct"]), (caption, f"d={item['distance']:.3f}"))
    return canvas


def write_query_grid(result: QueryResult, retrieved: np.ndarray, path: str | Path, style: GridStyle = GridStyle(),
                     title: str = "") -> Path:
    """Write the query grid as a PNG or JPEG (by its suffix), atomically; returns the path."""
    return save_image(draw_query_grid(result, retrieved, style, title), path)
