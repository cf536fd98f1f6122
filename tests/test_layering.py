"""The packages' layering: facedata → generator → index → retrieval → rbg (the application) → benchmarks.

No library package imports the application, and no library module imports the command-line or web
frameworks, which only the application uses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("facedata", "generator", "index", "retrieval", "rbg")
FRAMEWORKS = ("click", "fastapi", "fastapi_offline", "uvicorn", "starlette")


def imported(path: Path) -> set[str]:
    """The top-level names of every module a file imports (at any depth of its code)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", LAYERS[:-1])
def test_a_library_package_imports_no_layer_above_it_and_no_application_framework(package):
    above = set(LAYERS[LAYERS.index(package) + 1:]) | {"benchmarks"}
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = imported(path) & (above | set(FRAMEWORKS))
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_only_retrieval_search_generates_a_query_and_searches_an_index():
    callers = {path.relative_to(ROOT).as_posix() for package in LAYERS for path in (ROOT / package).rglob("*.py")
               if "search_by_generation(" in path.read_text()}
    assert callers == {"retrieval/search.py", "retrieval/query.py", "retrieval/benchmark.py", "rbg/serve/engine.py"}
