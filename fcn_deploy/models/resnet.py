"""ResNet-50/101 (Bottleneck v1.5) and torchvision's FCN-ResNet, with torchvision's names.

``ResNet`` is the ImageNet classifier users bring checkpoints of (conv1 ... layer4, avgpool,
fc); ``FCNResNet`` is torchvision's ``fcn_resnet50/101``: layer3/layer4 dilated instead of
strided (stride 8), ``FCNHead``, bilinear resize to the input; its training-only aux head is
left out. ``convolutionalize_resnet`` turns the classifier into a fully convolutional net.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from .backbones import scaled
from .convolutionalize import ConvolutionalizedNet, linear_to_conv

# Bottleneck blocks per stage of torchvision's resnet50 / resnet101.
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
EXPANSION = 4
STAGES = ("layer1", "layer2", "layer3", "layer4")
# The trunk's top-level modules in forward order (torchvision's names).
TRUNK = ("conv1", "bn1", "relu", "maxpool") + STAGES
CLASSIFIER_INPUT = 224


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (the stride, v1.5) -> 1x1 convs with BatchNorm, plus the shortcut."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _stage(in_channels: int, planes: int, blocks: int, stride: int, first_dilation: int,
           dilation: int) -> nn.Sequential:
    """One stage as torchvision's ``_make_layer`` builds it: the first block strides (or keeps
    the previous stage's dilation) and projects the shortcut; the rest use ``dilation``."""
    out, downsample = planes * EXPANSION, None
    if stride != 1 or in_channels != out:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False),
                                   nn.BatchNorm2d(out))
    layers = [Bottleneck(in_channels, planes, stride, first_dilation, downsample)]
    layers += [Bottleneck(out, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetTrunk(nn.Module):
    """conv1, bn1, relu, maxpool, layer1..layer4 (stride 32); ``dilate`` replaces the strides
    of layer2..layer4 with dilation, as torchvision's ``replace_stride_with_dilation``."""

    def __init__(self, depth: int = 50, width: float = 1.0,
                 dilate: tuple[bool, bool, bool] = (False, False, False)):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {', '.join(map(str, DEPTHS))}, not {depth}")
        # Every channel count is a multiple of conv1's, so width_of (conv1's channels / 64)
        # gives back a width that rebuilds the same shapes.
        base = scaled(64, width)
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels, dilation = base, 1
        for i, (name, blocks) in enumerate(zip(STAGES, DEPTHS[depth])):
            stride, previous = (1 if i == 0 else 2), dilation
            if i > 0 and dilate[i - 1]:
                dilation, stride = dilation * stride, 1
            self.add_module(name, _stage(channels, base * 2 ** i, blocks, stride, previous,
                                         dilation))
            channels = base * 2 ** i * EXPANSION
        self.depth, self.channels = depth, channels

    @property
    def stride(self) -> int:
        """The total stride: conv1's, maxpool's and every block's."""
        blocks = [b for name in STAGES for b in getattr(self, name)]
        return self.conv1.stride[0] * self.maxpool.stride * math.prod(b.stride for b in blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in TRUNK:
            x = getattr(self, name)(x)
        return x


def init_resnet_(module: nn.Module) -> nn.Module:
    """torchvision's ResNet init, in place: convs He-normal (fan_out), BatchNorm 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class ResNet(ResNetTrunk):
    """torchvision's ResNet-50/101 classifier: the trunk, global average pool, fc."""

    input_size = CLASSIFIER_INPUT

    def __init__(self, depth: int = 50, num_classes: int = 1000, width: float = 1.0):
        super().__init__(depth, width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.channels, num_classes)
        init_resnet_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(super().forward(x)), 1))


def convolutionalize_resnet(classifier: ResNet, input_size: int | None = None
                            ) -> ConvolutionalizedNet:
    """Fully convolutional copy of ``classifier`` trained at ``input_size`` (its own by
    default): the global pool becomes a sliding AvgPool2d over its map there, fc a 1x1 conv."""
    size = classifier.input_size if input_size is None else input_size
    trunk = copy.deepcopy(nn.Sequential(*(getattr(classifier, n) for n in TRUNK)))
    param = next(trunk.parameters())
    with torch.no_grad():  # eval: measuring the map must not move BatchNorm's running stats
        fmap = trunk.eval()(torch.zeros(1, 3, size, size, dtype=param.dtype,
                                        device=param.device)).shape[2:]
    pool = nn.AvgPool2d(tuple(fmap), stride=1)
    features = nn.Sequential(*trunk, pool).train(classifier.training)
    scores = nn.Sequential(linear_to_conv(classifier.fc, classifier.fc.in_features, (1, 1)))
    return ConvolutionalizedNet(features, scores, (size, size), classifier.stride)


class FCNHead(nn.Sequential):
    """torchvision's FCN head: 3x3 conv to a quarter of the channels, BatchNorm, ReLU,
    Dropout(0.1), 1x1 class scores (state-dict names 0, 1 and 4)."""

    def __init__(self, in_channels: int, num_classes: int):
        inter = in_channels // 4
        super().__init__(nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
                         nn.BatchNorm2d(inter), nn.ReLU(), nn.Dropout(0.1),
                         nn.Conv2d(inter, num_classes, 1))


class FCNResNet(nn.Module):
    """torchvision's FCN-ResNet50/101 without the aux head: a dilated trunk (``backbone``,
    stride 8), ``classifier`` (FCNHead), bilinear resize of the scores to the input size."""

    def __init__(self, depth: int = 50, num_classes: int = 21, width: float = 1.0):
        super().__init__()
        self.backbone = ResNetTrunk(depth, width, dilate=(False, True, True))
        self.classifier = FCNHead(self.backbone.channels, num_classes)
        self.num_classes = num_classes
        self.trunk_names = ["backbone"]
        # No skip fusions and no crops: F.interpolate resizes to the input exactly.
        self.skips, self.crops = [], []
        self.stride = self.backbone.stride
        init_resnet_(self)
        # The score layer starts at zero, as the VGG FCNs' score layers do.
        nn.init.zeros_(self.classifier[4].weight)
        nn.init.zeros_(self.classifier[4].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.classifier(self.backbone(x))
        return F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)
