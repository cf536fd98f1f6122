"""Tune MTCNN's ONet on the face check's examples: real-face knowledge first, then this detector's boxes.

    python -m facedata.onet_tune --wallpapers data/wallpapers --real-faces ../shared/data/cmu_faces \
        --split-from runs/cmu   # the shipped facedata/models/onet_tuned.safetensors (+ .json)

A maintainer's step, run once; the weights ship in the package. ONet (facedata.onet) learned faces from
WIDER FACE and CelebA, so it knows real faces the face check never saw, but not small webcam faces in
sunglasses or looking up, which it scores as clutter. Here every layer starts from MTCNN's weights and
learns from the face check's own examples (facedata.face_check_train.examples: the same BlazeFace boxes,
renders, LFW faces, wallpapers and the cmu_faces train people's photos), read as ONet reads a box: its
square at 48×48. The boxes that place each real photo's face come from MTCNN's own ONet
(real_face_squares), never from this one. Like the face check, it has seen the train people, so the
detector's thresholds with it are chosen on the val people (benchmarks/choose_detector.py
--cmu-people val).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facedata.onet import TUNED_WEIGHTS, ONet, load_onet, onet_crops


@dataclass(frozen=True)
class TuneConfig:
    """How ONet is tuned: a few epochs at a small rate, so that what it knew of real faces stays."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-4
    held_out: float = 0.1  # share of the pictures (every crop of one picture together) kept out to measure it
    seed: int = 0


def tune(config: TuneConfig, crops: torch.Tensor, labels: torch.Tensor, groups: np.ndarray) -> tuple[ONet, dict]:
    """MTCNN's ONet tuned on the crops of (1 − held_out) of the pictures; the rest say how well it separates
    (AUC and error at 0.5, with MTCNN's own ONet's AUC on the same crops beside it)."""
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    pictures = np.unique(groups)
    held = np.isin(groups, rng.permutation(pictures)[: int(len(pictures) * config.held_out)])
    fit, held_out = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
    model = copy.deepcopy(load_onet("mtcnn")).train()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def scores(net: ONet) -> np.ndarray:
        net.eval()
        with torch.inference_mode():
            return torch.cat([net(crops[b].expand(-1, 3, -1, -1)) for b in held_out.split(2048)]).numpy()

    truth = labels[held_out].numpy()
    before = float(roc_auc_score(truth, scores(load_onet("mtcnn"))))
    for _ in tqdm(range(config.epochs), desc="ONet: tuning", unit="epoch"):
        model.train()
        for batch in fit[torch.randperm(len(fit))].split(config.batch_size):
            xb = crops[batch]
            flip = torch.rand(len(batch)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb).expand(-1, 3, -1, -1)
            loss = F.binary_cross_entropy_with_logits(model.logit(xb), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    after = scores(model)
    return model, {"examples": int(len(labels)), "faces": int((labels == 1).sum()), "held_out": int(len(held_out)),
                   "held_out_auc": float(roc_auc_score(truth, after)), "held_out_auc_mtcnn": before,
                   "held_out_error_at_half": float(((after >= 0.5) != (truth == 1)).mean())}


def main(argv: list[str] | None = None) -> None:
    from facedata.errors import DataError
    from facedata.face_check_train import CheckTrainConfig, examples, real_photos, training_wallpapers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TUNED_WEIGHTS, help="safetensors file to write (a .json record beside it)")
    parser.add_argument("--wallpapers", type=Path, required=True,
                        help="a folder benchmarks/wallpapers.py wrote (the face check's training wallpapers)")
    parser.add_argument("--real-faces", type=Path, required=True, help="cmu_faces' folder (images.npy, labels.csv)")
    parser.add_argument("--split-from", type=Path, default=Path("runs/cmu"),
                        help="a FaceSet imported from --real-faces whose train people's photos are read")
    parser.add_argument("--epochs", type=int, default=TuneConfig.epochs)
    parser.add_argument("--seed", type=int, default=TuneConfig.seed)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"argument --epochs: {args.epochs} is not a positive number of epochs")
    if not args.wallpapers.is_dir():
        parser.error(f"argument --wallpapers: {args.wallpapers} is not a folder")
    try:
        real = real_photos(args.real_faces, args.split_from)
    except DataError as error:
        parser.error(f"argument --real-faces: {error}")
    check_config = CheckTrainConfig()  # the face check's own examples, wallpapers and real photos included
    config = TuneConfig(epochs=args.epochs, seed=args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    crops, labels, groups = examples(check_config, training_wallpapers(args.wallpapers), real, crops_of=onet_crops)
    model, figures = tune(config, crops, labels, groups)
    from safetensors.torch import save_file

    from facedata.atomic import atomic_file, write_json
    from facedata.provenance import provenance

    with atomic_file(args.out) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"started_from": "mtcnn_onet.safetensors", "license": "MIT (the weights it started from)"})
    figures["seconds"] = time.perf_counter() - start
    write_json(args.out.with_suffix(".json"), {"config": asdict(config), "examples_config": asdict(check_config), **figures,
                                               "provenance": provenance(seed=config.seed)})
    print(f"held-out AUC {figures['held_out_auc']:.4f} (MTCNN's ONet {figures['held_out_auc_mtcnn']:.4f}), error at 0.5 "
          f"{figures['held_out_error_at_half']:.4f} ({figures['examples']} crops, {figures['faces']} of faces); "
          f"{figures['seconds']:.0f} s; written: {args.out}")


if __name__ == "__main__":
    main()
