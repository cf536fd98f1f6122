"""The benchmark report's Markdown: tables laid out like the paper's Tables 1–3, with the paper's figures in
columns beside ours, and report.md around them (report_markdown)."""

from __future__ import annotations

from typing import Mapping, Sequence

from retrieval.paper_figures import PAPER_KS, POSE_CLASSIFIER_ACCURACY, TABLE1_MSE, TABLE2_RECALL, TABLE3_RECALL


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


def index_note(record: dict) -> str:
    """How the report's rows used `rbg bench --index`, if given: read the gallery from it, or searched in it."""
    if not record.get("gallery_index"):
        return ""
    if record.get("gallery_index_views") == "all":
        return (f"; the row 'ours, all poses, --index' searched in the index `{record['gallery_index']}` "
                f"(all views, factory `{record.get('gallery_index_factory')}`)")
    return f" (read from the index `{record['gallery_index']}`)"


def report_markdown(record: dict) -> str:
    """report.md: Tables 1–3 laid out as the paper's, our figures beside the paper's, plus what made them."""
    rows = {c: [{"method": r["method"], "features": r["features"],
                 "recall": {int(k): 100 * v for k, v in r[f"criterion{c}"]["recall"].items()}} for r in record["results"]]
            for c in (1, 2)}
    gen = record.get("generation", {})
    mse = {f"stage {s}": gen[f"stage{s}_mse"] for s in (1, 2) if f"stage{s}_mse" in gen}
    data, model = record["data"], record["model"]
    edit, also = model["edit"], record["criterion2_factor"]
    split = data.get("split", "test")  # reports from before --split were all on test
    with_paper = model["task"] == "pose"  # the paper's Tables 1–3 are Multi-PIE pose figures
    lines = [
        f"# Retrieval by generation: {data['name']} — {model['task']} task",
        "",
        f"{record['queries']:,} random queries (seed {record['config']['seed']}) over a gallery of {data['gallery']:,} {split} images "
        f"({data[f'{split}_identities']} identities); model `{model['path']}` (sha256 {model['checkpoint_sha256'][:12]}), "
        f"features `{model['feature_layer']}`, FAISS `{record['config']['factory']}`, gallery normalization "
        f"`{record['config'].get('normalize', 'full')}`" + index_note(record) + ".",
        "",
        "## Table 1 — mean per-pixel generation error (MSE, 0–255 scale)",
        "",
        mse_table(mse, with_paper) if mse else "(not computed)",
        "",
        f"## Table 2 — criterion 1: identity and target {edit} correct",
        "",
        recall_table(rows[1], 1, with_paper=with_paper),
        "",
        f"## Table 3 — criterion 2: also the query's {also}" if record.get("criterion2_factors", True) else
        "## Table 3 — criterion 2",
        "",
        recall_table(rows[2], 2, with_paper=with_paper) if record.get("criterion2_values", 2) > 1 else
        f"(not informative here: the gallery has a single {also}, so criterion 2 equals criterion 1)"
        if record.get("criterion2_factors", True) else
        f"(not informative here: the faces vary in nothing besides identity and {edit}, so criterion 2 equals criterion 1)",
        "",
        "## Side figures",
        "",
        f"- 2-step {edit} classifier (`{record['config'].get('pose_classifier', 'logreg')}`) accuracy on the test "
        f"gallery: {100 * record['pose_classifier_accuracy']:.1f} %"
        + (f", read from `{record['pose_classifier_images']}`"
           if record.get("pose_classifier_images", "the gallery's own crops") != "the gallery's own crops" else "")
        + (f", fitted on {fitted['faces']:,} faces of {fitted['identities']} people ({' + '.join(fitted['splits'])})"
           if (fitted := record.get("pose_classifier_fitted_on")) else "")
        + (f" (paper: {POSE_CLASSIFIER_ACCURACY} % with VGG-Face fc6 features)" if with_paper else ""),
        f"- {edit} normalization's kept value = true value (a free {edit} estimate): "
        f"{100 * record['pose_normalization_accuracy']:.1f} %",
    ]
    if record.get("deep"):
        detected = record["deep"]["faces_detected"]
        lines.append(f"- Deep row: dlib on {record['deep']['images']}; dlib's detector found a face in "
                     f"{100 * detected:.1f} % of them (the others are taken whole)" if detected == detected else
                     f"- Deep row: dlib on {record['deep']['images']}")
    if record.get("fusion"):
        lines.append(f"- ours + Deep: descriptor weight {record['fusion']['weight']:g}, chosen on "
                     f"{record['fusion']['chosen_on']}")
    if record.get("chosen"):
        chosen = record["chosen"]
        lines.append(f"- ours, chosen on val: views {chosen['views']} (every pose's or the target pose's alone), "
                     f"Deep weight {chosen['weight']:g}, chosen on {chosen['chosen_on']}")
    if not with_paper:
        lines += ["", "The paper reports retrieval and Table 1 for the pose task on Multi-PIE only: no paper figures here."]
    lines += ["", "## How each row reads pixels", ""]
    lines += [f"- {r['method']} / {r['features']}: {r['pixels']}" for r in record["results"] if r.get("pixels")]
    if record.get("change_groups"):
        lines += ["", "## Figure 6 — recall@5 (criterion 1) per size of the change", ""]
        methods = list(record["change_groups"])
        groups = sorted({g for m in methods for g in record["change_groups"][m]}, key=float)
        lines.append("| method | " + " | ".join(f"{g}°" for g in groups) + " |")
        lines.append("|---|" + "---|" * len(groups))
        for m in methods:
            cells = [f"{100 * record['change_groups'][m][g]['recall']:.1f}%" if g in record["change_groups"][m] else "—" for g in groups]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if record.get("value_pairs"):
        lines += ["", f"## recall@1 (criterion 1) per {edit} change: source (rows) × target (columns)", ""]
        for method, pairs in record["value_pairs"].items():
            lines += [f"**{method}**", "", *change_matrix(pairs, model["vocabulary"], edit), ""]
    lines += ["", "## Timings (seconds)", ""] + [f"- {k}: {v:.1f}" for k, v in record["timings_seconds"].items()]
    lines += ["", "## Made by", "", f"`{record['provenance']['command']}`", "",
              "Pictures: `recall.png`, " + ("`figure6_change.png`, " if record.get("change_groups") else "")
              + "`figure7_retrievals.png`" + (", `generation/`." if record.get("generation") else "."), ""]
    return "\n".join(lines)


def change_matrix(pairs: dict, vocabulary: list[str], edit: str) -> list[str]:
    """Markdown rows of one method's recall@1 per "source → target" as a source × target matrix ("—": no query)."""
    lines = [f"| {edit}: source ↓ target → | " + " | ".join(vocabulary) + " |", "|---|" + "---|" * len(vocabulary)]
    for source in vocabulary:
        cells = []
        for target in vocabulary:
            cell = pairs.get(f"{source} → {target}")
            cells.append("·" if source == target else f"{100 * cell['recall']:.1f}" if cell else "—")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return lines
