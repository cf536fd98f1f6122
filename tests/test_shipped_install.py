"""An installed copy of the package carries the shipped weights: `rbg generate --model synthpie-pose` works outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# Runs the installed `rbg` console script in-process, logging every file Python opens (sys.addaudithook).
RUN_RBG = """
import json, sys
from importlib.metadata import distributions
site, log, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
opened = []
sys.addaudithook(lambda event, detail: event == "open" and opened.append(str(detail[0])))
(dist,) = [d for d in distributions(path=[site]) if d.metadata["Name"] == "retrieval-by-generation"]
(rbg,) = [e for e in dist.entry_points if e.group == "console_scripts" and e.name == "rbg"]
sys.argv = ["rbg", *args]
try:
    rbg.load()()
finally:
    with open(log, "w") as fh:
        json.dump(opened, fh)
"""


def copy_sources(target: Path) -> Path:
    """The checkout's build inputs (pyproject, README and every top-level package) in `target`, so the build writes nothing here."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in (p for p in ROOT.iterdir() if (p / "__init__.py").is_file()):
        shutil.copytree(package, target / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.slow
def test_rbg_generate_reads_the_shipped_pose_model_from_an_installed_copy_in_any_folder(tmp_path):
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), str(copy_sources(tmp_path / "src"))],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    for name in ("synthpie-pose", "synthpie-accessory"):
        shipped = sorted(p.name for p in (site / "generator" / "shipped" / name).iterdir())
        assert shipped == sorted(p.name for p in (ROOT / "generator" / "shipped" / name).iterdir() if p.is_file())

    work = tmp_path / "elsewhere"
    work.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)).save(work / "face.png")
    args = ["generate", "--model", "synthpie-pose", "face.png", "--no-align", "--pose", "+30", "--out", "face+30.png"]
    env = {**os.environ, "PYTHONPATH": str(site)}  # the package from the install, its dependencies from this venv
    run = subprocess.run([sys.executable, "-c", RUN_RBG, str(site), str(tmp_path / "opened.json"), json.dumps(args)],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert Image.open(work / "face+30.png").size == (32, 32)
    assert (site / "facedata" / "models" / "blazeface_short_range.safetensors").is_file()  # the default face detector
    assert (site / "facedata" / "models" / "face_check.safetensors").is_file()  # and its face check

    opened = [Path(p) for p in json.loads((tmp_path / "opened.json").read_text()) if not p.isdigit()]
    weights = [p for p in opened if p.name == "model.safetensors"]
    assert weights and all(p.is_relative_to(site / "generator" / "shipped" / "synthpie-pose") for p in weights), weights
    environment = Path(sys.prefix).resolve()  # the venv, which may live inside the checkout (.venv)
    from_checkout = [p for p in opened if p.is_absolute() and p.resolve().is_relative_to(ROOT)
                     and not p.resolve().is_relative_to(environment)]
    assert not from_checkout, f"read from the checkout: {from_checkout[:5]}"
