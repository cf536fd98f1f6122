"""The network is the paper's (§3.1–3.2): layer strings, shapes, unpooling, initialization."""

import pytest
import torch
from torch import nn

from generator.model import ModelConfig, TwoStageGenerator, unpool2x2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TwoStageGenerator(ModelConfig(num_values=7))


def convs(module):
    return [(m.in_channels, m.out_channels) for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_unpool_puts_value_top_left_and_zeros_elsewhere():
    x = torch.arange(1.0, 5.0).view(1, 1, 2, 2)
    expected = torch.tensor([[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(unpool2x2(x)[0, 0], expected)


def test_unpool_doubles_every_channel_and_keeps_gradients_to_the_kept_values():
    x = torch.randn(3, 5, 4, 6, requires_grad=True)
    y = unpool2x2(x)
    assert y.shape == (3, 5, 8, 12)
    assert torch.equal(y[:, :, ::2, ::2], x)
    assert y[:, :, 1::2].abs().sum() == 0 and y[:, :, :, 1::2].abs().sum() == 0
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_unpool_gives_the_same_values_in_channels_last_memory():
    x = torch.randn(2, 3, 4, 5)
    fast = unpool2x2(x.contiguous(memory_format=torch.channels_last))
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, unpool2x2(x))


def test_layer_strings_are_the_papers(model):
    s1, s2 = model.stage1, model.stage2
    assert convs(s1.image_encoder) == [(1, 64), (64, 64)]
    assert [m.out_features for m in s1.attribute_encoder if isinstance(m, nn.Linear)] == [512, 1792]
    assert convs(s1.fusion) == [(71, 64), (64, 128), (128, 128), (128, 128), (128, 64)]
    assert convs(s1.decoder) == [(64, 64), (64, 1)]
    assert convs(s2.encoder) == [(2, 64), (64, 64)]
    assert convs(s2.middle) == [(64, 128), (128, 128), (128, 128), (128, 64)]
    assert convs(s2.decoder) == [(64, 64), (64, 1)]
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))


def test_every_layer_but_each_stages_last_is_followed_by_relu(model):
    for stage in (model.stage1, model.stage2):
        layers = [m for m in stage.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.ReLU))]
        weighted = [i for i, m in enumerate(layers) if not isinstance(m, nn.ReLU)]
        for i in weighted[:-1]:
            assert isinstance(layers[i + 1], nn.ReLU), layers[i]
        assert weighted[-1] == len(layers) - 1  # the output conv has no ReLU


def test_parameter_counts_are_the_papers(model):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.stage1) == 1_482_241  # PERF-NOTES: 1.48 M
    assert count(model.stage2) == 518_465  # 0.52 M


def test_stage_shapes_at_32x32(model):
    x, codes = torch.randn(2, 1, 32, 32), torch.tensor([0, 6])
    s1 = model.stage1
    assert s1.image_encoder(x).shape == (2, 64, 16, 16)
    assert s1.attribute_maps(codes).shape == (2, 7, 16, 16)
    assert s1.fused(x, codes).shape == (2, 64, 16, 16)
    coarse, refined = model(x, codes)
    assert coarse.shape == refined.shape == (2, 1, 32, 32)
    assert model.stage2.encoder(torch.cat([x, coarse], 1)).shape == (2, 64, 16, 16)
    assert model.stage2.middle_maps(x, coarse).shape == (2, 64, 16, 16)
    assert model.stage2.middle_maps(x, coarse, convs=3).shape == (2, 128, 16, 16)


def test_one_hot_width_follows_the_vocabulary():
    model = TwoStageGenerator(ModelConfig(num_values=3))
    assert model.stage1.attribute_encoder[0].in_features == 3
    with pytest.raises(RuntimeError):
        model.stage1.attribute_maps(torch.tensor([3]))


def test_any_even_image_size_works():
    model = TwoStageGenerator(ModelConfig(num_values=2, image_size=(24, 40)))
    coarse, refined = model(torch.randn(1, 1, 24, 40), torch.tensor([1]))
    assert coarse.shape == refined.shape == (1, 1, 24, 40)
    assert model.stage1.attribute_maps(torch.tensor([0])).shape == (1, 7, 12, 20)


@pytest.mark.parametrize("size", [(31, 32), (32, 0)])
def test_odd_or_empty_image_size_is_refused(size):
    with pytest.raises(ValueError, match="even"):
        ModelConfig(num_values=7, image_size=size)


def test_attribute_maps_do_not_depend_on_the_image(model):
    codes = torch.tensor([2, 2])
    maps = model.stage1.attribute_maps(codes)
    assert torch.equal(maps[0], maps[1])
    assert (maps >= 0).all()  # ReLU after FC(1792)


def test_weights_have_he_initialization(model):
    conv = model.stage1.fusion[2]  # 64 → 128, fan-in 576
    expected = (2 / (64 * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.05
    assert all(float(m.bias.detach().abs().max()) == 0 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_skip_arch_keeps_shapes_and_refuses_sizes_it_cannot_pool():
    model = TwoStageGenerator(ModelConfig(num_values=5, image_size=(32, 32), arch="skip"))
    coarse, refined = model(torch.randn(2, 1, 32, 32), torch.tensor([0, 4]))
    assert coarse.shape == refined.shape == (2, 1, 32, 32)
    assert model.stage1.attribute_maps(torch.tensor([1])).shape == (1, 7, 4, 4)
    with pytest.raises(ValueError, match="multiple of 8"):
        ModelConfig(num_values=5, image_size=(36, 36), arch="skip")


def test_skip_arch_output_depends_on_the_target_code():
    model = TwoStageGenerator(ModelConfig(num_values=5, image_size=(16, 16), arch="skip")).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model.stage1(x, torch.tensor([0])), model.stage1(x, torch.tensor([3])))


def test_residual_refiner_starts_as_the_identity_on_stage_one_and_is_recorded():
    config = ModelConfig(num_values=3, image_size=(8, 8), refiner="residual")
    model = TwoStageGenerator(config)
    x, codes = torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    coarse, refined = model(x, codes)
    assert torch.equal(coarse, refined)
    assert ModelConfig.from_json(config.to_json()).refiner == "residual"
    assert "refiner" not in ModelConfig(num_values=3).to_json()  # the paper's: older manifests stay as they were


def test_skip_arch_exposes_its_bottleneck_as_the_fused_maps():
    model = TwoStageGenerator(ModelConfig(num_values=3, image_size=(16, 16), arch="skip"))
    assert model.stage1.fused(torch.randn(2, 1, 16, 16), torch.tensor([0, 1])).shape == (2, 192, 2, 2)
