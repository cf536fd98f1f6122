"""Table 1 (mean per-pixel generation error of each stage on random test pairs) and the paper's pictures.

Errors are measured on the 0–255 scale between the generated image, clipped to [0, 255] as any image
is, and the ground-truth target (§4.1.1: 380.89 for stage 1, 369.16 for stage 2 on Multi-PIE).
Pictures (PNG, 4× nearest-neighbour upscaled):
  figure5_pairs.png       rows of input | stage 1 | stage 2 | target (Figure 5; figure9_pairs.png for the
                          accessory task, figure10_pairs.png for completion)
  figure8_all_targets.png input + the stage-2 image for every target value (Figure 8)
  figure4_attribute_maps.png  the attribute encoder's maps, one row per target value (Figure 4)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facedata.atomic import atomic_dir
from facedata.combined import join_values, with_factor
from facedata.contact_sheet import fit_text
from facedata.faceset import FaceSet
from facedata.outputs import ArtifactKind
from facedata.provenance import provenance
from generator.checkpoint import check_vocabulary
from generator.inference import Generator
from generator.tasks import get_task, task_pairs

PAPER_TABLE1 = {"stage1_mse": 380.89, "stage2_mse": 369.16}
SCALE = 4
TABLE_FILE = "table.json"  # the manifest that marks an evaluation folder
KIND = ArtifactKind("evaluation", TABLE_FILE, ("table.md", TABLE_FILE, "figure*.png"))  # what evaluate_generation writes
PAIR_FIGURES = {"pose": "figure5_pairs.png", "accessory": "figure9_pairs.png", "completion": "figure10_pairs.png",
                "illumination": "figure_light_pairs.png"}


def pair_errors(stage1: np.ndarray, stage2: np.ndarray, targets: np.ndarray) -> dict:
    """Mean per-pixel MSE and MAE of each stage against (n, H, W) targets, 0–255 scale, outputs clipped."""
    assert stage1.shape == stage2.shape == targets.shape, (stage1.shape, stage2.shape, targets.shape)
    truth = targets.astype(np.float64)
    record: dict = {"pairs": int(len(targets))}
    for name, out in (("stage1", stage1), ("stage2", stage2)):
        diff = np.clip(out.astype(np.float64), 0, 255) - truth
        record[f"{name}_mse"] = float(np.mean(diff * diff)) if diff.size else float("nan")
        record[f"{name}_mae"] = float(np.mean(np.abs(diff))) if diff.size else float("nan")
    return record


def sample_test_pairs(generator: Generator, faces: FaceSet, count: int, seed: int) -> tuple[FaceSet, np.ndarray]:
    """The test split and up to `count` of its task pairs, drawn at random without replacement: (P, 2)."""
    faces = with_factor(faces, generator.edit_factor)
    check_vocabulary(generator.info, generator.edit_factor, faces.vocabulary(generator.edit_factor), str(faces.root or faces.info.name))
    test = faces.split("test")
    match = generator.info.training.get("pair_match")  # the pairing rule the model was trained on
    pairs = task_pairs(get_task(generator.task), test, tuple(match) if match is not None else None)
    if len(pairs) > count:
        pick = np.sort(np.random.default_rng(seed).choice(len(pairs), size=count, replace=False))
        pairs = pairs[pick]
    return test, pairs


def generation_table(generator: Generator, faces: FaceSet, count: int = 10_000, seed: int = 0,
                     batch_size: int = 256) -> dict:
    """Table 1: errors of both stages on `count` random test pairs, beside the paper's figures."""
    test, pairs = sample_test_pairs(generator, faces, count, seed)
    return pairs_table(generator, test, pairs, seed, batch_size)


def pairs_table(generator: Generator, test: FaceSet, pairs: np.ndarray, seed: int, batch_size: int = 256) -> dict:
    """Table 1's record for given (P, 2) pairs of `test`."""
    images, codes = test.images, test.codes(generator.edit_factor)
    stage1, stage2 = generator.generate(images[pairs[:, 0]], codes[pairs[:, 1]], batch_size=batch_size)
    record = pair_errors(stage1, stage2, images[pairs[:, 1]])
    record.update(paper=PAPER_TABLE1 if generator.task == "pose" else None, task=generator.task, seed=seed, checkpoint_sha256=generator.checkpoint_hash)
    return record


def table_markdown(record: dict) -> str:
    """Table 1 laid out as the paper's, with the paper's Multi-PIE figures beside ours."""
    lines = [
        f"Mean per-pixel generation error on {record['pairs']:,} random test pairs "
        f"(task {record['task']}, 0–255 scale).",
        "",
    ]
    with_paper = record["task"] == "pose"  # the paper's Table 1 is the Multi-PIE pose task
    lines += ["| stage | MSE (ours) | MAE (ours) |" + (" MSE (paper, Multi-PIE) |" if with_paper else ""),
              "|---|---|---|" + ("---|" if with_paper else "")]
    for stage, label in (("stage1", "first stage"), ("stage2", "second stage")):
        paper = f" {record['paper'][f'{stage}_mse']:.2f} |" if with_paper else ""
        lines.append(f"| {label} | {record[f'{stage}_mse']:.2f} | {record[f'{stage}_mae']:.2f} |{paper}")
    return "\n".join(lines) + "\n"


# -- pictures -------------------------------------------------------------------------------------
def tile(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Rows of equally sized (h, w) float images on the 0–255 scale → one uint8 grid with white gaps."""
    h, w = rows[0][0].shape
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = np.clip(np.rint(image), 0, 255)
    return grid


def save_png(grid: np.ndarray, path: Path, header: str = "", columns: tuple[str, ...] = (), cell: int = 0, gap: int = 2) -> None:
    """Write a uint8 grid upscaled SCALE× (nearest) under a one-line header, or under one label per
    column of `cell`-pixel images (`columns`), each centred over its column."""
    from PIL import Image, ImageDraw, ImageFont

    big = np.kron(grid, np.ones((SCALE, SCALE), np.uint8))
    if not header and not columns:
        Image.fromarray(big).save(path)
        return
    canvas = np.full((big.shape[0] + 16, big.shape[1]), 255, np.uint8)
    canvas[16:] = big
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    if columns:
        font = ImageFont.load_default(size=11)
        for j, label in enumerate(columns):
            centre = (j * (cell + gap) + cell / 2) * SCALE
            draw.text((centre, 8), fit_text(label, font, cell * SCALE), fill=0, font=font, anchor="mm")
    else:
        draw.text((2, 2), header, fill=0)
    image.save(path)


def figure_pairs(generator: Generator, test: FaceSet, pairs: np.ndarray, path: Path, rows: int = 8) -> None:
    """Figures 5/9/10: input | stage 1 | stage 2 | target for the first `rows` pairs."""
    pairs = pairs[:rows]
    images, codes = test.images, test.codes(generator.edit_factor)
    stage1, stage2 = generator.generate(images[pairs[:, 0]], codes[pairs[:, 1]])
    grid = [[images[s], a, b, images[t]] for (s, t), a, b in zip(pairs, stage1, stage2)]
    save_png(tile(grid), path, columns=("input", "stage 1", "stage 2", "target"), cell=images.shape[2])


def figure_all_targets(generator: Generator, sources: np.ndarray, path: Path) -> None:
    """Figure 8: each source followed by its stage-2 image for every target value in vocabulary order."""
    vocab = len(generator.vocabulary)
    repeated = np.repeat(sources, vocab, axis=0)
    _, stage2 = generator.generate(repeated, np.tile(np.arange(vocab), len(sources)))
    grid = [[src, *stage2[i * vocab : (i + 1) * vocab]] for i, src in enumerate(sources)]
    save_png(tile(grid), path, columns=("input", *generator.vocabulary), cell=sources.shape[2])


def figure_value_grid(generator: Generator, source: np.ndarray, path: Path) -> None:
    """Figure 8 for a model editing two factors: one source face (first column, first row), then its stage-2
    image for every pair of values, a row per value of the second factor, a column per value of the first."""
    first, second = (generator.factor_vocabularies[f] for f in generator.factors[:2])
    vocabulary = list(generator.vocabulary)
    codes = [vocabulary.index(join_values((a, b))) for b in second for a in first]
    _, stage2 = generator.generate(np.repeat(source[None], len(codes), axis=0), np.asarray(codes))
    blank = np.full(source.shape, 255.0)
    grid = [[source if r == 0 else blank, *stage2[r * len(first) : (r + 1) * len(first)]] for r in range(len(second))]
    save_png(tile(grid), path, columns=("input", *first), cell=source.shape[1])


def figure_attribute_maps(generator: Generator, path: Path) -> None:
    """Figure 4: the attribute maps of each target value (one row per value), each map min–max scaled."""
    maps = generator.attribute_maps()  # (V, 7, h, w)
    lo = maps.min(axis=(2, 3), keepdims=True)
    hi = maps.max(axis=(2, 3), keepdims=True)
    scaled = 255 * (maps - lo) / np.maximum(hi - lo, 1e-12)
    save_png(tile([list(row) for row in scaled]), path, "rows: " + " ".join(generator.vocabulary))


def evaluate_generation(generator: Generator, faces: FaceSet, out: str | Path, count: int = 10_000,
                        seed: int = 0, batch_size: int = 256, force: bool = False) -> dict:
    """Write table.md, table.json and the figures for one model on one FaceSet's test split, atomically.

    An existing `out` is replaced only if it is an earlier evaluation (table.json) holding nothing else, or with `force`.
    """
    test, pairs = sample_test_pairs(generator, faces, count, seed)
    record = pairs_table(generator, test, pairs, seed, batch_size)
    record["provenance"] = provenance(seed=seed, data=faces.info.name, checkpoint=str(generator.path))
    shuffled = pairs[np.random.default_rng(seed + 1).permutation(len(pairs))]
    with atomic_dir(out, kind=KIND, force=force) as tmp:
        (tmp / "table.md").write_text(table_markdown(record))
        (tmp / TABLE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        figure_pairs(generator, test, shuffled, tmp / PAIR_FIGURES.get(generator.task, "figure5_pairs.png"))
        first = np.unique(shuffled[:6, 0])
        figure_all_targets(generator, test.images[first], tmp / "figure8_all_targets.png")
        if len(generator.factors) == 2:  # two edited factors: also one face over every pair of values, as a grid
            figure_value_grid(generator, test.images[first[0]], tmp / "figure8_value_grid.png")
        figure_attribute_maps(generator, tmp / "figure4_attribute_maps.png")
    return record
