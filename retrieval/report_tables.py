"""Markdown tables laid out like the paper's Tables 1–3, with the paper's figures in columns beside ours."""

from __future__ import annotations

from typing import Mapping, Sequence

from retrieval.paper_figures import PAPER_KS, TABLE1_MSE, TABLE2_RECALL, TABLE3_RECALL


def _cell(value: float | None, digits: int = 1, suffix: str = "%") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def recall_table(rows: Sequence[Mapping], criterion: int, ks: Sequence[int] = PAPER_KS, with_paper: bool = True) -> str:
    """A Table-2/3 style Markdown table; rows carry method, features and recall {k: percent}.

    With `with_paper` (the pose task: the paper reports retrieval on Multi-PIE poses only), paper
    figures appear beside ours when the (method, features) pair is one the paper reports, and
    paper-only rows (e.g. VGG-16, Yim et al.) are listed after ours for reference.
    """
    paper = (TABLE2_RECALL if criterion == 1 else TABLE3_RECALL) if with_paper else {}
    head = ["Method", "Features"] + [f"R@{k}" for k in ks] + ([f"paper R@{k}" for k in PAPER_KS] if with_paper else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shown = set()
    for row in rows:
        key = (row["method"], row["features"])
        shown.add(key)
        ours = [_cell(row["recall"].get(k)) for k in ks]
        theirs = [_cell(v) for v in paper.get(key, (None,) * len(PAPER_KS))] if with_paper else []
        lines.append("| " + " | ".join([row["method"], row["features"], *ours, *theirs]) + " |")
    for key, values in paper.items():
        if key not in shown:
            lines.append("| " + " | ".join([key[0], key[1], *(["—"] * len(ks)), *(_cell(v) for v in values)]) + " |")
    return "\n".join(lines)


def mse_table(mse: Mapping[str, float], with_paper: bool = True) -> str:
    """A Table-1 style Markdown table: mean per-pixel MSE (0–255 scale) per stage, ours beside the paper's (pose task)."""
    if not with_paper:
        return "\n".join(["| stage | MSE (ours) |", "|---|---|"] + [f"| {stage} | {value:.2f} |" for stage, value in mse.items()])
    lines = ["| stage | MSE (ours) | MSE (paper, Multi-PIE) |", "|---|---|---|"]
    for stage, value in mse.items():
        lines.append(f"| {stage} | {value:.2f} | {_cell(TABLE1_MSE.get(stage), 2, '')} |")
    return "\n".join(lines)
