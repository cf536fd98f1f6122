"""Copy MTCNN's ONet weights out of the facenet-pytorch wheel into the safetensors file facedata.onet loads.

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fp
    python -m facedata.onet_convert /tmp/fp/facenet_pytorch-2.6.0-py3-none-any.whl

A maintainer's step, run once: the converted file ships in facedata/models (MIT, see its NOTICE), so
the check needs neither facenet-pytorch (which pins an old torch) nor pickle at run time. The wheel's
`onet.pt` is a plain state dict, read with torch's weights-only loader; every tensor facedata.onet.ONet
needs must be there with its shape, so a different file fails here.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import torch

from facedata.atomic import atomic_file
from facedata.onet import WEIGHTS, ONet

MEMBER = "facenet_pytorch/data/onet.pt"


def read_weights(wheel: Path) -> tuple[dict[str, torch.Tensor], str]:
    """ONet's tensors (the face/non-face head only) and the sha256 of the wheel's onet.pt."""
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(MEMBER)
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    expected = ONet().state_dict()
    missing = [key for key in expected if key not in state or tuple(state[key].shape) != tuple(expected[key].shape)]
    if missing:
        raise SystemExit(f"{wheel}: {MEMBER} lacks ONet tensors or has other shapes: {', '.join(missing)}")
    return {key: state[key].contiguous().float() for key in expected}, hashlib.sha256(raw).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="facenet_pytorch-2.6.0-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    weights, source = read_weights(args.wheel)
    with atomic_file(args.out) as tmp:
        save_file(weights, str(tmp), metadata={"source": f"facenet-pytorch 2.6.0 {MEMBER}", "source_sha256": source,
                                               "license": "MIT"})
    print(f"written: {args.out} ({len(weights)} tensors, from sha256 {source[:12]}…)")


if __name__ == "__main__":
    main()
