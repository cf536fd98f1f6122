"""Test setup: the scripts in benchmarks/ import one another by module name, so their folder goes on sys.path once."""

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)  # appended: a benchmark script never shadows an installed package
