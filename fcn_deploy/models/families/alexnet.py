"""AlexNet FCN-32s (the paper's amortization net), torchvision's layer names."""
from __future__ import annotations

from fcn_deploy.models.family import ArchSpec, ModelFamily


class AlexNet(ModelFamily):
    def build(self, arch, num_classes, width, **kw):
        from fcn_deploy.models.backbones import (  # torch
            FC_CHANNELS,
            alexnet_fcn_trunk,
            scaled,
        )
        from fcn_deploy.models.fcn import FCN  # torch

        # Kernel 63 (not 64) keeps its crop whole: AlexNet's 6x6 fc6 centres scores on half
        # pixels, and an odd bilinear kernel shifts by the matching half pixel.
        return FCN(alexnet_fcn_trunk(width), scaled(FC_CHANNELS, width), num_classes, [],
                   ("upscore", 63, 32), **kw)

    def classifier(self, num_classes, width, arch=None):
        from fcn_deploy.models.backbones import alexnet  # torch

        return alexnet(num_classes=num_classes, width=width)

    def fcn_state(self, model, convolutionalized, convs):
        out = {f"features.{k}": v for k, v in convolutionalized.features.state_dict().items()}
        layers = convolutionalized.classifier
        for i, m in enumerate(layers):
            if any(m is c for c in convs):
                out.update({f"classifier.{i}.{p}": getattr(m, p) for p in ("weight", "bias")})
        return out


FAMILY = AlexNet(
    name="alexnet", classifier_input=224, first_conv=("features.0.weight",),
    archs=(ArchSpec("fcn32s-alexnet", (), "AlexNet trunk, one x32 bilinear upsampling"),))
