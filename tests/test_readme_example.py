"""The README's Python example runs as printed, on a tiny demo-like folder: the shipped model, a built index, a photo."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facedata.faceset import FaceSet
from facedata.synth.dataset import render_faceset
from facedata.synth.presets import synth_config
from generator.inference import Generator
from index.faiss_index import build_index

ROOT = Path(__file__).resolve().parent.parent


def readme_python() -> str:
    """The README's one ```python block."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, f"the README has {len(blocks)} python blocks, the test runs exactly one"
    return blocks[0]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> tuple[Path, dict]:
    """runs/demo/{faces,index} as `make demo` leaves them, at a smaller size (3 unseen people, one light), and face.png."""
    root = tmp_path_factory.mktemp("demo")
    config = synth_config("paper", identities=103, train_identities=100, illumination_subset=("07",))
    faces = render_faceset(config, progress=False)
    faces.write(root / "runs/demo/faces")
    gallery = FaceSet.open(root / "runs/demo/faces").split("test")
    build_index(Generator.load("synthpie-pose", device="cpu"), gallery, root / "runs/demo/index", progress=False)
    table = gallery.faces.reset_index(drop=True)
    row = int(np.flatnonzero(table["pose"].astype(str) == "0")[0])  # a frontal face of an unseen person
    Image.fromarray(gallery.image(row)).save(root / "face.png")
    return root, {"identity": str(table["identity"][row])}


def test_readme_python_example_finds_the_photos_person_turned_to_plus_30(demo_folder, monkeypatch, capsys):
    root, truth = demo_folder
    monkeypatch.chdir(root)
    exec(compile(readme_python(), "README.md", "exec"), {})
    hits = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert [int(h[0]) for h in hits] == [1, 2, 3, 4, 5], hits  # rank, distance, identity, pose, source
    assert all(float(a[1]) <= float(b[1]) for a, b in zip(hits, hits[1:])), "hits come best first"
    assert (hits[0][2], hits[0][3]) == (truth["identity"], "+30"), hits
    generated = np.asarray(Image.open(root / "face+30.png"))
    assert generated.shape == (32, 32) and generated.dtype == np.uint8
