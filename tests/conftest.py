"""Test setup: the scripts in benchmarks/ import one another by module name, so their folder goes on sys.path
once; the cmu_faces photos (read in place from ../shared beside the repository) are one fixture."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)  # appended: a benchmark script never shadows an installed package


CMU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmu_faces"


@pytest.fixture(scope="session")
def cmu() -> tuple[np.ndarray, pd.DataFrame]:
    """cmu_faces' 624 photos (64×60 uint8) and their labels; the test is skipped where ../shared is absent."""
    if not (CMU / "images.npy").is_file():
        pytest.skip(f"{CMU} is absent")
    return np.load(CMU / "images.npy"), pd.read_csv(CMU / "labels.csv")
