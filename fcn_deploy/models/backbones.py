"""VGG16 and AlexNet defined in-project from config tables, with torchvision's parameter names.

``vgg16``/``alexnet`` build the ImageNet-style classifiers (``features``, ``avgpool``,
``classifier``) whose checkpoints users bring; ``vgg16_fcn_trunk``/``alexnet_fcn_trunk`` build
the FCN trunks (conv1 padded by 100, ceil-mode pools, classifier already convolutional).
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

# Output channels of 3x3 pad-1 convs; "M" = 2x2 stride-2 max pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# (out_channels, kernel, stride, padding) per conv; "M" = 3x3 stride-2 max pool.
ALEXNET_CFG = [(64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1),
               (256, 3, 1, 1), "M"]
FC_CHANNELS = 4096
# The FCN papers pad conv1 by 100 so that every input from 1 to ~1200 px yields a valid fc6 map.
FCN_CONV1_PAD = 100


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by ``width`` (at least 1)."""
    return max(1, int(channels * width))


def _features(cfg: list, pool: int, width: float, first_pad: int | None,
              ceil_mode: bool, batch_norm: bool = False) -> list[nn.Module]:
    """Conv(+BatchNorm)+ReLU layers and ``pool``x``pool`` stride-2 max pools from a config
    table; plain ints are 3x3 pad-1 convs. ``first_pad`` overrides conv1's padding (the FCN's
    100)."""
    layers, in_ch = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(pool, 2, ceil_mode=ceil_mode))
            continue
        out, k, s, p = v if isinstance(v, tuple) else (v, 3, 1, 1)
        pad = first_pad if first_pad is not None and not layers else p
        layers.append(nn.Conv2d(in_ch, scaled(out, width), k, s, pad))
        layers += [nn.BatchNorm2d(scaled(out, width))] * batch_norm + [nn.ReLU(inplace=True)]
        in_ch = scaled(out, width)
    return layers


class Classifier(nn.Module):
    """An ImageNet-style classifier in torchvision layout: features -> avgpool -> classifier."""

    def __init__(self, features: list[nn.Module], pool: int, classifier: list[nn.Module],
                 input_size: int):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(*classifier)
        self.input_size = input_size

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def vgg16(num_classes: int = 1000, width: float = 1.0, batch_norm: bool = False) -> Classifier:
    """VGG16 classifier (torchvision layout: features.N, classifier.0/3/6); with
    ``batch_norm`` torchvision's vgg16_bn (``fold_batch_norm`` turns it into a plain VGG16)."""
    c5, fc = scaled(512, width), scaled(FC_CHANNELS, width)
    head = [nn.Linear(c5 * 7 * 7, fc), nn.ReLU(True), nn.Dropout(),
            nn.Linear(fc, fc), nn.ReLU(True), nn.Dropout(), nn.Linear(fc, num_classes)]
    features = _features(VGG16_CFG, 2, width, None, False, batch_norm)
    return Classifier(features, 7, head, input_size=224)


def fold_batch_norm(classifier: Classifier) -> Classifier:
    """A copy of ``classifier`` with every BatchNorm (at its running statistics) folded into
    the convolution before it: the same function in eval mode, in the plain layout."""
    layers, pending = [], None
    for layer in copy.deepcopy(classifier.features):
        if isinstance(layer, nn.BatchNorm2d):
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            with torch.no_grad():
                pending.weight.mul_(scale[:, None, None, None])
                pending.bias.copy_((pending.bias - layer.running_mean) * scale + layer.bias)
            continue
        pending = layer if isinstance(layer, nn.Conv2d) else pending
        layers.append(layer)
    folded = copy.deepcopy(classifier)
    folded.features = nn.Sequential(*layers)
    return folded


def alexnet(num_classes: int = 1000, width: float = 1.0) -> Classifier:
    """AlexNet classifier (torchvision layout: features.N, classifier.1/4/6)."""
    c5, fc = scaled(256, width), scaled(FC_CHANNELS, width)
    head = [nn.Dropout(), nn.Linear(c5 * 6 * 6, fc), nn.ReLU(True),
            nn.Dropout(), nn.Linear(fc, fc), nn.ReLU(True), nn.Linear(fc, num_classes)]
    return Classifier(_features(ALEXNET_CFG, 3, width, None, False), 6, head, input_size=224)


def vgg16_fcn_trunk(width: float) -> "OrderedDict[str, nn.Module]":
    """VGG16 FCN trunk with the Caffe/pytorch-fcn layer names conv1_1 ... pool5, fc6, fc7."""
    trunk, block, idx = OrderedDict(), 1, 1
    for layer in _features(VGG16_CFG, 2, width, FCN_CONV1_PAD, ceil_mode=True):
        if isinstance(layer, nn.MaxPool2d):
            trunk[f"pool{block}"] = layer
            block, idx = block + 1, 1
        elif isinstance(layer, nn.Conv2d):
            trunk[f"conv{block}_{idx}"] = layer
        else:
            trunk[f"relu{block}_{idx}"] = layer
            idx += 1
    c5, fc = scaled(512, width), scaled(FC_CHANNELS, width)
    trunk.update(fc6=nn.Conv2d(c5, fc, 7), relu6=nn.ReLU(True), drop6=nn.Dropout2d(),
                 fc7=nn.Conv2d(fc, fc, 1), relu7=nn.ReLU(True), drop7=nn.Dropout2d())
    return trunk


def alexnet_fcn_trunk(width: float) -> "OrderedDict[str, nn.Module]":
    """AlexNet FCN trunk: torchvision-layout ``features`` and convolutionalized ``classifier``."""
    c5, fc = scaled(256, width), scaled(FC_CHANNELS, width)
    classifier = nn.Sequential(nn.Dropout(), nn.Conv2d(c5, fc, 6), nn.ReLU(True),
                               nn.Dropout(), nn.Conv2d(fc, fc, 1), nn.ReLU(True))
    features = nn.Sequential(*_features(ALEXNET_CFG, 3, width, FCN_CONV1_PAD, ceil_mode=True))
    return OrderedDict(features=features, classifier=classifier)
