"""What the commands do write: same-kind outputs replaced, --force, JPEG outputs, one image loader for
generate and query, 16-bit images scaled, paths in index.json that work from any folder, write faults."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fakes import save_untrained
from PIL import Image
from test_training import tiny_faceset

from facedata.imageio import load_face
from generator.inference import Generator
from rbg.cli import cli


def rbg(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An untrained 16×16 checkpoint, a tiny FaceSet and its index, a face PNG, a manifest with images.npy."""
    root = tmp_path_factory.mktemp("outputs")
    model = save_untrained(root / "model")
    faces = tiny_faceset(identities=4, test_identities=2)
    faces.write(root / "faces")
    result = rbg("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", root / "index", "--quiet")
    assert result.exit_code == 0, result.output
    Image.fromarray(faces.image(3)).save(root / "face.png")
    (root / "man").mkdir()
    pd.DataFrame({"identity": ["a", "a", "b", "b"], "pose": ["0", "+15", "0", "+15"]}).to_csv(root / "man" / "labels.csv", index=False)
    np.save(root / "man" / "images.npy", faces.images[:4])
    return root, model


def test_an_output_of_the_same_kind_is_replaced_without_force(setup, tmp_path):
    root, _ = setup
    for _ in range(2):
        result = rbg("data", "import", "manifest", root / "man" / "labels.csv", "--out", tmp_path / "imported")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "imported" / "faceset.json").is_file()


def test_force_replaces_a_folder_of_something_else_but_never_the_input(setup, tmp_path):
    root, model = setup
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    args = ("index", "build", "--paper", "--model", model, "--data", root / "faces", "--quiet")
    assert "--force" in error_line(rbg(*args, "--out", tmp_path / "mine"))
    result = rbg(*args, "--out", tmp_path / "mine", "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "index.json").is_file() and not (tmp_path / "mine" / "notes.txt").exists()
    assert "is the input" in error_line(rbg(*args, "--out", root / "faces", "--force"))
    (tmp_path / "plain.txt").write_text("a file")
    assert "regular file" in error_line(rbg(*args, "--out", tmp_path / "plain.txt", "--force"))
    assert (tmp_path / "plain.txt").read_text() == "a file"


def folder_state(folder) -> list[tuple[str, bytes | None]]:
    """Every entry under `folder` with its bytes (None for a folder): equal states mean an untouched folder."""
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


@pytest.mark.parametrize("inside", ["an index", "a user file", "a user folder"])
def test_a_faceset_folder_holding_anything_else_is_replaced_only_with_force(setup, tmp_path, inside):
    root, model = setup
    tiny_faceset(identities=2, test_identities=1).write(tmp_path / "faces")
    if inside == "an index":
        result = rbg("index", "build", "--paper", "--model", model, "--data", tmp_path / "faces", "--out", tmp_path / "faces" / "ix", "--quiet")
        assert result.exit_code == 0, result.output
    elif inside == "a user file":
        (tmp_path / "faces" / "notes.txt").write_text("mine")
    else:
        (tmp_path / "faces" / "mine").mkdir()
    extra = {"an index": "ix/", "a user file": "notes.txt", "a user folder": "mine/"}[inside]
    before = folder_state(tmp_path / "faces")
    for args in (("data", "synth", "--identities", 2, "--size", 16), ("data", "import", "manifest", root / "man" / "labels.csv")):
        line = error_line(rbg(*args, "--out", tmp_path / "faces"))
        assert f"--out {tmp_path / 'faces'}: holds {extra}, which is not part of a FaceSet" in line and "--force" in line
        assert folder_state(tmp_path / "faces") == before
    result = rbg("data", "import", "manifest", root / "man" / "labels.csv", "--out", tmp_path / "faces", "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["faces.parquet", "faceset.json", "images.npy"]


def test_an_index_folder_holding_a_user_file_is_rebuilt_only_with_force(setup, tmp_path):
    root, model = setup
    args = ("index", "build", "--paper", "--model", model, "--data", root / "faces", "--out", tmp_path / "ix", "--quiet")
    assert rbg(*args).exit_code == 0
    assert rbg(*args).exit_code == 0  # an index of its own files only: rebuilt in place
    (tmp_path / "ix" / "notes.txt").write_text("mine")
    before = folder_state(tmp_path / "ix")
    assert "holds notes.txt, which is not part of an index" in error_line(rbg(*args))
    assert folder_state(tmp_path / "ix") == before
    assert rbg(*args, "--force").exit_code == 0 and not (tmp_path / "ix" / "notes.txt").exists()


def test_only_an_artifacts_own_files_and_folders_count_as_its_own(tmp_path):
    from facedata.outputs import OutputError, check_output_folder
    from generator.checkpoint import KIND as CHECKPOINT
    from retrieval.benchmark import KIND as REPORT

    report = tmp_path / "report"
    (report / "generation").mkdir(parents=True)
    for name in ("report.json", "report.md", "recall.png", "figure7_retrievals.png", "generation/table.json", "generation/figure5_pairs.png"):
        (report / name).write_text("")
    assert REPORT.foreign_entry(report) is None and check_output_folder(report, REPORT) == report
    (report / "generation" / "keep.txt").write_text("mine")
    assert REPORT.foreign_entry(report) == "generation/keep.txt"
    with pytest.raises(OutputError, match="holds generation/keep.txt, which is not part of a report"):
        check_output_folder(report, REPORT)
    assert check_output_folder(report, REPORT, force=True) == report
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for name in ("checkpoint.json", "model.safetensors", "state.json", "optimizer.safetensors"):
        (checkpoint / name).write_text("")
    assert CHECKPOINT.foreign_entry(checkpoint) is None
    (checkpoint / "README.md").write_text("")
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "model.safetensors").symlink_to(checkpoint / "README.md")  # not written by save_checkpoint
    assert CHECKPOINT.foreign_entry(checkpoint) == "README.md"
    (checkpoint / "README.md").unlink()
    assert CHECKPOINT.foreign_entry(checkpoint) == "model.safetensors"


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".png"])
def test_image_outputs_are_written_in_the_format_their_suffix_names(setup, tmp_path, suffix):
    root, model = setup
    wanted = "PNG" if suffix == ".png" else "JPEG"
    outputs = {
        "generate": ("generate", root / "face.png", "--model", model, "--pose", "+15", "--both-stages"),
        "query": ("query", "--index", root / "index", f"{root / 'faces'}:0", "--pose", "+15"),
        "show": ("data", "show", root / "faces"),
    }
    for name, args in outputs.items():
        out = tmp_path / f"{name}{suffix}"
        result = rbg(*args, "--out", out)
        assert result.exit_code == 0, result.output
        with Image.open(out) as written:
            assert written.format == wanted, name
    with Image.open(tmp_path / f"generate_stage1{suffix}") as stage1:
        assert stage1.format == wanted


def test_generate_refuses_every_image_that_query_refuses_with_the_same_words(setup, tmp_path):
    root, model = setup
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "pipe.png")
    for bad in ("dot.png", "text.png", "folder.png", "pipe.png", "missing.png"):
        image = tmp_path / bad
        generated = error_line(rbg("generate", image, "--model", model, "--pose", "+15", "--out", tmp_path / "out.png"))
        queried = error_line(rbg("query", "--index", root / "index", image, "--pose", "+15"))
        assert generated == queried and str(image) in generated, (generated, queried)
    assert not (tmp_path / "out.png").exists()


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(setup, tmp_path):
    root, model = setup
    face = np.asarray(Image.open(root / "face.png"))
    Image.fromarray(face.astype(np.uint16) * 257).save(tmp_path / "face16.png")  # 0..255 → 0..65535
    with Image.open(tmp_path / "face16.png") as opened:
        assert opened.mode.startswith("I")
    np.testing.assert_array_equal(load_face(tmp_path / "face16.png", (16, 16)), face)
    for name in ("face16.png", "face.png"):
        result = rbg("generate", tmp_path / name if name == "face16.png" else root / name, "--model", model,
                     "--pose", "+15", "--out", tmp_path / f"out-{name}")
        assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out-face16.png")), np.asarray(Image.open(tmp_path / "out-face.png")))


@pytest.mark.parametrize("mode, said", [
    ("I;16", "16-bit image scaled to 8 bits"),
    ("RGB", "RGB image converted to grayscale"),
    ("RGBA", "RGBA image converted to grayscale"),
    ("LA", "LA image converted to grayscale"),
    ("L", None),
])
def test_each_conversion_of_a_face_image_is_one_warning_line_on_stderr(setup, tmp_path, mode, said):
    root, model = setup
    face = np.asarray(Image.open(root / "face.png"))
    picture = {"I;16": lambda: Image.fromarray(face.astype(np.uint16) * 257), "L": lambda: Image.fromarray(face)}.get(
        mode, lambda: Image.fromarray(face).convert(mode))()
    picture.save(tmp_path / "in.png")
    with Image.open(tmp_path / "in.png") as opened:
        assert opened.mode == mode
    for args in (("generate", tmp_path / "in.png", "--model", model, "--pose", "+15", "--out", tmp_path / "out.png"),
                 ("query", "--index", root / "index", tmp_path / "in.png", "--pose", "+15", "-k", 2)):
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
        if said is None:
            assert warned == [], result.stderr
        else:
            assert len(warned) == 1 and warned[0].startswith(f"Warning: {tmp_path / 'in.png'}: {said}"), result.stderr
        assert "Warning:" not in result.stdout


def test_a_query_works_from_any_working_directory(setup, tmp_path, monkeypatch):
    root, model = setup
    (tmp_path / "work" / "elsewhere").mkdir(parents=True)
    tiny_faceset(identities=3, test_identities=2).write(tmp_path / "work" / "faces")
    save_untrained(tmp_path / "work" / "model")
    monkeypatch.chdir(tmp_path / "work")
    result = rbg("index", "build", "--paper", "--model", "model", "--data", "faces", "--out", "runs/idx", "--quiet")
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "work" / "runs" / "idx" / "index.json").read_text())
    assert recorded["gallery"]["path"] == "../../faces" and recorded["provenance"]["model"] == "../../model"
    monkeypatch.chdir(tmp_path / "work" / "elsewhere")
    result = rbg("query", "--index", "../runs/idx", f"{tmp_path / 'work' / 'faces'}:0", "--pose", "+15",
                 "-k", 3, "--out", "grid.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "work" / "elsewhere" / "grid.png").is_file()


def test_a_write_fault_is_one_error_line_naming_the_output_and_leaves_nothing(setup, tmp_path, monkeypatch):
    root, _ = setup

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", disk_full)
    result = rbg("data", "import", "manifest", root / "man" / "labels.csv", "--out", tmp_path / "imported")
    line = error_line(result)
    assert str(tmp_path / "imported") in line and os.strerror(errno.ENOSPC) in line
    assert os.listdir(tmp_path) == []


def test_the_index_records_the_full_model_hash_of_the_checkpoint(setup):
    root, model = setup
    recorded = json.loads((root / "index" / "index.json").read_text())["checkpoint_hash"]
    manifest = json.loads((model / "checkpoint.json").read_text())
    assert recorded == manifest["model_sha256"] == Generator.load(model, "cpu").checkpoint_hash
    assert len(recorded) == 64 and recorded != manifest["weights_sha256"]
