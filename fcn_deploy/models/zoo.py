"""The registered FCN variants: one builder per architecture."""
from __future__ import annotations

from .backbones import FC_CHANNELS, alexnet_fcn_trunk, scaled, vgg16_fcn_trunk
from .fcn import FCN
from .registry import register_model


def _vgg16_fcn(num_classes, width, skips, final, **kw) -> FCN:
    taps = {"pool4": scaled(512, width), "pool3": scaled(256, width)}
    return FCN(vgg16_fcn_trunk(width), scaled(FC_CHANNELS, width), num_classes,
               [(tap, taps[tap], up) for tap, up in skips], final, **kw)


@register_model("fcn32s-vgg16")
def fcn32s_vgg16(num_classes=21, width=1.0, **kw) -> FCN:
    """FCN-32s on VGG16: stride-32 scores, one x32 bilinear upsampling."""
    return _vgg16_fcn(num_classes, width, [], ("upscore", 64, 32), **kw)


@register_model("fcn16s-vgg16")
def fcn16s_vgg16(num_classes=21, width=1.0, **kw) -> FCN:
    """FCN-16s on VGG16: x2 upsampled scores fused with pool4 scores, then x16."""
    return _vgg16_fcn(num_classes, width, [("pool4", "upscore2")], ("upscore16", 32, 16), **kw)


@register_model("fcn8s-vgg16")
def fcn8s_vgg16(num_classes=21, width=1.0, **kw) -> FCN:
    """FCN-8s on VGG16: fusions with pool4 and pool3 scores, then x8."""
    skips = [("pool4", "upscore2"), ("pool3", "upscore_pool4")]
    return _vgg16_fcn(num_classes, width, skips, ("upscore8", 16, 8), **kw)


@register_model("fcn32s-alexnet")
def fcn32s_alexnet(num_classes=21, width=1.0, **kw) -> FCN:
    """FCN-32s on AlexNet. Kernel 63 (not 64) keeps its crop whole: AlexNet's 6x6 fc6 centres
    scores on half pixels, and an odd bilinear kernel shifts by the matching half pixel."""
    return FCN(alexnet_fcn_trunk(width), scaled(FC_CHANNELS, width), num_classes, [],
               ("upscore", 63, 32), **kw)
