"""Convolutionalization: a classifier's Linear layers become convolutions (paper, section 3.1)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .geometry import CoordMap


class ConvolutionalizedNet(nn.Module):
    """``features`` then a convolutional ``classifier``: any input size in, a class map out.

    ``patch_size`` is the classifier's input size and ``stride`` the step between the patches
    that neighbouring output cells see.
    """

    def __init__(self, features: nn.Module, classifier: nn.Sequential, patch_size: tuple[int, int],
                 stride: int | None = None):
        super().__init__()
        self.features, self.classifier = features, classifier
        self.patch_size = patch_size
        # a plain chain of layers: from their geometry; residual trunks say their own
        self.stride = stride or int(CoordMap().through(_modules(features)).scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _modules(seq: nn.Module) -> list[nn.Module]:
    return list(seq.children()) if isinstance(seq, nn.Sequential) else [seq]


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _check_avgpool(avgpool: nn.Module | None, fmap: tuple[int, int]) -> None:
    if avgpool is None or isinstance(avgpool, nn.Identity):
        return
    if isinstance(avgpool, nn.AdaptiveAvgPool2d) and _pair(avgpool.output_size) == fmap:
        return
    raise ValueError(f"avgpool {avgpool} is not the identity on the {fmap[0]}x{fmap[1]} feature "
                     "map at this input size; convolutionalize at the size it was trained for")


def linear_to_conv(linear: nn.Linear, in_channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """Conv2d whose kernel covers a ``in_channels x kernel`` map, equal to ``linear`` on it."""
    if linear.in_features != in_channels * kernel[0] * kernel[1]:
        raise ValueError(f"Linear expects {linear.in_features} inputs, the feature map gives "
                         f"{in_channels}x{kernel[0]}x{kernel[1]}")
    conv = nn.Conv2d(in_channels, linear.out_features, kernel, bias=linear.bias is not None,
                     dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        # flatten(1) orders a CxHxW map channel-major, exactly a conv kernel's layout.
        conv.weight.copy_(linear.weight.reshape(conv.weight.shape))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def convolutionalize(classifier: nn.Module, input_size) -> ConvolutionalizedNet:
    """Fully convolutional copy of a torchvision-layout classifier trained at ``input_size``.

    The first Linear becomes a conv whose kernel is the feature map at ``input_size``; later
    Linears become 1x1 convs. Layers are copied, so the two nets share no parameters.
    """
    size = _pair(input_size)
    features = copy.deepcopy(classifier.features)
    param = next(features.parameters())
    with torch.no_grad():
        fmap = features(torch.zeros(1, 3, *size, dtype=param.dtype, device=param.device)).shape[1:]
    _check_avgpool(getattr(classifier, "avgpool", None), tuple(fmap[1:]))
    channels, kernel, layers = fmap[0], tuple(fmap[1:]), []
    for layer in classifier.classifier:
        if isinstance(layer, nn.Linear):
            layers.append(linear_to_conv(layer, channels, kernel))
            channels, kernel = layer.out_features, (1, 1)
        elif isinstance(layer, (nn.ReLU, nn.Dropout, nn.Identity)):
            layers.append(copy.deepcopy(layer))
        else:
            raise TypeError(f"cannot convolutionalize a {type(layer).__name__} in the classifier")
    return ConvolutionalizedNet(features, nn.Sequential(*layers), size)
