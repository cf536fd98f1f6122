"""The README's result tables are the ones docs/results' files give (benchmarks/results_tables.py)."""

from __future__ import annotations

import json
from pathlib import Path

import results_tables

ROOT = Path(__file__).resolve().parent.parent


def test_every_readme_table_matches_its_result_file():
    text = (ROOT / "README.md").read_text()
    assert results_tables.MARKER.search(text), "the README has generated tables"
    assert results_tables.render(text) == text, "run: python benchmarks/results_tables.py"


def test_a_table_is_regenerated_from_its_file_with_the_command_that_made_it(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({
        "results": [{"method": "ours", "features": "image",
                     "criterion1": {"recall": {"1": 0.5, "5": 0.75, "20": 1.0}},
                     "criterion2": {"recall": {"1": 0.25, "5": 0.5, "20": 0.5}}}],
        "provenance": {"command": "rbg bench --model m --data d --out r"}}))
    text = "before\n<!-- results: r.json bench -->\nstale\n<!-- /results -->\nafter\n"
    out = results_tables.render(text, tmp_path)
    assert "stale" not in out and "| ours | image | **50.0** | **75.0** | **100.0** | **25.0** | **50.0** | **50.0** |" in out
    assert "Made by `rbg bench --model m --data d --out r`." in out and out.endswith("<!-- /results -->\nafter\n")
