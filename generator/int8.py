"""Int8 all-values queries on CPU: a query generated in every value at about 1.6× the float32 speed.

"Ours, all poses" generates each query in all V values and reads the refiner's middle maps of each
(Generator.every_value). On a CPU without AVX-512 that costs ~40 ms for one face on one thread, nearly
all of it in 3×3 convolutions. Here the same computation is one traced network, statically quantized to
int8 (PyTorch's FX graph mode, fbgemm/x86 kernels: per-channel int8 weights, per-tensor uint8
activations with ranges observed on calibration faces), with every part that depends on the values
alone (the attribute maps, the one-hot codes' share of each decoder's first convolution) computed once
at build time.

Calibration faces are real faces of the kind that will be searched (`calibration_faces`: a seeded
sample of the index's gallery). The features differ from float32 by rounding: the benchmark reports
the recall of int8 queries next to float32 ones (benchmarks/bench_scale_views.py).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facedata.errors import UserError
from generator.model import TwoStageGenerator, attribute_code

CALIBRATION_FACES = 64  # sources observed for the activation ranges
INT8_LAYERS = ("stage2.mid", "stage2.mid128")  # the refiner's middle maps: what the all-views index stores


class AllValuesNetwork(nn.Module):
    """Standardized sources (n,1,H,W) → each generated in every one of V values: the refiner's middle maps
    (n·V, c, H/2, W/2) and stage 1's images (n·V, 1, H, W), row i·V + v for source i in value v.

    As Stage1Skip.every_value: the encoder runs once per source, and each decoder's first convolution is
    split by its input channels (upsampled maps, skip maps, tiled one-hot; a convolution is linear in
    them): the skip part once per source, the one-hot part a constant per value computed here. Every
    tensor is kept channels-last, the layout of the int8 kernels: a quantized add or concatenation of
    mixed layouts costs 30× more. Traceable by torch.fx.
    """

    def __init__(self, model: TwoStageGenerator, convs: int = 4):
        super().__init__()
        if model.config.arch != "skip":
            raise UserError("int8 queries need a model trained with --arch skip (the real-face recipe's); "
                            f"this one is arch '{model.config.arch}'")
        stage1 = model.stage1
        self.values = model.config.num_values
        self.enc0, self.enc1, self.enc2, self.pool = stage1.enc0, stage1.enc1, stage1.enc2, stage1.pool
        self.bottleneck = stage1.bottleneck
        codes = torch.arange(self.values)
        h, w = model.config.image_size
        self.upsampled, self.skipped, self.decoder_rest = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        with torch.no_grad():
            self.register_buffer("attribute_maps", stage1.attribute_maps(codes).float().contiguous())
            onehot = attribute_code(codes, model.config, torch.float32)[:, :, None, None]
            for i, (decoder, size) in enumerate(zip((stage1.dec2, stage1.dec1, stage1.dec0),
                                                    ((h // 4, w // 4), (h // 2, w // 2), (h, w)))):
                first, width = decoder[0], onehot.shape[1]
                c = (first.in_channels - width) // 2
                self.upsampled.append(_conv_part(first, 0, c, bias=False))
                self.skipped.append(_conv_part(first, c, 2 * c, bias=True))
                tiled = onehot.expand(-1, -1, *size)
                self.register_buffer(f"value_part{i}", F.conv2d(tiled, first.weight[:, 2 * c :], None, 1, 1).contiguous())
                self.decoder_rest.append(decoder[1:])
        self.refiner_encoder = model.stage2.encoder
        self.refiner_middle = model.stage2.middle[: 2 * convs]

    def forward(self, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, n = self.values, sources.shape[0]
        e0 = self.enc0(sources)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        x = self.bottleneck(torch.cat([_nhwc(self.pool(e2).repeat_interleave(v, 0)),
                                       _nhwc(self.attribute_maps.repeat(n, 1, 1, 1))], 1))
        value_parts = (self.value_part0, self.value_part1, self.value_part2)
        for i, skip in enumerate((e2, e1, e0)):
            up = _nhwc(F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
            x = self.upsampled[i](up) + _nhwc(self.skipped[i](skip).repeat_interleave(v, 0))
            x = self.decoder_rest[i](x + _nhwc(value_parts[i].repeat(n, 1, 1, 1)))
        middle = self.refiner_middle(self.refiner_encoder(torch.cat([_nhwc(sources.repeat_interleave(v, 0)), _nhwc(x)], 1)))
        return middle, x


def _conv_part(conv: nn.Conv2d, first: int, last: int, bias: bool) -> nn.Conv2d:
    """The convolution of `conv` over its input channels first..last-1 (with its bias if `bias`)."""
    part = nn.Conv2d(last - first, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=bias)
    part.weight.data = conv.weight.data[:, first:last].clone()
    if bias:
        part.bias.data = conv.bias.data.clone()
    return part


def _nhwc(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last)


def quantize_all_values(model: TwoStageGenerator, calibration: torch.Tensor, convs: int = 4,
                        batch_size: int = 32) -> nn.Module:
    """AllValuesNetwork of `model`, int8, its activation ranges observed on `calibration`, standardized
    sources (m,1,H,W) float32."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack"
    torch.backends.quantized.engine = engine
    network = AllValuesNetwork(copy.deepcopy(model).float().cpu().to(memory_format=torch.contiguous_format), convs).eval()
    with warnings.catch_warnings():  # FX quantization's deprecation notices: the pinned torch has it
        warnings.simplefilter("ignore")
        prepared = prepare_fx(network, get_default_qconfig_mapping(engine), example_inputs=(calibration[:1],))
        with torch.no_grad():
            for start in range(0, len(calibration), batch_size):
                prepared(calibration[start : start + batch_size])
        return convert_fx(prepared)


def calibration_faces(images: np.ndarray, count: int = CALIBRATION_FACES, seed: int = 0) -> np.ndarray:
    """A seeded sample of `count` faces of (n, H, W) uint8 images (all of them when fewer), in order."""
    images = np.asarray(images)
    if len(images) <= count:
        return np.ascontiguousarray(images)
    rows = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return np.ascontiguousarray(images[rows])


@torch.inference_mode()
def run_every_value_int8(network: nn.Module, model: TwoStageGenerator, normalization, images: np.ndarray,
                         layer: str, pictures: np.ndarray | None = None,
                         batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    """generator.inference.run_every_value through the int8 `network` (quantize_all_values): the (n, V, d)
    float32 features of `layer` and, given `pictures` ((n,) value indices), each source's stage-2 image in
    its value (n, H, W), decoded in float32 from the int8 middle maps."""
    assert layer in INT8_LAYERS, layer
    v = model.config.num_values
    step = max(1, batch_size // v)
    features, shown = [], []
    for start in range(0, len(images), step):
        raw = torch.from_numpy(np.array(images[start : start + step], copy=True)).unsqueeze(1).float()
        stats = normalization.stats(raw)
        sources = normalization.apply(raw, stats).contiguous(memory_format=torch.channels_last)
        with warnings.catch_warnings():  # its concatenations requantize inputs of other scales, as they must
            warnings.simplefilter("ignore")
            middle, coarse = network(sources)
        m = len(raw)
        features.append(middle.reshape(m, v, -1).float().numpy())
        if pictures is not None:
            chosen = torch.arange(m) * v + torch.from_numpy(np.asarray(pictures[start : start + m], np.int64))
            maps = middle[chosen]
            if layer == "stage2.mid128":  # the decoder reads the 4th conv's maps: one float32 conv more
                maps = model.stage2.middle[6:8](maps.float())
            picked = model.stage2.decode(maps.float().contiguous(), coarse[chosen].float().contiguous())
            shown.append(normalization.invert(picked, stats)[:, 0].float().numpy())
    if not features:
        return np.zeros((0, v, 0), np.float32), (np.zeros((0, *images.shape[1:]), np.float32) if pictures is not None else None)
    return np.concatenate(features), (np.concatenate(shown) if pictures is not None else None)
