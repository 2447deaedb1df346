"""torchvision's FCN-ResNet50/101: a dilated ResNet trunk (stride 8), FCNHead, bilinear resize;
torchvision's names, so its weight files load strictly (less the training-only aux head)."""
from __future__ import annotations

from fcn_deploy.errors import CheckpointError
from fcn_deploy.models.family import ArchSpec, ModelFamily

DEPTHS = {"fcn-resnet50": 50, "fcn-resnet101": 101}
# torchvision's auxiliary head scores layer3 for an extra training loss; inference never runs it.
AUX_PREFIX = "aux_classifier."


class ResNetFamily(ModelFamily):
    def build(self, arch, num_classes, width, learn_upsample="intermediate"):
        from fcn_deploy.models.resnet import FCNResNet  # torch

        # The only upsampling is F.interpolate: there is no upsampler to learn, whichever asked.
        if learn_upsample not in ("intermediate", "all", "none"):
            raise ValueError("learn_upsample must be intermediate, all or none, "
                             f"not {learn_upsample!r}")
        return FCNResNet(DEPTHS[arch], num_classes, width)

    def classifier(self, num_classes, width, arch=None):
        """The ResNet classifier of ``arch``'s trunk (ResNet-50 unless told), torchvision's
        names (conv1 ... layer4, fc)."""
        from fcn_deploy.models.resnet import ResNet  # torch

        return ResNet(DEPTHS[arch or "fcn-resnet50"], num_classes, width)

    def convolutionalize(self, classifier):
        """``classifier`` fully convolutional: the global pool slides, fc is a 1x1 conv."""
        from fcn_deploy.models.resnet import convolutionalize_resnet  # torch

        return convolutionalize_resnet(classifier)

    def is_classifier(self, state: dict) -> bool:
        """True for a torchvision-layout ResNet classifier state dict (conv1.*, 2-D fc.weight)."""
        fc = state.get("fc.weight")
        return "conv1.weight" in state and fc is not None and fc.dim() == 2

    def fcn_state(self, model, convolutionalized, convs):
        from fcn_deploy.models.resnet import TRUNK  # torch

        # features.N are the trunk's modules in TRUNK's order; the pool after them has no state.
        names = {str(i): name for i, name in enumerate(TRUNK)}
        out = {}
        for key, tensor in convolutionalized.features.state_dict().items():
            index, rest = key.split(".", 1)
            out[f"backbone.{names[index]}.{rest}"] = tensor
        # A ResNet-50 classifier would fill only part of a ResNet-101 trunk: refuse, naming why.
        own = [k for k in model.state_dict() if k.startswith("backbone.")]
        known = set(own)
        missing = [f"missing tensor {k}" for k in own if k not in out]
        extra = [f"unexpected tensor {k}" for k in out if k not in known]
        if missing or extra:
            whose = f"{model.arch}'s" if hasattr(model, "arch") else "the FCN's"
            raise CheckpointError(f"the classifier does not fit {whose} trunk: "
                                  f"{(missing + extra)[0]}")
        return out

    def foreign_state(self, arch, state, source):
        return {k: v for k, v in state.items() if not k.startswith(AUX_PREFIX)}


FAMILY = ResNetFamily(
    name="resnet", classifier_input=224, first_conv=("backbone.conv1.weight", "conv1.weight"),
    score="classifier.4.weight", foreign_convention="imagenet",
    archs=(ArchSpec("fcn-resnet50", (), "torchvision's FCN: dilated ResNet-50 (stride 8), "
                                        "FCNHead, bilinear x8"),
           ArchSpec("fcn-resnet101", (), "torchvision's FCN: dilated ResNet-101 (stride 8), "
                                         "FCNHead, bilinear x8")))
