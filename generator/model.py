"""The paper's two-stage generator (§3.1–3.2): stage 1 edits one attribute, stage 2 refines the result.

Every convolution is 3×3 with padding 1 and is followed by a ReLU, except the last one of each stage,
whose output must take negative values too (the images are standardized, §3.1 "Image decoding").
The attribute encoder's two fully connected layers are followed by ReLUs as well: "all layers have a
ReLU except the last one", and the attribute maps are an intermediate layer, not an output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURE = "ghodrati2016-two-stage"
ARCHITECTURE_VERSION = 1
ARCHES = ("paper", "skip")  # stage 1 as §3.1 states it, or the U-Net-like variant below
REFINERS = ("paper", "residual")  # stage 2 as §3.2 states it, or adding its output to stage 1's


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network: the one-hot width and the image size; the layer widths are the paper's."""

    num_values: int  # V: size of the edited factor's vocabulary (several factors: of every combination)
    image_size: tuple[int, int] = (32, 32)  # (H, W), both even
    attribute_maps: int = 7  # §3.1: FC(1792) reshaped to 7 maps of 16×16
    attribute_hidden: int = 512  # §3.1: FC(512)
    arch: str = "paper"  # "skip": stage 1 with a deeper encoder and skip connections (Stage1Skip)
    refiner: str = "paper"  # "residual": stage 2 outputs a correction added to stage 1's image
    descriptor_dim: int = 0  # > 0: stage 2 also predicts a face descriptor of this width (DescriptorHead)
    factor_sizes: tuple[int, ...] = ()  # several edited factors: each one's vocabulary size, one one-hot block each

    def __post_init__(self) -> None:
        h, w = self.image_size
        object.__setattr__(self, "factor_sizes", tuple(int(s) for s in self.factor_sizes))
        if self.num_values < 1:
            raise ValueError(f"num_values must be ≥ 1, got {self.num_values}")
        if self.factor_sizes and (min(self.factor_sizes) < 1 or int(np.prod(self.factor_sizes)) != self.num_values):
            raise ValueError(f"factor_sizes {list(self.factor_sizes)} must be ≥ 1 each and multiply to num_values "
                             f"{self.num_values}")
        if self.arch not in ARCHES:
            raise ValueError(f"arch must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        if self.refiner not in REFINERS:
            raise ValueError(f"refiner must be one of {', '.join(REFINERS)}, got {self.refiner!r}")
        if self.descriptor_dim < 0:
            raise ValueError(f"descriptor_dim must be ≥ 0, got {self.descriptor_dim}")
        step = 8 if self.arch == "skip" else 2
        if h < step or w < step or h % step or w % step:
            rule = "even and ≥ 2" if step == 2 else f"a multiple of {step} (arch {self.arch})"
            raise ValueError(f"image_size must be {rule}, got {self.image_size}")

    @property
    def onehot_width(self) -> int:
        """Width of the attribute code: V for one factor, the sum of the blocks' sizes for several."""
        return sum(self.factor_sizes) if self.factor_sizes else self.num_values

    @property
    def map_size(self) -> tuple[int, int]:
        """Size of the attribute maps: half the image (paper), an eighth at the skip variant's bottleneck."""
        f = 8 if self.arch == "skip" else 2
        return self.image_size[0] // f, self.image_size[1] // f

    def to_json(self) -> dict:
        return {
            "name": ARCHITECTURE,
            "version": ARCHITECTURE_VERSION,
            "num_values": self.num_values,
            "image_size": list(self.image_size),
            "attribute_maps": self.attribute_maps,
            "attribute_hidden": self.attribute_hidden,
            "arch": self.arch,
            **({"refiner": self.refiner} if self.refiner != "paper" else {}),  # older checkpoints: the paper's
            **({"descriptor_dim": self.descriptor_dim} if self.descriptor_dim else {}),  # older ones: no head
            **({"factor_sizes": list(self.factor_sizes)} if self.factor_sizes else {}),  # one factor: none
        }

    @classmethod
    def from_json(cls, record: dict) -> "ModelConfig":
        return cls(
            num_values=int(record["num_values"]),
            image_size=(int(record["image_size"][0]), int(record["image_size"][1])),
            attribute_maps=int(record.get("attribute_maps", 7)),
            attribute_hidden=int(record.get("attribute_hidden", 512)),
            arch=str(record.get("arch", "paper")),
            refiner=str(record.get("refiner", "paper")),
            descriptor_dim=int(record.get("descriptor_dim", 0)),
            factor_sizes=tuple(int(v) for v in record.get("factor_sizes", ())),
        )


def attribute_code(codes: torch.Tensor, config: ModelConfig, dtype: torch.dtype) -> torch.Tensor:
    """(n,) int64 target codes → (n, onehot_width) attribute codes: the paper's one-hot for one factor.

    For several factors a code is the mixed-radix number of the per-factor codes (the last factor
    varying fastest, facedata.combined) and the attribute code is one one-hot block per factor, side by side.
    """
    if not config.factor_sizes:
        return F.one_hot(codes, config.num_values).to(dtype)
    blocks, rest = [], codes
    for size in reversed(config.factor_sizes):
        blocks.append(F.one_hot(rest % size, size))
        rest = torch.div(rest, size, rounding_mode="floor")
    return torch.cat(blocks[::-1], dim=1).to(dtype)


def unpool2x2(x: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) → (n, c, 2h, 2w); §3.1: each value fills the top-left of its 2×2 block, zeros elsewhere."""
    n, c, h, w = x.shape
    if c > 1 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        out = x.new_zeros(n, h, 2, w, 2, c)  # keep channels_last, so the next conv needs no reorder
        out[:, :, 0, :, 0, :] = x.permute(0, 2, 3, 1)
        return out.view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    out = x.new_zeros(n, c, h, 2, w, 2)
    out[:, :, :, 0, :, 0] = x
    return out.view(n, c, 2 * h, 2 * w)


class Unpool2x2(nn.Module):
    """The unpooling layer of §3.1 as a module, so that it shows in the layer strings."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unpool2x2(x)


def conv_relu(*channels: int) -> list[nn.Module]:
    """Conv(3,3,c)-ReLU for each consecutive pair of channel counts."""
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
    return layers


class Stage1(nn.Module):
    """§3.1: image encoder + attribute encoder → fusion → decoder; (source, target code) → coarse image."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        k, (h, w) = config.attribute_maps, config.map_size
        # Conv(3,3,64)-ReLU-Conv(3,3,64)-ReLU-Pool(2,2): (n,1,H,W) → (n,64,H/2,W/2)
        self.image_encoder = nn.Sequential(*conv_relu(1, 64, 64), nn.MaxPool2d(2))
        # one-hot(V) → FC(512)-ReLU-FC(7·H/2·W/2)-ReLU, reshaped to (n,7,H/2,W/2)
        self.attribute_encoder = nn.Sequential(
            nn.Linear(config.onehot_width, config.attribute_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.attribute_hidden, k * h * w),
            nn.ReLU(inplace=True),
        )
        # Concat (64+7 ch) - Conv 64-128-128-128-64, ReLU each: → (n,64,H/2,W/2)
        self.fusion = nn.Sequential(*conv_relu(64 + k, 64, 128, 128, 128, 64))
        # Unpool(2,2)-Conv(3,3,64)-ReLU-Conv(3,3,1): → (n,1,H,W)
        self.decoder = nn.Sequential(Unpool2x2(), *conv_relu(64, 64), nn.Conv2d(64, 1, 3, padding=1))

    def attribute_maps(self, codes: torch.Tensor) -> torch.Tensor:
        """(n,) int64 target codes → (n, 7, H/2, W/2) maps (Figure 4); independent of the image."""
        onehot = attribute_code(codes, self.config, self.attribute_encoder[0].weight.dtype)
        return self.attribute_encoder(onehot).view(len(codes), self.config.attribute_maps, *self.config.map_size)

    def fused(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) standardized sources, (n,) codes → (n, 64, H/2, W/2) fused maps."""
        return self.fusion(torch.cat([self.image_encoder(images), self.attribute_maps(codes)], dim=1))

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) standardized sources, (n,) codes → (n,1,H,W) standardized coarse images."""
        return self.decoder(self.fused(images, codes))

    def every_value(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) sources, (V,) codes → (n·V,1,H,W) coarse images, row i·V + v = forward(images[i], codes[v]).

        The image encoder runs once per image, and the fusion's first convolution is split into its image
        and attribute channels (a convolution is linear in its input channels): the image part once per
        image, the attribute part once per value.
        """
        encoded = self.image_encoder(images)
        first = self.fusion[0]
        x = views_conv(first, ((encoded, "image"), (self.attribute_maps(codes), "value")), len(images), len(codes))
        return self.decoder(self.fusion[1:](x))


class Stage1Skip(nn.Module):
    """Beyond the paper: stage 1 as an encoder–decoder over 4 scales with skip connections.

    The paper's stage 1 fuses image and attribute at H/2 with seven 3×3 convolutions, a receptive
    field of about 20 pixels: too short to carry a feature across the face in a 90° yaw change.
    Here the attribute maps join at H/8, where two convolutions see the whole face, and the decoder
    takes each scale's encoder maps back (skips) plus the one-hot code tiled as channels.
    """

    widths = (48, 96, 192)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        k, (h, w), v = config.attribute_maps, config.map_size, config.onehot_width
        c0, c1, c2 = self.widths
        self.enc0 = nn.Sequential(*conv_relu(1, c0, c0))
        self.enc1 = nn.Sequential(nn.MaxPool2d(2), *conv_relu(c0, c1, c1))
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), *conv_relu(c1, c2, c2))
        self.pool = nn.MaxPool2d(2)
        self.attribute_encoder = nn.Sequential(
            nn.Linear(v, config.attribute_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.attribute_hidden, k * h * w), nn.ReLU(inplace=True),
        )
        self.bottleneck = nn.Sequential(*conv_relu(c2 + k, c2, c2))
        self.dec2 = nn.Sequential(*conv_relu(2 * c2 + v, c2, c1))
        self.dec1 = nn.Sequential(*conv_relu(2 * c1 + v, c1, c0))
        self.dec0 = nn.Sequential(*conv_relu(2 * c0 + v, c0), nn.Conv2d(c0, 1, 3, padding=1))

    def attribute_maps(self, codes: torch.Tensor) -> torch.Tensor:
        """(n,) int64 target codes → (n, 7, H/8, W/8) maps; independent of the image."""
        onehot = attribute_code(codes, self.config, self.attribute_encoder[0].weight.dtype)
        return self.attribute_encoder(onehot).view(len(codes), self.config.attribute_maps, *self.config.map_size)

    def fused(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) standardized sources, (n,) codes → (n, 192, H/8, W/8): the bottleneck, where image and code meet."""
        e2 = self.enc2(self.enc1(self.enc0(images)))
        return self.bottleneck(torch.cat([self.pool(e2), self.attribute_maps(codes)], dim=1))

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) standardized sources, (n,) codes → (n,1,H,W) standardized coarse images."""
        onehot = attribute_code(codes, self.config, images.dtype)[:, :, None, None]

        def up_with(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            return torch.cat([x, skip, onehot.expand(-1, -1, *skip.shape[-2:])], dim=1)

        e0 = self.enc0(images)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        x = self.bottleneck(torch.cat([self.pool(e2), self.attribute_maps(codes)], dim=1))
        x = self.dec2(up_with(x, e2))
        x = self.dec1(up_with(x, e1))
        return self.dec0(up_with(x, e0))

    def every_value(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) sources, (V,) codes → (n·V,1,H,W) coarse images, row i·V + v = forward(images[i], codes[v]).

        The encoder does not see the code, so it runs once per image; each decoder's first convolution
        reads (upsampled maps, skip, tiled one-hot): it is split by those input channels (a convolution
        is linear in them), the skip part computed once per image and the one-hot part once per value.
        For V values this is about 40 % of V separate passes' arithmetic at the same result.
        """
        n, v = len(images), len(codes)
        onehot = attribute_code(codes, self.config, images.dtype)[:, :, None, None]
        e0 = self.enc0(images)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        pooled = self.pool(e2).repeat_interleave(v, dim=0)
        x = self.bottleneck(torch.cat([pooled, self.attribute_maps(codes).repeat(n, 1, 1, 1)], dim=1))
        for decoder, skip in ((self.dec2, e2), (self.dec1, e1), (self.dec0, e0)):
            up = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            tiled = onehot.expand(-1, -1, *skip.shape[-2:])
            x = decoder[1:](views_conv(decoder[0], ((up, "each"), (skip, "image"), (tiled, "value")), n, v))
        return x


def views_conv(conv: nn.Conv2d, parts: tuple[tuple[torch.Tensor, str], ...], n: int, v: int) -> torch.Tensor:
    """conv over `parts`' channels side by side for n images × V values, each part convolved only once.

    A part is ("each", (n·V, c, h, w)), ("image", (n, c, h, w)) or ("value", (V, c, h, w)); output row
    i·V + v sums the parts' convolutions with their slices of the weight, as conv(cat(parts)) would give.
    """
    out, start = None, 0
    for part, kind in parts:
        width = part.shape[1]
        y = F.conv2d(part, conv.weight[:, start : start + width], None, conv.stride, conv.padding)
        start += width
        if kind == "image":
            y = y.repeat_interleave(v, dim=0)
        elif kind == "value":
            y = y.repeat(n, 1, 1, 1)
        out = y if out is None else out + y
    assert start == conv.in_channels and out.shape[0] == n * v, (start, conv.in_channels, out.shape)
    return out + conv.bias[None, :, None, None]


class DescriptorHead(nn.Module):
    """Beyond the paper: predicts a face descriptor (dlib's 128-d) from the refiner's middle maps.

    Trained beside the pixel loss on descriptors computed once on the training targets, it carries a
    descriptor's identity knowledge into the refiner's features; at search time it reads the same
    maps as stage2.mid, so a query costs what it cost before. Two stride-2 convolutions shrink the
    (64, H/2, W/2) maps by 4 per side, then a linear layer gives the descriptor.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, w = config.image_size
        self.convs = nn.Sequential(nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                   nn.Conv2d(128, 128, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        side = (-(-h // 8), -(-w // 8))  # ceil: each stride-2 conv rounds up
        self.linear = nn.Linear(128 * side[0] * side[1], config.descriptor_dim)

    def forward(self, middle: torch.Tensor) -> torch.Tensor:
        """(n, 64, H/2, W/2) middle maps → (n, descriptor_dim) descriptors."""
        return self.linear(self.convs(middle).flatten(1))


class Stage2(nn.Module):
    """§3.2: the refiner; (source, coarse image) → refined image.

    With refiner "residual" (beyond the paper) the decoder's output is a correction added to the
    coarse image, its last layer starting at zero: the refiner begins as the identity on stage 1's
    output and can only be trained away from it where that lowers the error (§3.3's "locally refines").
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        # Concat (2 ch) - Conv64-ReLU-Conv64-ReLU-Pool: (n,2,H,W) → (n,64,H/2,W/2)
        self.encoder = nn.Sequential(*conv_relu(2, 64, 64), nn.MaxPool2d(2))
        # Conv128-Conv128-Conv128-Conv64, ReLU each: → (n,64,H/2,W/2); its output is the "middle layer"
        self.middle = nn.Sequential(*conv_relu(64, 128, 128, 128, 64))
        # Unpool-Conv64-ReLU-Conv(3,3,1): → (n,1,H,W)
        self.decoder = nn.Sequential(Unpool2x2(), *conv_relu(64, 64), nn.Conv2d(64, 1, 3, padding=1))
        self.descriptor = DescriptorHead(config) if config.descriptor_dim else None

    def middle_maps(self, sources: torch.Tensor, coarse: torch.Tensor, convs: int = 4) -> torch.Tensor:
        """The activations after the first `convs` convolutions (with ReLU) of the middle block."""
        x = self.encoder(torch.cat([sources, coarse], dim=1))
        return self.middle[: 2 * convs](x)

    def forward(self, sources: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(n,1,H,W) standardized sources and coarse images → (n,1,H,W) standardized refined images."""
        return self.refine_and_describe(sources, coarse)[0]

    def refine_and_describe(self, sources: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The refined images and, with a DescriptorHead, the descriptors of them, from one pass."""
        middle = self.middle_maps(sources, coarse)
        return self.decode(middle, coarse), (self.descriptor(middle) if self.descriptor is not None else None)

    def decode(self, middle: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """The refined images from the middle maps (and stage 1's images, which a residual refiner corrects)."""
        out = self.decoder(middle)
        return out + coarse if self.config.refiner == "residual" else out


class TwoStageGenerator(nn.Module):
    """Both stages; stage 2 sees the source and stage 1's output (§3.2), all in standardized units."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.stage1 = Stage1Skip(config) if config.arch == "skip" else Stage1(config)
        self.stage2 = Stage2(config)
        he_init(self)
        if config.refiner == "residual":
            zero_last_layer(self.stage2)

    def forward(self, sources: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,1,H,W) standardized sources, (n,) int64 codes → (coarse, refined), each (n,1,H,W)."""
        coarse = self.stage1(sources, codes)
        return coarse, self.stage2(sources, coarse)


def zero_last_layer(stage: "Stage2") -> None:
    """The residual refiner's start: its correction is zero, so stage 2 returns stage 1's image."""
    last = stage.decoder[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def he_init(module: nn.Module) -> None:
    """§3.4: He et al. (2015) initialization of every weight (fan-in, ReLU gain); biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
