from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcn_deploy.models import build_model
from fcn_deploy.models.geometry import CoordMap, crop_offset, receptive_field
from fcn_deploy.models.upsample import bilinear_kernel, bilinear_upsampler


@pytest.mark.parametrize("arch,crops", [
    ("fcn32s-vgg16", [19]),
    ("fcn16s-vgg16", [5, 27]),
    ("fcn8s-vgg16", [5, 9, 31]),  # pool4 crop, pool3 crop, final crop
])
def test_crop_offsets_follow_from_layer_geometry(arch, crops):
    model = build_model(arch, 21, width=1 / 16)
    assert model.crops == crops
    assert model.stride == 32


def test_alexnet_crop_is_whole_and_stride_32():
    model = build_model("fcn32s-alexnet", 21, width=1 / 16)
    assert model.crops == [18]
    assert model.stride == 32


def test_misaligned_maps_are_refused():
    with pytest.raises(ValueError, match="misaligned"):
        crop_offset(CoordMap(offset=0.5), CoordMap())
    with pytest.raises(ValueError, match="scale"):
        crop_offset(CoordMap(scale=2), CoordMap())


def test_receptive_field_of_vgg16_pool5_and_fc6():
    from fcn_deploy.models.backbones import vgg16
    features = list(vgg16(width=1 / 16).features)
    assert receptive_field(features) == 212
    assert receptive_field(features + [nn.Conv2d(1, 1, 7)]) == 212 + 6 * 32


def test_bilinear_kernel_values():
    k4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(bilinear_kernel(4), k4[:, None] * k4[None, :])
    k3 = torch.tensor([0.5, 1.0, 0.5])
    assert torch.allclose(bilinear_kernel(3), k3[:, None] * k3[None, :])
    assert bilinear_kernel(64).shape == (64, 64)
    assert bilinear_kernel(64).max() < 1  # even kernels centre between pixels


def test_upsampler_is_bilinear_interpolation_in_the_interior():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 7)
    up = bilinear_upsampler(3, 4, 2, learnable=False)
    assert not up.weight.requires_grad and up.bias is None
    # align_corners=False puts output pixel y at input coordinate y/2 - 1/4.
    c = crop_offset(CoordMap().then(up), CoordMap(Fraction(1, 2), Fraction(-1, 4)))
    assert c == 1
    y = up(x)[:, :, c:c + 12, c:c + 14]
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(y[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1], atol=1e-6)
