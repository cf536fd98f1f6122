"""The result tables of README.md and docs/*.md, generated from the result files under docs/results/.

    .venv/bin/python benchmarks/results_tables.py            # rewrite the tables in README.md and docs/*.md
    .venv/bin/python benchmarks/results_tables.py --check    # exit 1 if any table differs from its files
    .venv/bin/python benchmarks/results_tables.py docs/results.md   # only the files named

A generated table sits between two markers naming its file (or files, joined by commas; paths from
the repository root, wherever the page lies) and its layout:

    <!-- results: docs/results/kdef_skip.json bench -->
    ...table...
    <!-- /results -->

Each layout below renders one kind of result file (an `rbg bench` report.json, a benchmark script's
JSON) as Markdown, and a line under the table names the command that made the file, so every figure
in a table has its file and its command. The `headline` layout sets several bench reports side by
side: ours against the best 2-step row on each set.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs/*.md")  # the pages whose tables are generated, as globs from the root
MARKER = re.compile(r"(<!-- results: (?P<file>\S+) (?P<layout>\S+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def _bold_best(cells: list[list[str]], columns: range) -> list[list[str]]:
    """Each column's highest figure in bold (ties all bold)."""
    for c in columns:
        values = [float(row[c]) for row in cells if row[c] not in ("—", "")]
        best = max(values) if values else None
        for row in cells:
            if best is not None and row[c] not in ("—", "") and float(row[c]) == best:
                row[c] = f"**{row[c]}**"
    return cells


def _table(head: list[str], cells: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in cells])


def _made_by(record: dict) -> str:
    command = record.get("provenance", {}).get("command")
    return f"\n\nMade by `{command}`." if command else ""


def bench_both(record: dict) -> str:
    """An `rbg bench` report: one row per method, criterion 1 and 2 at R@1/5/20, the best in bold."""
    ks = ("1", "5", "20")
    cells = [[r["method"], r["features"], *(f"{100 * r[f'criterion{c}']['recall'][k]:.1f}" for c in (1, 2) for k in ks)]
             for r in record["results"]]
    head = ["Method", "Features"] + [f"C{c} R@{k}" for c in (1, 2) for k in ks]
    return _table(head, _bold_best(cells, range(2, 8))) + _made_by(record)


def bench_paper(criterion: int) -> Callable[[dict], str]:
    """An `rbg bench` report as the paper's Table 2 (criterion 1) or 3 (criterion 2), paper figures beside."""
    from retrieval.report_tables import recall_table

    def render(record: dict) -> str:
        rows = [{"method": r["method"], "features": r["features"],
                 "recall": {int(k): 100 * v for k, v in r[f"criterion{criterion}"]["recall"].items()}}
                for r in record["results"]]
        return recall_table(rows, criterion, with_paper=record["model"]["task"] == "pose") + _made_by(record)

    return render


def _benchmark_markdown(module: str) -> Callable[[dict], str]:
    """A benchmark script's own `markdown(record)` table, with the command under it."""
    def render(record: dict) -> str:
        if str(ROOT / "benchmarks") not in sys.path:
            sys.path.insert(0, str(ROOT / "benchmarks"))
        return importlib.import_module(module).markdown(record) + _made_by(record)

    return render


class MarkerError(ValueError):
    """A results marker names a layout or a result file that does not exist, or files its layout cannot set."""


OURS_DEFAULTS = ("ours, chosen on val", "ours, all poses, classifier pose")  # the default rows, first present wins


def _r1(row: dict, criterion: int) -> float:
    return row[f"criterion{criterion}"]["recall"]["1"]


def headline_rows(results: Sequence[dict]) -> tuple[dict, dict]:
    """(ours, best 2-step) of one bench report, the rows the headline table sets side by side.

    Ours: the first OURS_DEFAULTS row the report has (what `rbg bench`'s defaults give), else the
    "ours" row with the highest criterion-1 R@1 (ties: the row listed first, so the paper's own
    "ours" row before its variants). Best 2-step: the 2-step row with the highest criterion-1 R@1.
    Rows given the true pose are neither: the true pose is an upper bound, not a method.
    """
    real = [r for r in results if "true pose" not in r["method"]]
    default = next(([r] for name in OURS_DEFAULTS for r in real if r["method"] == name), [])
    ours = default or [r for r in real if r["method"].startswith("ours")]
    two_step = [r for r in real if r["method"].startswith("2-step")]
    if not ours or not two_step:
        raise MarkerError("a headline report needs an 'ours' row and a '2-step' row")
    return max(ours, key=lambda r: _r1(r, 1)), max(two_step, key=lambda r: _r1(r, 1))


def headline(records: Sequence[dict], files: Sequence[str]) -> str:
    """Ours against the best 2-step row on each set: criterion-1 and -2 R@1, each row named, the better in bold."""
    head = ["set", "gallery faces", "C2 also matches", "ours: row", "C1 R@1", "C2 R@1",
            "best 2-step: row", "C1 R@1", "C2 R@1"]
    cells = []
    for record in records:
        ours, two_step = headline_rows(record["results"])
        figures = {}
        for c in (1, 2):
            a, b = 100 * _r1(ours, c), 100 * _r1(two_step, c)
            figures[c] = [f"**{a:.1f}**" if a > b else f"{a:.1f}", f"**{b:.1f}**" if b > a else f"{b:.1f}"]
        edit = record.get("model", {}).get("edit", "pose")
        name = record["data"]["name"] + (f" ({edit})" if edit != "pose" else "")  # the edit, where it is not the pose
        cells.append([name, f"{record['data']['gallery']:,}", str(record.get("criterion2_factor", "—")),
                      f"{ours['method']} / {ours['features']}", figures[1][0], figures[2][0],
                      f"{two_step['method']} / {two_step['features']}", figures[1][1], figures[2][1]])
    names = ", ".join(f"`{f}`" for f in files)
    return _table(head, cells) + f"\n\nFrom {names}; the command that made each is under its table in docs/results.md."


def light_change(record: dict) -> str:
    """Criterion-1 R@1 by the angle between source and target light, for the report's rows that have it."""
    groups = record["light_change_angle"]["rows"]
    bins = next(iter(groups.values()))
    head = ["Method / features"] + [f"{g['angle_from']}–{min(g['angle_to'], 180)}° ({g['queries']} queries)" for g in bins]
    cells = [[name] + [f"{100 * g['recall_at_1']:.1f}" for g in rows] for name, rows in groups.items()]
    return _table(head, _bold_best(cells, range(1, len(head)))) + _made_by(record)


LAYOUTS: dict[str, Callable[[dict], str]] = {  # one result file each
    "bench": bench_both,
    "bench-table2": bench_paper(1),
    "bench-table3": bench_paper(2),
    "normalize": _benchmark_markdown("bench_normalize"),
    "sharded": _benchmark_markdown("bench_sharded"),
    "scale": _benchmark_markdown("bench_scale"),
    "compact": _benchmark_markdown("bench_compact"),
    "scale-views": _benchmark_markdown("bench_scale_views"),
    "half": _benchmark_markdown("bench_half"),
    "light-change": light_change,
    "detect": _benchmark_markdown("detect_faces"),
    "crop-offsets": _benchmark_markdown("crop_offsets"),
    "photo-path": _benchmark_markdown("photo_path"),
    "framing": _benchmark_markdown("framing_sensitivity"),
    "chained": _benchmark_markdown("bench_chained"),
}
COMBINED: dict[str, Callable[[Sequence[dict], Sequence[str]], str]] = {  # several result files, in the marker's order
    "headline": headline,
}


def render(text: str, root: Path = ROOT) -> str:
    """`text` with every marked table regenerated from its files (paths from `root`)."""
    def replace(match: re.Match) -> str:
        files, layout = match["file"].split(","), match["layout"]
        if layout not in LAYOUTS and layout not in COMBINED:
            raise MarkerError(f"marker names layout '{layout}' (known: {', '.join([*LAYOUTS, *COMBINED])})")
        if layout in LAYOUTS and len(files) != 1:
            raise MarkerError(f"marker names {len(files)} files for layout '{layout}', which shows one")
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            raise MarkerError(f"marker names {missing[0]}, which does not exist")
        records = [json.loads((root / f).read_text()) for f in files]
        body = LAYOUTS[layout](records[0]) if layout in LAYOUTS else COMBINED[layout](records, files)
        return f"{match.group(1)}{body}\n{match.group(5)}"

    return MARKER.sub(replace, text)


def pages(root: Path = ROOT) -> list[Path]:
    """The pages whose tables are generated: README.md and docs/*.md."""
    return [path for pattern in PAGES for path in sorted(root.glob(pattern)) if path.is_file()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", type=Path, help="Markdown files to update (default: README.md and docs/*.md)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder the markers' result paths start from")
    parser.add_argument("--check", action="store_true", help="only report whether the tables are current")
    args = parser.parse_args(argv)
    rendered = {}
    for page in args.pages or pages(args.root):  # every page rendered before any is written: an error changes none
        try:
            text = page.read_text()
            rendered[page] = (text, render(text, args.root))
        except (OSError, MarkerError, ValueError, KeyError) as exc:
            reason = f"a result file lacks {exc}" if isinstance(exc, KeyError) else exc
            print(f"Error: {page}: {reason}", file=sys.stderr)
            return 2
    stale = [page for page, (text, updated) in rendered.items() if updated != text]
    for page, (text, updated) in rendered.items():
        tables = len(MARKER.findall(text))
        if page not in stale:
            print(f"{page}: {tables} tables, current")
        elif args.check:
            print(f"{page}: tables differ from docs/results (run benchmarks/results_tables.py)", file=sys.stderr)
        else:
            from facedata.atomic import atomic_file

            with atomic_file(page) as tmp:
                tmp.write_text(updated)
            print(f"{page}: {tables} tables from docs/results")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
