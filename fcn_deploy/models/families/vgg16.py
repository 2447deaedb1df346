"""VGG16 FCNs (the paper's): FCN-32s, FCN-16s, FCN-8s and at-once FCN-8s, with pytorch-fcn's
Caffe names."""
from __future__ import annotations

from fcn_deploy.models.family import ArchSpec, ModelFamily

# name -> (skip taps and their fuse upsamplers, the final upsampler: name, kernel, stride)
_HEADS = {
    "fcn32s-vgg16": ([], ("upscore", 64, 32)),
    "fcn16s-vgg16": ([("pool4", "upscore2")], ("upscore16", 32, 16)),
    "fcn8s-vgg16": ([("pool4", "upscore2"), ("pool3", "upscore_pool4")], ("upscore8", 16, 8)),
}
_HEADS["fcn8s-atonce-vgg16"] = _HEADS["fcn8s-vgg16"]
# At-once FCN-8s (trained in one stage) scales pool4 and pool3 before scoring them; a 1x1 conv
# of (s * x) is the conv with s * weight, so the scales fold into the score weights on load.
_ATONCE_SCALES = {"score_pool4.weight": 0.01, "score_pool3.weight": 0.0001}


class VGG16(ModelFamily):
    def build(self, arch, num_classes, width, **kw):
        from fcn_deploy.models.backbones import (  # torch
            FC_CHANNELS,
            scaled,
            vgg16_fcn_trunk,
        )
        from fcn_deploy.models.fcn import FCN  # torch

        skips, final = _HEADS[arch]
        taps = {"pool4": scaled(512, width), "pool3": scaled(256, width)}
        return FCN(vgg16_fcn_trunk(width), scaled(FC_CHANNELS, width), num_classes,
                   [(tap, taps[tap], up) for tap, up in skips], final, **kw)

    def classifier(self, num_classes, width, arch=None):
        from fcn_deploy.models.backbones import vgg16  # torch

        return vgg16(num_classes=num_classes, width=width)

    def foreign_state(self, arch, state, source):
        if arch != "fcn8s-atonce-vgg16":
            return state
        return {k: v * _ATONCE_SCALES[k] if k in _ATONCE_SCALES else v for k, v in state.items()}

    def fcn_state(self, model, convolutionalized, convs):
        from torch import nn  # torch

        names = [n for n in model.trunk_names if n.startswith("conv")] + ["fc6", "fc7"]
        sources = [m for m in convolutionalized.features if isinstance(m, nn.Conv2d)] + convs
        return {f"{n}.{p}": getattr(m, p) for n, m in zip(names, sources)
                for p in ("weight", "bias")}


FAMILY = VGG16(
    name="vgg16", classifier_input=224, first_conv=("conv1_1.weight", "features.0.weight"),
    foreign_convention=None,
    archs=(ArchSpec("fcn32s-vgg16", (), "stride-32 scores, one x32 bilinear upsampling"),
           ArchSpec("fcn16s-vgg16", ("pool4",), "x2 scores fused with pool4, then x16"),
           ArchSpec("fcn8s-vgg16", ("pool4", "pool3"), "fusions with pool4 and pool3, then x8"),
           ArchSpec("fcn8s-atonce-vgg16", ("pool4", "pool3"),
                    "FCN-8s trained at once: pool4 x 0.01 and pool3 x 0.0001 folded into their "
                    "score layers")))
