"""The FCN head: score layer, skip fusions and bilinear upsampling on any trunk.

FCN-32s upsamples stride-32 scores; FCN-16s first fuses scores from pool4, FCN-8s also from
pool3. Every crop offset is derived from the layer geometry (``geometry.CoordMap``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal, Sequence

import torch
from torch import nn

from .geometry import CoordMap, crop_offset
from .upsample import bilinear_upsampler, crop_like

LearnUpsample = Literal["intermediate", "all", "none"]


def _leaves(module: nn.Module) -> list[nn.Module]:
    children = list(module.children())
    return [module] if not children else [m for c in children for m in _leaves(c)]


class FCN(nn.Module):
    """Fully convolutional network: ``trunk`` -> score_fr -> [skip fusions] -> final upsampler.

    Modules are registered flat under their own names so that state dicts use the original
    Caffe/pytorch-fcn keys. ``skips`` lists (tap layer name, tap channels, fuse upsampler name),
    coarse to fine; ``final`` is (name, kernel, stride) of the last upsampler.
    """

    def __init__(self, trunk: "OrderedDict[str, nn.Module]", trunk_channels: int, num_classes: int,
                 skips: Sequence[tuple[str, int, str]], final: tuple[str, int, int],
                 learn_upsample: LearnUpsample = "intermediate"):
        super().__init__()
        if learn_upsample not in ("intermediate", "all", "none"):
            raise ValueError("learn_upsample must be intermediate, all or none, "
                             f"not {learn_upsample!r}")
        self.trunk_names = list(trunk)
        for name, layer in trunk.items():
            self.add_module(name, layer)
        self.score_fr = nn.Conv2d(trunk_channels, num_classes, 1)
        self.skips = [(tap, up) for tap, _, up in skips]
        for tap, channels, up in skips:
            self.add_module(f"score_{tap}", nn.Conv2d(channels, num_classes, 1))
            self.add_module(up, bilinear_upsampler(num_classes, 4, 2, learn_upsample != "none"))
        self.final_name, kernel, stride = final
        self.add_module(self.final_name,
                        bilinear_upsampler(num_classes, kernel, stride, learn_upsample == "all"))
        self.num_classes = num_classes
        self._init_weights()
        self.crops, self.stride = self._geometry()

    def _init_weights(self) -> None:
        # Kaiming init keeps activations in range through 13+ convs without batch norm;
        # score layers start at zero (the paper's choice), upsamplers are bilinear already.
        for name in self.trunk_names:
            for m in _leaves(getattr(self, name)):
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        for m in [self.score_fr] + [getattr(self, f"score_{tap}") for tap, _ in self.skips]:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def _geometry(self) -> tuple[list[int], int]:
        """Crop offsets (one per skip, then the final one) and total stride, from the layers."""
        maps, m = {}, CoordMap()
        for name in self.trunk_names:
            m = m.through(_leaves(getattr(self, name)))
            maps[name] = m
        crops, stride = [], int(m.scale)
        for tap, up in self.skips:
            m = m.then(getattr(self, up))
            crops.append(crop_offset(maps[tap], m))
        crops.append(crop_offset(m.then(getattr(self, self.final_name)), CoordMap()))
        return crops, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps, h = {}, x
        for name in self.trunk_names:
            h = getattr(self, name)(h)
            taps[name] = h
        h = self.score_fr(h)
        for (tap, up), offset in zip(self.skips, self.crops):
            h = getattr(self, up)(h)
            h = h + crop_like(getattr(self, f"score_{tap}")(taps[tap]), offset, h)
        h = getattr(self, self.final_name)(h)
        return crop_like(h, self.crops[-1], x)
