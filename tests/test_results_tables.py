"""The result tables of README.md and docs/*.md are the ones docs/results' files give (benchmarks/results_tables.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import results_tables

ROOT = Path(__file__).resolve().parent.parent


def row(method: str, features: str, c1: float, c2: float) -> dict:
    return {"method": method, "features": features,
            "criterion1": {"recall": {"1": c1, "5": c1, "20": c1}}, "criterion2": {"recall": {"1": c2, "5": c2, "20": c2}}}


def report(name: str, rows: list[dict], command: str = "rbg bench") -> dict:
    return {"data": {"name": name, "gallery": 1200}, "criterion2_factor": "expression", "results": rows,
            "provenance": {"command": command}}


def test_every_generated_table_of_the_readme_and_docs_matches_its_result_files():
    pages = results_tables.pages()
    assert ROOT / "README.md" in pages and any(p.parent == ROOT / "docs" for p in pages)
    for page in pages:
        text = page.read_text()
        assert results_tables.render(text) == text, f"{page}: run python benchmarks/results_tables.py"
    readme = (ROOT / "README.md").read_text()
    assert " headline -->" in readme, "the README's first screen has the generated headline table"


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


def test_headline_takes_the_recipes_default_ours_row_where_the_report_has_it():
    rows = [row("2-step retrieval", "image", 0.3, 0.1), row("ours, true pose", "our 2nd network", 0.95, 0.5),
            row("ours, all poses", "our 2nd network", 0.9, 0.4), row("ours, all poses, classifier pose", "our 2nd network", 0.8, 0.3)]
    ours, two_step = results_tables.headline_rows(rows)
    assert ours["method"] == "ours, all poses, classifier pose" and two_step["method"] == "2-step retrieval"
    chosen = results_tables.headline_rows([*rows, row("ours, chosen on val", "our 2nd network, views …", 0.7, 0.3)])[0]
    assert chosen["method"] == "ours, chosen on val"  # the bench's default row comes first


def test_headline_otherwise_takes_the_best_ours_row_first_listed_on_ties_never_a_true_pose_one():
    rows = [row("2-step retrieval", "image", 0.1, 0.1), row("ours", "image", 0.7, 0.6), row("ours", "our 2nd network", 0.8, 0.7),
            row("ours, pose-aware", "our 2nd network", 0.8, 0.7), row("ours, true pose", "our 2nd network", 0.9, 0.8)]
    ours, _ = results_tables.headline_rows(rows)
    assert (ours["method"], ours["features"]) == ("ours", "our 2nd network")


def test_headline_best_two_step_row_is_the_highest_at_criterion_1_never_the_true_pose_one():
    rows = [row("2-step retrieval", "image", 0.6, 0.3), row("2-step, true pose", "image", 0.8, 0.2),
            row("2-step retrieval", "Deep", 0.7, 0.4), row("ours", "image", 0.5, 0.1)]
    _, two_step = results_tables.headline_rows(rows)
    assert (two_step["method"], two_step["features"]) == ("2-step retrieval", "Deep")


def test_headline_sets_each_report_on_a_line_in_the_markers_order_the_better_figure_in_bold(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(report("set-a", [row("2-step retrieval", "Deep", 0.4, 0.2), row("ours", "image", 0.75, 0.125)])))
    (tmp_path / "b.json").write_text(json.dumps(report("set-b", [row("2-step retrieval", "image", 0.5, 0.25), row("ours", "image", 0.25, 0.5)])))
    out = results_tables.render("<!-- results: b.json,a.json headline -->\n<!-- /results -->\n", tmp_path)
    lines = [line for line in out.splitlines() if line.startswith("| set-")]
    assert lines == ["| set-b | 1,200 | expression | ours / image | 25.0 | **50.0** | 2-step retrieval / image | **50.0** | 25.0 |",
                     "| set-a | 1,200 | expression | ours / image | **75.0** | 12.5 | 2-step retrieval / Deep | 40.0 | **20.0** |"]
    assert "From `b.json`, `a.json`" in out


def test_a_one_file_layout_given_several_files_or_a_missing_file_is_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(report("a", [row("ours", "image", 0.5, 0.5)])))
    with pytest.raises(results_tables.MarkerError, match="2 files for layout 'bench'"):
        results_tables.render("<!-- results: a.json,a.json bench -->\n<!-- /results -->", tmp_path)
    with pytest.raises(results_tables.MarkerError, match="nope.json, which does not exist"):
        results_tables.render("<!-- results: a.json,nope.json headline -->\n<!-- /results -->", tmp_path)


def test_the_command_rewrites_tables_in_the_readme_and_in_docs_pages_from_root_paths(tmp_path, capsys):
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "r.json").write_text(json.dumps(report("r", [row("ours", "image", 0.5, 0.25)], "rbg bench --out r")))
    marker = "<!-- results: docs/results/r.json bench -->\nstale\n<!-- /results -->\n"
    for page in ("README.md", "docs/results.md", "docs/speed.md"):
        (tmp_path / page).write_text(f"# {page}\n{marker}")
    assert results_tables.main(["--root", str(tmp_path), "--check"]) == 1
    assert results_tables.main(["--root", str(tmp_path)]) == 0
    for page in ("README.md", "docs/results.md", "docs/speed.md"):
        text = (tmp_path / page).read_text()
        assert "stale" not in text and "| ours | image | **50.0** |" in text and "Made by `rbg bench --out r`." in text, page
    assert results_tables.main(["--root", str(tmp_path), "--check"]) == 0


def test_a_bad_marker_is_one_error_line_exit_2_and_no_page_is_changed(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- results: docs/results/gone.json bench -->\nstale\n<!-- /results -->\n")
    (tmp_path / "docs" / "a.md").write_text("<!-- results: docs/results/gone.json nosuchlayout -->\nstale\n<!-- /results -->\n")
    assert results_tables.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: ") and "gone.json" in err[0]
    assert (tmp_path / "README.md").read_text().count("stale") == 1
