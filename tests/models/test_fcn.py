import pytest
import torch
import torch.nn.functional as F

from fcn_deploy.errors import OptionError
from fcn_deploy.models import build_model, list_models
from fcn_deploy.models.upsample import bilinear_kernel

ARCHS = ["fcn32s-vgg16", "fcn16s-vgg16", "fcn8s-vgg16", "fcn8s-atonce-vgg16", "fcn32s-alexnet",
         "fcn-resnet50", "fcn-resnet101"]


def test_registry_lists_every_arch():
    assert list_models() == sorted(ARCHS)
    with pytest.raises(OptionError, match="unknown architecture"):
        build_model("fcn4s-resnet")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 97, 131), (1, 333, 500), (2, 64, 48)])
def test_output_matches_input_size(arch, shape):
    n, h, w = shape
    model = build_model(arch, num_classes=5, width=0.125).eval()
    with torch.no_grad():
        y = model(torch.randn(n, 3, h, w))
    assert y.shape == (n, 5, h, w)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_size_is_valid(arch):
    # Growing the input by the stride (32) grows every map by one cell, so each size class mod
    # 32 checked at small sizes holds for all larger ones: no upper limit (pad 100 only makes
    # the smallest inputs give >= 1 fc6 cell). Larger sides checked directly, on thin strips.
    model = build_model(arch, num_classes=2, width=1 / 16).eval()
    sizes = list(range(1, 66)) + [1000, 1199, 1200, 2400, 3600, 5001]
    with torch.no_grad():
        for s in sizes:
            assert model(torch.randn(1, 3, s, 1)).shape[2:] == (s, 1)
        assert model(torch.randn(1, 3, 1, 3600)).shape[2:] == (1, 3600)


@pytest.mark.parametrize("width,expected", [(1.0, 64), (0.5, 32), (0.25, 16), (0.125, 8),
                                            (1 / 16, 4)])
def test_width_scales_channels_exactly(width, expected):
    model = build_model("fcn8s-vgg16", 21, width=width)
    assert model.conv1_1.out_channels == expected
    assert model.fc6.out_channels == int(4096 * width)


def test_full_width_fcn8s_has_the_papers_parameter_count():
    model = build_model("fcn8s-vgg16", 21, width=1.0)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 134


def test_initial_weights_scores_zero_upsamplers_bilinear():
    model = build_model("fcn8s-vgg16", 21, width=1 / 16)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert getattr(model, name).weight.abs().sum() == 0
    w = model.upscore8.weight
    assert torch.equal(w[3, 3], bilinear_kernel(16)) and w[3, 4].abs().sum() == 0
    assert model.conv1_1.padding == (100, 100)
    assert model.pool1.ceil_mode


@pytest.mark.parametrize("mode,learned", [
    ("intermediate", {"upscore2", "upscore_pool4"}),
    ("all", {"upscore2", "upscore_pool4", "upscore8"}),
    ("none", set()),
])
def test_which_upsamplers_learn(mode, learned):
    model = build_model("fcn8s-vgg16", 21, width=1 / 16, learn_upsample=mode)
    ups = {"upscore2", "upscore_pool4", "upscore8"}
    assert {n for n in ups if getattr(model, n).weight.requires_grad} == learned


# Parameter names of the PyTorch port of the original Caffe FCN-8s (wkentaro/pytorch-fcn).
PORT_FCN8S_KEYS = (
    [f"conv{b}_{i}.{p}" for b, n in enumerate([2, 2, 3, 3, 3], 1) for i in range(1, n + 1)
     for p in ("weight", "bias")]
    + ["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias", "score_fr.weight", "score_fr.bias",
       "score_pool3.weight", "score_pool3.bias", "score_pool4.weight", "score_pool4.bias",
       "upscore2.weight", "upscore8.weight", "upscore_pool4.weight"])


def _port_fcn8s_forward(sd, x):
    """The port's forward pass, written out with its literal crop offsets (5, 9, 31)."""
    h = x
    pools = {}
    for b, n in enumerate([2, 2, 3, 3, 3], 1):
        for i in range(1, n + 1):
            pad = 100 if (b, i) == (1, 1) else 1
            h = F.relu(F.conv2d(h, sd[f"conv{b}_{i}.weight"], sd[f"conv{b}_{i}.bias"], padding=pad))
        h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        pools[b] = h
    h = F.relu(F.conv2d(h, sd["fc6.weight"], sd["fc6.bias"]))
    h = F.relu(F.conv2d(h, sd["fc7.weight"], sd["fc7.bias"]))
    h = F.conv2d(h, sd["score_fr.weight"], sd["score_fr.bias"])
    up2 = F.conv_transpose2d(h, sd["upscore2.weight"], stride=2)
    s4 = F.conv2d(pools[4], sd["score_pool4.weight"], sd["score_pool4.bias"])
    h = up2 + s4[:, :, 5:5 + up2.size(2), 5:5 + up2.size(3)]
    up4 = F.conv_transpose2d(h, sd["upscore_pool4.weight"], stride=2)
    s3 = F.conv2d(pools[3], sd["score_pool3.weight"], sd["score_pool3.bias"])
    h = up4 + s3[:, :, 9:9 + up4.size(2), 9:9 + up4.size(3)]
    h = F.conv_transpose2d(h, sd["upscore8.weight"], stride=8)
    return h[:, :, 31:31 + x.size(2), 31:31 + x.size(3)]


def test_loads_original_layout_state_dict_strictly_and_reproduces_its_outputs():
    torch.manual_seed(0)
    model = build_model("fcn8s-vgg16", 21, width=1 / 16).eval()
    assert sorted(model.state_dict()) == sorted(PORT_FCN8S_KEYS)
    sd = {k: torch.randn_like(v) * 0.05 for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        assert torch.allclose(model(x), _port_fcn8s_forward(sd, x), atol=1e-5)
