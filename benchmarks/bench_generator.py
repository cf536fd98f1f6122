"""Speed of the two-stage generator: inference images/s, training samples/s per stage, GFLOP/s, and
the ratio to a float32 matmul measured in the same run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_generator.py --out runs/bench/generator.json

Both architectures are measured in the same run (`--archs paper skip`, the default): §3's network and
the skip architecture of the real-face recipes. FLOPs are counted from the layer shapes (forward hooks on every Conv2d/Linear: 2 × MACs); the paper's
networks cost 0.784 GFLOP per generated image at 32×32. Variants: memory format (contiguous vs
channels_last) and thread counts; `--compile` adds torch.compile (inductor); `--onnx` adds ONNX Runtime
(needs the `bench` extra: onnxruntime, onnxscript; the model exported per batch size, timed on normalized
float input, so it does a little less work than the eager rows).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facedata.atomic import write_json
from facedata.provenance import provenance
from generator.inference import run_model
from generator.model import ModelConfig, TwoStageGenerator
from generator.normalize import Normalization


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    batches: tuple[int, ...] = (1, 32, 256)
    threads: tuple[int, ...] = ()  # empty: torch's current setting only
    image_size: tuple[int, int] = (32, 32)
    min_seconds: float = 2.0  # per measurement, repeated `repeats` times, median kept
    repeats: int = 3
    train_batch: int = 32
    train_steps: int = 12
    compile: bool = False
    onnx: bool = False
    archs: tuple[str, ...] = ("paper", "skip")  # stage 1 as §3's network, and the skip architecture beside it


def count_flops(model: TwoStageGenerator, size: tuple[int, int]) -> dict[str, float]:
    """FLOPs (2 × multiply-adds) of one image through each stage, from the layer shapes seen in a forward."""
    counts = {"stage1": 0, "stage2": 0}

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                counts[name] += 2 * output[0].numel() * module.in_channels * k // module.groups
            else:
                counts[name] += 2 * module.in_features * module.out_features
        return record

    handles = [m.register_forward_hook(hook(stage)) for stage in counts
               for m in getattr(model, stage).modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, *size), torch.zeros(1, dtype=torch.long))
    for h in handles:
        h.remove()
    return {k: float(v) for k, v in counts.items()}


def timed(fn, min_seconds: float, repeats: int) -> float:
    """Median seconds per call of fn over `repeats` rounds, each at least min_seconds long (after one warm-up)."""
    fn()
    rounds = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rounds.append(elapsed / calls)
    return statistics.median(rounds)


def matmul_gflops(config: BenchConfig, n: int = 2048) -> float:
    """float32 n×n matmul GFLOP/s: the machine's practical peak for this run."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, config.min_seconds / 2, config.repeats) / 1e9


def inference_rate(model: TwoStageGenerator, config: BenchConfig, batch: int, channels_last: bool) -> float:
    """Images/s of both stages through the API path (uint8 in, 0–255 float32 out)."""
    norm = Normalization(mean=120.0, std=60.0)
    images = np.random.default_rng(0).integers(0, 256, (batch, *config.image_size), dtype=np.uint8)
    codes = np.zeros(batch, np.int64)
    seconds = timed(lambda: run_model(model, norm, images, codes, "pixels", batch, "cpu", channels_last),
                    config.min_seconds, config.repeats)
    return batch / seconds


def onnx_rate(model: TwoStageGenerator, config: BenchConfig, batch: int, threads: int, folder: Path) -> float:
    """Images/s of both stages in ONNX Runtime (CPU provider, `threads` intra-op threads) at a fixed batch."""
    import onnxruntime

    path = folder / f"generator-{batch}.onnx"
    x, codes = torch.randn(batch, 1, *config.image_size), torch.zeros(batch, dtype=torch.long)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every step
        torch.onnx.export(model.to(memory_format=torch.contiguous_format), (x, codes), str(path),
                          input_names=["x", "codes"], dynamo=True, verbose=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy(), "codes": codes.numpy()}
    return batch / timed(lambda: session.run(None, feed), config.min_seconds, config.repeats)


def training_rate(model: TwoStageGenerator, config: BenchConfig, stage: int, channels_last: bool) -> float:
    """Samples/s of Adam steps on one stage (stage 2 on given stage-1 outputs, as training does)."""
    memory = torch.channels_last if channels_last else torch.contiguous_format
    b = config.train_batch
    x = torch.randn(b, 1, *config.image_size).contiguous(memory_format=memory)
    y, coarse = torch.randn_like(x), torch.randn_like(x)
    codes = torch.zeros(b, dtype=torch.long)
    net = model.stage1 if stage == 1 else model.stage2
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step():
        out = net(x, codes) if stage == 1 else net(x, coarse)
        loss = torch.nn.functional.mse_loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    net.train()
    seconds = timed(step, config.min_seconds, config.repeats)
    net.eval()
    return b / seconds


def run(config: BenchConfig) -> dict:
    """All measurements for every architecture and thread count; returns the JSON record."""
    rows, gflop = [], {}
    for arch in config.archs:
        torch.manual_seed(0)
        base = TwoStageGenerator(ModelConfig(num_values=7, image_size=config.image_size, arch=arch)).eval()
        flops = count_flops(base, config.image_size)
        gflop[arch] = {"stage1": flops["stage1"] / 1e9, "stage2": flops["stage2"] / 1e9,
                       "both": (flops["stage1"] + flops["stage2"]) / 1e9}
        rows += [{"arch": arch, **row} for row in arch_rows(base, flops, config)]
    return {
        "config": asdict(config),
        "gflop_per_image": gflop,
        "rows": rows,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch_threads": torch.get_num_threads()},
        "provenance": provenance(),
    }


def arch_rows(base: TwoStageGenerator, flops: dict[str, float], config: BenchConfig) -> list[dict]:
    """One architecture's rows: inference and training per thread count, memory format and variant."""
    per_image = flops["stage1"] + flops["stage2"]
    rows = []
    for threads in config.threads or (torch.get_num_threads(),):
        torch.set_num_threads(threads)
        peak = matmul_gflops(config)
        for channels_last in (False, True):
            model = base.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            variants = [("eager", model)]
            if config.compile:
                variants.append(("compile", torch.compile(model)))
            for name, net in variants:
                label = f"{name}{'+channels_last' if channels_last else ''}"
                for batch in config.batches:
                    rate = inference_rate(net, config, batch, channels_last)
                    rows.append(_row("inference", label, threads, batch, rate, per_image, peak))
                for stage in (1, 2):
                    rate = training_rate(net if name == "eager" else model, config, stage, channels_last)
                    cost = 3 * flops[f"stage{stage}"]  # forward + backward ≈ 3 forwards
                    rows.append(_row(f"train stage {stage}", label, threads, config.train_batch, rate, cost, peak))
                    if name != "eager":
                        break
        if config.onnx:
            with tempfile.TemporaryDirectory(prefix="bench_generator-") as folder:
                for batch in config.batches:
                    rate = onnx_rate(base, config, batch, threads, Path(folder))
                    rows.append(_row("inference", "onnxruntime", threads, batch, rate, per_image, peak))
    return rows


def _row(what: str, variant: str, threads: int, batch: int, rate: float, flops_per_item: float, peak: float) -> dict:
    gflops = rate * flops_per_item / 1e9
    return {"what": what, "variant": variant, "threads": threads, "batch": batch, "per_s": round(rate, 1),
            "gflop_s": round(gflops, 1), "matmul_gflop_s": round(peak, 1), "ratio_to_matmul": round(gflops / peak, 3)}


def print_table(record: dict) -> None:
    for arch, g in record["gflop_per_image"].items():
        print(f"GFLOP per generated image, arch {arch}: stage 1 {g['stage1']:.3f} + stage 2 {g['stage2']:.3f} = {g['both']:.3f}")
    print(f"{'arch':<7}{'what':<16}{'variant':<22}{'thr':>4}{'batch':>6}{'items/s':>10}{'GFLOP/s':>9}{'matmul':>8}{'ratio':>7}")
    for r in record["rows"]:
        print(f"{r['arch']:<7}{r['what']:<16}{r['variant']:<22}{r['threads']:>4}{r['batch']:>6}{r['per_s']:>10.1f}"
              f"{r['gflop_s']:>9.1f}{r['matmul_gflop_s']:>8.1f}{r['ratio_to_matmul']:>7.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/generator.json"))
    parser.add_argument("--threads", type=int, nargs="*", default=[])
    parser.add_argument("--batches", type=int, nargs="*", default=list(BenchConfig.batches))
    parser.add_argument("--seconds", type=float, default=BenchConfig.min_seconds)
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--compile", action="store_true", help="also try torch.compile (inductor; slow first call)")
    parser.add_argument("--onnx", action="store_true", help="also try ONNX Runtime (needs the bench extra)")
    parser.add_argument("--archs", nargs="*", default=list(BenchConfig.archs), choices=["paper", "skip"],
                        help="generator architectures measured side by side in one run")
    args = parser.parse_args(argv)
    if args.onnx and not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript")):
        sys.exit("Error: --onnx needs onnxruntime and onnxscript: pip install -e '.[bench]'")
    config = BenchConfig(batches=tuple(args.batches), threads=tuple(args.threads), min_seconds=args.seconds,
                         repeats=args.repeats, compile=args.compile, onnx=args.onnx,
                         archs=tuple(args.archs))
    record = run(config)
    print_table(record)
    write_json(args.out, record)
    print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
