"""The README's result tables, generated from the result files under docs/results/.

    .venv/bin/python benchmarks/results_tables.py            # rewrite the tables in README.md
    .venv/bin/python benchmarks/results_tables.py --check    # exit 1 if any table differs from its file

A generated table sits between two markers naming its file and its layout:

    <!-- results: docs/results/kdef_skip.json bench -->
    ...table...
    <!-- /results -->

Each layout below renders one kind of result file (an `rbg bench` report.json, a benchmark script's
JSON) as Markdown, and a line under the table names the command that made the file, so every figure
in a table has its file and its command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
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


LAYOUTS: dict[str, Callable[[dict], str]] = {
    "bench": bench_both,
    "bench-table2": bench_paper(1),
    "bench-table3": bench_paper(2),
    "normalize": _benchmark_markdown("bench_normalize"),
    "sharded": _benchmark_markdown("bench_sharded"),
    "scale": _benchmark_markdown("bench_scale"),
}


def render(text: str, root: Path = ROOT) -> str:
    """`text` with every marked table regenerated from its file."""
    def replace(match: re.Match) -> str:
        path, layout = root / match["file"], match["layout"]
        if layout not in LAYOUTS:
            raise SystemExit(f"Error: README marker names layout '{layout}' (known: {', '.join(LAYOUTS)})")
        if not path.is_file():
            raise SystemExit(f"Error: README marker names {match['file']}, which does not exist")
        body = LAYOUTS[layout](json.loads(path.read_text()))
        return f"{match.group(1)}{body}\n{match.group(5)}"

    return MARKER.sub(replace, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true", help="only report whether the README's tables are current")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    updated = render(text, readme.parent)
    if args.check:
        if updated != text:
            print(f"{readme}: tables differ from docs/results (run benchmarks/results_tables.py)", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        from facedata.atomic import atomic_file

        with atomic_file(readme) as tmp:
            tmp.write_text(updated)
    print(f"{readme}: {len(MARKER.findall(text))} tables from docs/results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
