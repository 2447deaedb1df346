"""What a model family declares (after torchvision's model builders, one family per trunk):
its architectures and their skips, the input convention and class names it starts from, and
the torch side (build an FCN, build the classifier it is pretrained as, map a convolutionalized
classifier's tensors onto the FCN's names). The declaration itself needs no torch: the CLI's
--arch choices and the catalog read it; the torch side is imported when a model is built."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of a family: ``skips`` are the trunk taps fused coarse to fine (FCN-16s:
    pool4; FCN-8s: pool4, pool3); stride, crops and geometry come from the built layers."""

    name: str
    skips: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class ModelFamily:
    """A trunk and the FCNs on it. Subclasses implement the torch side; the fields are the
    torch-free declaration."""

    name: str                                  # the trunk: vgg16, alexnet, ...
    archs: tuple[ArchSpec, ...]
    classifier_input: int                      # the pretrained classifier's input side (px)
    first_conv: tuple[str, ...]                # state-dict keys of conv1's weight (width 1: 64)
    first_conv_channels: int = 64
    score: str = "score_fr.weight"             # the state-dict key of the class scores' weight
    # The input convention (contract/preprocess.CONVENTIONS) of weight files in this family's
    # layout made by other tools; None: they differ (pytorch-fcn's VGG16 FCNs are Caffe's, the
    # same names trained elsewhere are ImageNet's), so export asks for --input-convention.
    foreign_convention: str | None = "imagenet"

    def build(self, arch: str, num_classes: int, width: float, **kw):
        """The FCN ``arch`` (an nn.Module with stride, crops and trunk_names)."""
        raise NotImplementedError

    def classifier(self, num_classes: int, width: float, arch: str | None = None):
        """The classifier ``arch``'s trunk is pretrained as (torchvision state-dict names)."""
        raise NotImplementedError

    def is_classifier(self, state: dict) -> bool:
        """Whether ``state`` is a classifier of this family (torchvision's features.N and 2-D
        classifier.N weights by default), not an FCN."""
        return any(k.startswith("features.0.") for k in state) and any(
            k.startswith("classifier.") and k.endswith(".weight") and v.dim() == 2
            for k, v in state.items())

    def convolutionalize(self, classifier):
        """``classifier`` as a fully convolutional net (its fc layers as convolutions)."""
        from fcn_deploy.models.convolutionalize import convolutionalize  # torch

        return convolutionalize(classifier, classifier.input_size)

    def fcn_state(self, model, convolutionalized, convs) -> dict:
        """The tensors of a convolutionalized classifier (its fc layers as ``convs``, the last
        one left out) under the names of the FCN ``model``."""
        raise NotImplementedError

    def foreign_state(self, arch: str, state: dict, source: str) -> dict:
        """A weight file of another tool in this family's layout, as the state dict of ``arch``
        built here (exact rewrites only: folded constant scales, dropped training-only heads)."""
        return state

    def width_of(self, state: dict) -> float | None:
        """The width multiplier of a state dict of this family (conv1's channels / 64)."""
        key = next((k for k in self.first_conv if k in state), None)
        return None if key is None else state[key].shape[0] / self.first_conv_channels
