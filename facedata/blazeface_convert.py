"""Convert MediaPipe's short-range BlazeFace (a TFLite file) into the safetensors file facedata.blazeface loads.

    pip install tflite==2.18.0
    pip download mediapipe==0.10.21 --no-deps -d /tmp/mp          # the last wheel that bundles the model
    unzip -o /tmp/mp/mediapipe-0.10.21-*.whl 'mediapipe/modules/face_detection/*' -d /tmp/mp
    python -m facedata.blazeface_convert \
        /tmp/mp/mediapipe/modules/face_detection/face_detection_short_range.tflite

A maintainer's step, run once: the converted file ships in facedata/models (Apache-2.0, see its NOTICE),
so the detector needs neither MediaPipe nor TFLite at run time. The TFLite graph is read operator by
operator and checked against the architecture facedata.blazeface builds (every tensor's shape, and the
order of depthwise and pointwise convolutions), so a different model fails here, not at detection.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from facedata.atomic import atomic_file

OUT = Path(__file__).resolve().parent / "models" / "blazeface_short_range.safetensors"


def _tensor(model, graph, index: int) -> np.ndarray:
    """A constant tensor of the TFLite graph as a numpy array (float16 weights are kept as float16)."""
    import tflite

    tensor = graph.Tensors(index)
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtype = {tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32,
             tflite.TensorType.INT32: np.int32}[tensor.Type()]
    return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy())


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """Every convolution's kernel and bias, named as facedata.blazeface.BlazeFace's state dict (PyTorch layout)."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    produced = {}  # tensor index → the constant it was dequantized from
    convolutions = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        if name == "DEQUANTIZE":
            produced[op.Outputs(0)] = _tensor(model, graph, inputs[0])
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kernel, bias = produced[inputs[1]], produced[inputs[2]]
            label = graph.Tensors(op.Outputs(0)).Name().decode()
            convolutions.append((name, label, kernel, bias))
    from facedata.blazeface import BlazeFace

    expected = BlazeFace().state_dict()
    backbone = [c for c in convolutions if "classificator" not in c[1] and "regressor" not in c[1]]
    heads = {c[1]: c for c in convolutions if c not in backbone}
    order = [k[: -len(".weight")] for k in expected if k.endswith(".weight") and not k.startswith("head")]
    assert len(order) == len(backbone), (len(order), len(backbone))
    out = {}
    for key, (kind, _, kernel, bias) in zip(order, backbone):
        # TFLite: conv (out, kh, kw, in), depthwise (1, kh, kw, channels); PyTorch: (out, in/groups, kh, kw)
        weight = kernel.transpose(3, 0, 1, 2) if kind == "DEPTHWISE_CONV_2D" else kernel.transpose(0, 3, 1, 2)
        out[f"{key}.weight"], out[f"{key}.bias"] = weight, bias
    for key, label in (("head.classify8", "classificator_8"), ("head.classify16", "classificator_16"),
                       ("head.regress8", "regressor_8"), ("head.regress16", "regressor_16")):
        _, _, kernel, bias = heads[label]
        out[f"{key}.weight"], out[f"{key}.bias"] = kernel.transpose(0, 3, 1, 2), bias
    for key, value in out.items():
        assert tuple(value.shape) == tuple(expected[key].shape), (key, value.shape, tuple(expected[key].shape))
    return {key: np.ascontiguousarray(value, dtype=np.float16) for key, value in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite", type=Path, help="face_detection_short_range.tflite from mediapipe 0.10.21")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from safetensors.numpy import save_file

    weights = read_weights(args.tflite)
    source = hashlib.sha256(args.tflite.read_bytes()).hexdigest()
    with atomic_file(args.out) as tmp:
        save_file(weights, str(tmp), metadata={"source": "mediapipe 0.10.21 face_detection_short_range.tflite",
                                               "source_sha256": source, "license": "Apache-2.0"})
    print(f"written: {args.out} ({len(weights)} tensors, from sha256 {source[:12]}…)")


if __name__ == "__main__":
    main()
