"""The catalogue of bad input and faults, command by command: each is refused with exit 2 and one
`Error:` line naming the argument or file, no traceback, and the output path (and its folder) unchanged.

Everything runs in-process on tiny data: a 4-identity 16×16 FaceSet, an untrained 16×16 checkpoint
and its index. A case that reads a FIFO would block forever if the FIFO were opened; a watchdog opens
its other end after a while so that such a regression fails instead of hanging.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fakes import save_untrained
from PIL import Image
from test_training import tiny_faceset

from facedata.faceset import FaceSet
from facedata.outputs import exclusive_lock
from generator.inference import Generator
from index.faiss_index import build_index
from rbg.cli import cli

HANG_SECONDS = 20


WRONG_GALLERY = "{other}: its fingerprint differs from the one the index was built on"  # --gallery of another FaceSet
HASH_GONE = "{hash_gone}/checkpoint.json: its model hash (model_sha256) is missing"  # a format-2 checkpoint, edited


@dataclass(frozen=True)
class Case:
    """One bad invocation: `args` and the paths in it are formatted with the world's paths."""

    command: str  # the command it exercises, for the count by command
    args: str
    names: str  # what the one Error line must contain: the argument or the file
    watch: str = "{new}"  # the output path that must be left as it was
    lock: str | None = None  # a lock file held by "another build" while the case runs


CASES = [
    # -- data synth ---------------------------------------------------------------------------
    Case("data synth", "data synth --out {afile}", "{afile}", watch="{afile}"),
    Case("data synth", "data synth --out {afile}/faces", "{afile}"),
    Case("data synth", "data synth --out {foreign}", "{foreign}", watch="{foreign}"),
    Case("data synth", "data synth --out {index}", "{index}", watch="{index}"),
    Case("data synth", "data synth --preset huge --out {new}", "huge"),
    Case("data synth", "data synth --size 4 --out {new}", "size"),
    Case("data synth", "data synth --identities -2 --out {new}", "identities"),
    Case("data synth", "data synth --out {faces_ix}", "{faces_ix}: holds ix/, which is not part of a FaceSet", watch="{faces_ix}"),
    Case("data synth", "data synth --out {faces_note}", "{faces_note}: holds notes.txt, which is not part of a FaceSet",
         watch="{faces_note}"),
    # -- data show ----------------------------------------------------------------------------
    Case("data show", "data show {afile} --out {new}.png", "{afile}", watch="{new}.png"),
    Case("data show", "data show {root}/nowhere --out {new}.png", "nowhere", watch="{new}.png"),
    Case("data show", "data show {faces} --out {afile}/sheet.png", "{afile}", watch="{afile}"),
    Case("data show", "data show {faces} --out {dirpng}", "{dirpng}", watch="{dirpng}"),
    Case("data show", "data show {faces} --out {new}.gif", ".gif", watch="{new}.gif"),
    Case("data show", "data show {faces} --rows 0 --out {new}.png", "--rows", watch="{new}.png"),
    Case("data show", "data show {empty_npy} --out {new}.png", "{empty_npy}/images.npy", watch="{new}.png"),
    Case("data show", "data show {trunc_npy} --out {new}.png", "{trunc_npy}/images.npy", watch="{new}.png"),
    # -- data import ----------------------------------------------------------------------------
    Case("data import manifest", "data import manifest {root}/none.csv --out {new}", "none.csv"),
    Case("data import manifest", "data import manifest {fifo} --out {new}", "{fifo}: not a regular file"),
    Case("data import manifest", "data import manifest {man_dir} --out {new}", "{man_dir}: not a regular file"),
    Case("data import manifest", "data import manifest {man_nocol} --out {new}", "identity"),
    Case("data import manifest", "data import manifest {man_empty}/labels.csv --out {new}", "{man_empty}/images.npy"),
    Case("data import manifest", "data import manifest {man_trunc}/labels.csv --out {new}", "{man_trunc}/images.npy"),
    Case("data import manifest", "data import manifest {manifest} --out {foreign}", "{foreign}", watch="{foreign}"),
    Case("data import manifest", "data import manifest {manifest} --out {man_dir}", "input", watch="{man_dir}"),
    Case("data import manifest", "data import manifest {manifest} --size 0x5 --out {new}", "size"),
    Case("data import manifest", "data import manifest {manifest} --out {afile}", "{afile}", watch="{afile}"),
    Case("data import manifest", "data import manifest {man_fifo} --out {new}", "{fifo}: not a regular file"),
    Case("data import manifest", "data import manifest {manifest} --out {faces_ix}", "{faces_ix}: holds ix/", watch="{faces_ix}"),
    Case("data import multipie", "data import multipie {root}/nowhere --out {new}", "nowhere"),
    Case("data import multipie", "data import multipie {faces} --out {afile}/mp", "{afile}", watch="{afile}"),
    Case("data import caspeal", "data import caspeal {root}/nowhere --out {new}", "nowhere"),
    Case("data import caspeal", "data import caspeal {faces} --size abc --out {new}", "abc"),
    # -- train ------------------------------------------------------------------------------------
    Case("train", "train --data {root}/nowhere --out {new} --quiet", "nowhere"),
    Case("train", "train --data {faces} --out {new} --batch-size 0 --quiet", "--batch-size"),
    Case("train", "train --data {faces} --out {new} --threads 0 --quiet", "--threads"),
    Case("train", "train --data {faces} --out {new} --threads -1 --quiet", "--threads"),
    Case("train", "train --data {faces} --out {new} --epochs -1 --quiet", "--epochs"),
    Case("train", "train --data {faces} --out {new} --checkpoint-minutes 0 --quiet", "--checkpoint-minutes"),
    Case("train", "train --data {empty_npy} --out {new} --quiet", "{empty_npy}/images.npy"),
    Case("train", "train --data {trunc_npy} --out {new} --quiet", "{trunc_npy}/images.npy"),
    Case("train", "train --data {faces} --out {afile} --quiet", "{afile}", watch="{afile}"),
    Case("train", "train --data {faces} --out {afile}/run --epochs 1 --val-pairs 0 --quiet", "{afile}", watch="{afile}"),
    Case("train", "train --data {faces} --out {foreign} --quiet", "{foreign}", watch="{foreign}"),
    Case("train", "train --data {faces} --task nonsense --out {new} --quiet", "nonsense"),
    Case("train", "train --data {faces} --init {root}/nowhere --out {new} --quiet", "nowhere"),
    Case("train", "train --data {faces} --init {vocab_edit} --out {new} --quiet", "{vocab_edit}/checkpoint.json"),
    Case("train", "train --data {faces} --out {faces} --quiet", "{faces}", watch="{faces}"),
    # -- eval generation --------------------------------------------------------------------------
    Case("eval generation", "eval generation --model {model} --data {faces} --out {foreign}", "{foreign}", watch="{foreign}"),
    Case("eval generation", "eval generation --model {model} --data {faces} --out {model}", "input", watch="{model}"),
    Case("eval generation", "eval generation --model {model} --data {faces} --out {faces}", "input", watch="{faces}"),
    Case("eval generation", "eval generation --model {model} --data {faces} --out {afile}", "{afile}", watch="{afile}"),
    Case("eval generation", "eval generation --model {model} --data {faces} --out {new} --batch-size 0", "--batch-size"),
    Case("eval generation", "eval generation --model {model} --data {faces} --out {new} --pairs 0", "--pairs"),
    Case("eval generation", "eval generation --model {vocab_edit} --data {faces} --out {new}", "{vocab_edit}/checkpoint.json"),
    Case("eval generation", "eval generation --model {model} --data {faces} --out {table_note}",
         "{table_note}: holds notes.txt, which is not part of an evaluation", watch="{table_note}"),
    Case("eval generation", "eval generation --model {hash_gone} --data {faces} --out {new}", HASH_GONE),
    # -- generate ---------------------------------------------------------------------------------
    Case("generate", "generate {dot} --model {model} --pose +15 --out {new}.png", "{dot}", watch="{new}.png"),
    Case("generate", "generate {fifo} --model {model} --pose +15 --out {new}.png", "{fifo}", watch="{new}.png"),
    Case("generate", "generate {dirpng} --model {model} --pose +15 --out {new}.png", "{dirpng}", watch="{new}.png"),
    Case("generate", "generate {notimage} --model {model} --pose +15 --out {new}.png", "{notimage}", watch="{new}.png"),
    Case("generate", "generate {face} --model {model} --pose +15 --out {new}.gif", ".gif", watch="{new}.gif"),
    Case("generate", "generate {face} --model {model} --pose +15 --out {dirpng}", "{dirpng}", watch="{dirpng}"),
    Case("generate", "generate {face} --model {model} --pose +15 --out {afile}/x.png", "{afile}", watch="{afile}"),
    Case("generate", "generate {face} --model {model} --pose +15 --scale 0 --out {new}.png", "--scale", watch="{new}.png"),
    Case("generate", "generate {face} --model {model} --pose +60 --out {new}.png", "+60", watch="{new}.png"),
    Case("generate", "generate {face} --model {vocab_edit} --pose +15 --out {new}.png", "{vocab_edit}/checkpoint.json", watch="{new}.png"),
    Case("generate", "generate {face} --model {size_edit} --pose +15 --out {new}.png", "{size_edit}/checkpoint.json", watch="{new}.png"),
    Case("generate", "generate {face} --model {norm_edit} --pose +15 --out {new}.png", "{norm_edit}/checkpoint.json", watch="{new}.png"),
    Case("generate", "generate {face} --model {hash_gone} --pose +15 --out {new}.png", HASH_GONE, watch="{new}.png"),
    # -- index build ------------------------------------------------------------------------------
    Case("index build", "index build --model {model} --data {faces} --out {faces} --quiet", "input", watch="{faces}"),
    Case("index build", "index build --model {model} --data {faces} --out {root} --quiet", "input", watch="{root}"),
    Case("index build", "index build --model {model} --data {faces} --out {foreign} --quiet", "{foreign}", watch="{foreign}"),
    Case("index build", "index build --model {model} --data {faces} --out {afile} --quiet", "{afile}", watch="{afile}"),
    Case("index build", "index build --model {model} --data {faces} --out {afile}/idx --quiet", "{afile}", watch="{afile}"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --batch-size 0 --quiet", "--batch-size"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --batch-size -3 --quiet", "--batch-size"),
    Case("index build", "index build --model {model} --data {empty_npy} --out {new} --quiet", "{empty_npy}/images.npy"),
    Case("index build", "index build --model {model} --data {trunc_npy} --out {new} --quiet", "{trunc_npy}/images.npy"),
    Case("index build", "index build --model {model} --data {faces} --layer fc7 --out {new} --quiet", "fc7"),
    Case("index build", "index build --model {model} --data {faces} --factory Bogus --out {new} --quiet", "Bogus"),
    Case("index build", "index build --model {size_edit} --data {faces} --out {new} --quiet", "{size_edit}/checkpoint.json"),
    Case("index build", "index build --model {hash_gone} --data {faces} --out {new} --quiet", HASH_GONE),
    Case("index build", "index build --model {model} --data {faces} --out {index_note} --quiet",
         "{index_note}: holds notes.txt, which is not part of an index", watch="{index_note}"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --quiet", "{new}", lock="{root}/.new-out.build.lock"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --workers 2 --quiet", "--engine ray"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --address auto --quiet", "--address"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --normalize full --classifier-data {faces} --quiet",
         "--classifier-data"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --normalize classifier "
         "--classifier-data {root}/nowhere --quiet", "nowhere"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --normalize full --pose-classifier cnn --quiet",
         "--pose-classifier"),
    Case("index build", "index build --model {model} --data {faces} --out {new} --normalize classifier "
         "--pose-classifier svm --quiet", "--pose-classifier"),
    # -- index add --------------------------------------------------------------------------------
    Case("index add", "index add --index {root}/nowhere --data {faces} --model {model} --quiet", "nowhere", watch="{index}"),
    Case("index add", "index add --index {index_other} --data {faces} --model {model} --split train --quiet", "{index_other}: built with model", watch="{index_other}"),
    Case("index add", "index add --index {index} --data {faces32} --model {model} --quiet", "{faces32}: images are 32×32", watch="{index}"),
    Case("index add", "index add --index {index} --data {odd_vocab} --model {model} --quiet", "{odd_vocab}: pose values", watch="{index}"),
    Case("index add", "index add --index {index} --data {test_only} --split train --model {model} --quiet", "split=train", watch="{index}"),
    Case("index add", "index add --index {index} --data {faces} --model {model} --quiet", "is in it already (gallery 0", watch="{index}"),
    Case("index add", "index add --index {index} --data {faces_copy} --model {model} --quiet",
         "{faces_copy} is in it already (gallery 0 'tiny'): the same images and labels as {faces}", watch="{index}"),
    Case("index add", "index add --index {index} --data {faces} --split train --model {model} --batch-size 0 --quiet", "--batch-size", watch="{index}"),
    Case("index add", "index add --index {index} --data {root}/nowhere --model {model} --quiet", "nowhere", watch="{index}"),
    Case("index add", "index add --index {index} --data {faces} --split train --model {model} --quiet", "{index}", watch="{index}", lock="{root}/.index.build.lock"),
    # -- query --------------------------------------------------------------------------------------
    Case("query", "query --index {index} {dot} --pose +15", "{dot}", watch="{index}"),
    Case("query", "query --index {index} {fifo} --pose +15", "{fifo}", watch="{index}"),
    Case("query", "query --index {index} {dirpng} --pose +15", "{dirpng}", watch="{dirpng}"),
    Case("query", "query --index {index} {notimage} --pose +15", "{notimage}", watch="{index}"),
    Case("query", "query --index {index} {faces}:0 --pose +15 --out {dirpng}", "{dirpng}", watch="{dirpng}"),
    Case("query", "query --index {index} {faces}:0 --pose +15 --out {afile}/grid.png", "{afile}", watch="{afile}"),
    Case("query", "query --index {index} {faces}:0 --pose +15 --out {new}.gif", ".gif", watch="{new}.gif"),
    Case("query", "query --index {index} {faces}:0 --pose +15 -k 0", "k=0", watch="{index}"),
    Case("query", "query --index {index} {faces}:0 --pose +15 --batch-size 0", "--batch-size", watch="{index}"),
    Case("query", "query --index {index} {faces}:999 --pose +15", "999", watch="{index}"),
    Case("query", "query --index {index} --batch {q_target} --out {new}.csv", "{q_target}:3", watch="{new}.csv"),
    Case("query", "query --index {index} --batch {q_missing} --out {new}.csv", "{q_missing}:2", watch="{new}.csv"),
    Case("query", "query --index {index} --batch {q_k0} --out {new}.csv", "{q_k0}:3", watch="{new}.csv"),
    Case("query", "query --index {index} --batch {q_fields} --out {new}.csv", "{q_fields}:2", watch="{new}.csv"),
    Case("query", "query --index {index} --batch {fifo} --out {new}.csv", "{fifo}", watch="{new}.csv"),
    Case("query", "query --index {index} --batch {q_ok} --out {dirpng}", "{dirpng}", watch="{dirpng}"),
    Case("query", "query --index {root}/nowhere {face} --pose +15", "nowhere", watch="{index}"),
    Case("query", "query --index {index} --model {norm_edit} {face} --pose +15", "{norm_edit}/checkpoint.json", watch="{index}"),
    Case("query", "query --index {index} --model {hash_gone} {face} --pose +15", HASH_GONE, watch="{index}"),
    Case("query", "query --index {index} {face} --pose +15 --gallery {other}", WRONG_GALLERY, watch="{index}"),
    Case("query", "query --index {index} {faces}:0 --pose +15 --int8", "built with --views kept", watch="{index}"),
    Case("query", "query --index {index} {faces}:0 --pose +15 --out {new}.png --gallery {other}", WRONG_GALLERY, watch="{new}.png"),
    Case("query", "query --index {index} --batch {q_ok} --out {new}.csv --gallery {other}", WRONG_GALLERY, watch="{new}.csv"),
    # -- serve (uvicorn.run is replaced by a failure: a case that got as far as serving fails, never hangs) ----
    Case("serve", "serve --index {index} --gallery {other} --port 0", WRONG_GALLERY, watch="{index}"),
    Case("serve", "serve --index {index} --model {hash_gone} --port 0", HASH_GONE, watch="{index}"),
    Case("serve", "serve --index {index} --int8 --port 0", "built with --views kept", watch="{index}"),
    # -- bench --------------------------------------------------------------------------------------
    Case("bench", "bench --model {model} --data {faces} --out {faces}", "input", watch="{faces}"),
    Case("bench", "bench --model {model} --data {faces} --out {new} --index {root}/nowhere", "nowhere"),
    Case("bench", "bench --model {model} --data {faces} --out {new} --index {index} --normalize none", "--index"),
    Case("bench", "bench --model {model} --data {faces} --out {model}", "input", watch="{model}"),
    Case("bench", "bench --model {model} --data {faces} --out {foreign}", "{foreign}", watch="{foreign}"),
    Case("bench", "bench --model {model} --data {faces} --out {afile}", "{afile}", watch="{afile}"),
    Case("bench", "bench --model {model} --data {faces} --out {afile}/report", "{afile}", watch="{afile}"),
    Case("bench", "bench --model {model} --data {faces} --out {new} --batch-size 0", "--batch-size"),
    Case("bench", "bench --model {model} --data {faces} --out {new} --queries 0", "--queries"),
    Case("bench", "bench --model {vocab_edit} --data {faces} --out {new}", "{vocab_edit}/checkpoint.json"),
    Case("bench", "bench --model {model} --data {faces} --out {new} --cache {afile}", "{afile}", watch="{afile}"),
    Case("bench", "bench --model {model} --data {faces} --out {report_note}", "{report_note}: holds generation/notes.txt, "
         "which is not part of a report", watch="{report_note}"),
    Case("bench", "bench --model {hash_gone} --data {faces} --out {new}", "{hash_gone}/checkpoint.json: its model hash"),
]


def edited_checkpoint(model: Path, target: Path, edit) -> Path:
    """A copy of the checkpoint with checkpoint.json changed by `edit` (its recorded hashes left alone)."""
    shutil.copytree(model, target)
    record = json.loads((target / "checkpoint.json").read_text())
    edit(record)
    (target / "checkpoint.json").write_text(json.dumps(record, indent=2))
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """Every file the cases point at, good and bad, under one folder."""
    root = tmp_path_factory.mktemp("catalogue")
    faces = tiny_faceset(identities=4, test_identities=2)
    faces.write(root / "faces")
    model = save_untrained(root / "model")
    build_index(Generator.load(model, "cpu"), FaceSet.open(root / "faces").split("test"), root / "index", progress=False)
    shutil.copytree(root / "index", root / "index_other")  # as if built by another model
    record = json.loads((root / "index_other" / "index.json").read_text())
    (root / "index_other" / "index.json").write_text(json.dumps({**record, "checkpoint_hash": "f" * 64}))
    tiny_faceset(identities=2, size=32).write(root / "faces32")
    faces.split("test").write(root / "test_only")
    renamed = dict(zip(faces.vocabulary("pose"), ("-90", "-60", "-30", "0", "+30", "+60", "+90")))
    FaceSet.from_arrays(faces.images, faces.faces.assign(pose=faces.faces["pose"].map(renamed)), name="odd",
                        factors={"pose": tuple(renamed.values())}).write(root / "odd_vocab")
    shutil.copytree(root / "faces", root / "faces_copy")  # byte-identical: the same gallery by content
    tiny_faceset(identities=4, test_identities=2, seed=1).write(root / "other")  # another FaceSet of the same shape
    for name in ("faces_ix", "faces_note"):  # FaceSet folders holding what no FaceSet writes
        shutil.copytree(root / "faces", root / name)
    shutil.copytree(root / "index", root / "faces_ix" / "ix")
    (root / "faces_note" / "notes.txt").write_text("the user's notes\n")
    shutil.copytree(root / "index", root / "index_note")
    (root / "index_note" / "notes.txt").write_text("the user's notes\n")
    (root / "table_note").mkdir()  # an evaluation and a report folder holding a user's file
    for name in ("table_note/table.json", "table_note/table.md", "table_note/notes.txt", "report_note/report.json",
                 "report_note/report.md", "report_note/generation/table.json", "report_note/generation/notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("a folder of the user's: never to be replaced\n")
    (root / "afile.txt").write_text("a regular file\n")
    Image.fromarray(faces.image(0)).save(root / "face.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(root / "dot.png")
    (root / "notimage.png").write_text("not an image\n")
    (root / "dir.png").mkdir()
    os.mkfifo(root / "fifo")
    for name, cut in (("empty_npy", 0), ("trunc_npy", 200)):
        shutil.copytree(root / "faces", root / name)
        data = (root / name / "images.npy").read_bytes()
        (root / name / "images.npy").write_bytes(data[:cut])
    # manifests: a good one with images.npy, one without identity, and two with damaged arrays
    (root / "man").mkdir()
    pd.DataFrame({"identity": ["a", "a", "b", "b"], "pose": ["0", "+15", "0", "+15"]}).to_csv(root / "man" / "labels.csv", index=False)
    np.save(root / "man" / "images.npy", np.zeros((4, 16, 16), np.uint8))
    (root / "nocol.csv").write_text("person,pose\na,0\n")
    (root / "fifo.csv").write_text(f"identity,path\na,{root / 'fifo'}\n")
    for name, cut in (("man_empty", 0), ("man_trunc", 140)):
        shutil.copytree(root / "man", root / name)
        data = (root / name / "images.npy").read_bytes()
        (root / name / "images.npy").write_bytes(data[:cut])
    # checkpoints whose checkpoint.json was edited by hand
    edited_checkpoint(model, root / "vocab_edit", lambda r: r.update(vocabulary=list(reversed(r["vocabulary"]))))
    edited_checkpoint(model, root / "size_edit", lambda r: r["architecture"].update(image_size=[32, 32]))
    edited_checkpoint(model, root / "norm_edit", lambda r: r["normalization"].update(mean=0.0))
    edited_checkpoint(model, root / "hash_gone", lambda r: (r.pop("model_sha256"), r.update(vocabulary=list(reversed(r["vocabulary"])))))
    # batch query CSVs, each with one bad line
    row = f"{root / 'faces'}:0"
    (root / "q_ok.csv").write_text(f"path,target\n{row},+15\n")
    (root / "q_target.csv").write_text(f"path,target\n{row},+15\n{row},+99\n")
    (root / "q_missing.csv").write_text("path,target\nno-such-face.png,+15\n")
    (root / "q_k0.csv").write_text(f"path,target,k\n\n{row},+15,0\n")
    (root / "q_fields.csv").write_text(f"path,target\n{row},+15,3,extra\n")
    paths = {name: str(root / name) for name in ("faces", "model", "index", "index_other", "faces32", "test_only", "odd_vocab", "foreign", "dot", "fifo", "vocab_edit",
                                                  "size_edit", "norm_edit", "empty_npy", "trunc_npy", "man_empty", "man_trunc",
                                                  "faces_copy", "other", "faces_ix", "faces_note", "index_note", "table_note",
                                                  "report_note", "hash_gone")}
    paths.update(root=str(root), new=str(root / "new-out"), afile=str(root / "afile.txt"), face=str(root / "face.png"),
                 dot=str(root / "dot.png"), notimage=str(root / "notimage.png"), dirpng=str(root / "dir.png"),
                 manifest=str(root / "man" / "labels.csv"), man_dir=str(root / "man"), man_nocol=str(root / "nocol.csv"), man_fifo=str(root / "fifo.csv"),
                 **{name: str(root / f"{name}.csv") for name in ("q_ok", "q_target", "q_missing", "q_k0", "q_fields")})
    return paths


def snapshot(path: Path):
    """What is at `path`: None, a file's sha256, or a folder's (relative name, kind, sha256) entries."""
    def one(p: Path):
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            return "special" if p.exists() else None
        return "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()

    if not path.is_dir():
        return one(path)
    return sorted((str(p.relative_to(path)), one(p)) for p in path.rglob("*"))


class FifoWatchdog:
    """After `seconds`, open the write end of `fifo` once, so a reader blocked on it gets EOF, not a hang."""

    def __init__(self, fifo: str, seconds: float):
        self.fifo, self.fired = fifo, False
        self.timer = threading.Timer(seconds, self._unblock)

    def _unblock(self) -> None:
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader waiting: nothing to unblock
            return
        self.fired = True
        os.close(fd)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()


def case_id(case: Case) -> str:
    return f"{case.command}: {case.args.split(' --quiet')[0]}" + (" [lock held]" if case.lock else "")


@pytest.fixture
def no_server(monkeypatch):
    """`rbg serve` fails instead of serving: a refusal that regressed ends the case, not the test run."""
    import uvicorn

    def serve(*args, **kwargs):
        raise RuntimeError("rbg serve got as far as serving")

    monkeypatch.setattr(uvicorn, "run", serve)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_is_one_error_line_naming_it_and_changes_nothing(world, case, no_server):
    args = [a.format(**world) for a in shlex.split(case.args)]
    watched = Path(case.watch.format(**world))
    parent = watched.parent
    lock = exclusive_lock(case.lock.format(**world), "another build") if case.lock else None
    if lock:
        lock.__enter__()
    try:
        before, around = snapshot(watched), sorted(os.listdir(parent))
        start = time.perf_counter()
        with FifoWatchdog(world["fifo"], HANG_SECONDS) as watchdog:
            result = CliRunner().invoke(cli, args)
        took = time.perf_counter() - start
        after, around_after = snapshot(watched), sorted(os.listdir(parent))
    finally:
        if lock:
            lock.__exit__(None, None, None)
    output = result.output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output and "Aborted!" not in output, output
    assert result.exit_code == 2, output
    assert len(errors) == 1, output
    assert case.names.format(**world) in errors[0], errors[0]
    assert not watchdog.fired and took < HANG_SECONDS, f"blocked on the FIFO for {took:.0f} s"
    assert after == before, f"{watched} changed"
    assert around_after == around, f"left behind in {parent}: {sorted(set(around_after) - set(around))}"


def test_the_catalogue_covers_every_command_with_at_least_60_cases():
    counts = Counter(case.command for case in CASES)
    commands = {"data synth", "data show", "data import manifest", "data import multipie", "data import caspeal", "train",
                "eval generation", "generate", "index build", "index add", "query", "serve", "bench"}
    assert set(counts) == commands and sum(counts.values()) >= 60, counts
