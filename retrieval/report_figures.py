"""The benchmark's pictures: recall bars per method and criterion, and Figure 6 (recall@5 per change)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facedata.atomic import atomic_file  # noqa: E402
from facedata.faceset import FaceSet  # noqa: E402
from retrieval.figures import write_query_grid  # noqa: E402
from retrieval.protocol import QuerySet  # noqa: E402
from retrieval.query import QueryResult, result_table  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def recall_bars(results: list[dict], path: Path) -> None:
    """Grouped bars: recall@K of every method, one panel per criterion."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, criterion in zip(axes, (1, 2)):
        ks = sorted(int(k) for k in results[0][f"criterion{criterion}"]["recall"])
        width = 0.8 / len(results)
        for i, row in enumerate(results):
            values = [100 * row[f"criterion{criterion}"]["recall"][str(k)] if str(k) in row[f"criterion{criterion}"]["recall"]
                      else 100 * row[f"criterion{criterion}"]["recall"][k] for k in ks]
            ax.bar(np.arange(len(ks)) + i * width, values, width, label=f"{row['method']} / {row['features']}")
        ax.set_xticks(np.arange(len(ks)) + 0.4 - width / 2, [f"R@{k}" for k in ks])
        ax.set_title(f"criterion {criterion}")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("recall (%)")
    axes[1].legend(fontsize=8, loc="upper left")
    _save(fig, path)


def change_curve(groups: dict, edit: str, path: Path, k: int = 5) -> None:
    """Figure 6: recall@k per size of the change (degrees), one line per method."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, per_group in groups.items():
        xs = sorted(per_group, key=float)
        ax.plot([float(x) for x in xs], [100 * per_group[x]["recall"] for x in xs], marker="o", label=method)
    ax.set_xlabel(f"{edit} change (degrees)")
    ax.set_ylabel(f"recall@{k} (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def retrieval_grid(query_images: np.ndarray, generated: np.ndarray, queries: QuerySet, gallery: FaceSet,
                   distances: np.ndarray, rows: np.ndarray, path: Path) -> None:
    """Figure 7 for the first benchmark queries: query | generated | top-k, framed by criterion 1."""
    q, k = rows.shape
    assert query_images.shape[0] == generated.shape[0] == q, (query_images.shape, generated.shape, rows.shape)
    faces = queries.faces(gallery).iloc[:q]
    labels = tuple(f"{gallery.info.name}:{p}" for p in queries.positions[:q])
    targets = tuple(queries.targets[:q])
    truth = tuple(faces.to_dict("records"))
    table = result_table(gallery.faces.reset_index(drop=True), distances, rows, labels, targets, truth, queries.edit)
    result = QueryResult(table=table, queries=query_images, generated=np.clip(generated, 0, 255).round().astype(np.uint8),
                         labels=labels, targets=targets, truth=truth, edit_factor=queries.edit, k=k)
    retrieved = gallery.images[np.where(rows >= 0, rows, 0)]  # (q, k, H, W); empty places are drawn blank
    write_query_grid(result, retrieved, path, title="ours / our 2nd network: query | generated | top-5")
