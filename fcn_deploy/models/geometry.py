"""Coordinate maps of conv/pool/deconv stacks: where an output cell sits in input pixels.

Each layer maps an output index ``y`` to input coordinate ``x = scale * y + offset`` (the centre
of its receptive field); a transposed conv is the inverse map. Composing them gives total stride
and alignment, from which FCN crop offsets follow without magic numbers (Caffe's ``coord_map``).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

from torch import nn


@dataclass(frozen=True)
class CoordMap:
    """Affine map from a feature map's index to input-image pixel coordinates."""

    scale: Fraction = Fraction(1)
    offset: Fraction = Fraction(0)

    def __post_init__(self):
        object.__setattr__(self, "scale", Fraction(self.scale))
        object.__setattr__(self, "offset", Fraction(self.offset))

    def then(self, layer: nn.Module) -> "CoordMap":
        """Extend this map (input -> current tensor) through one more layer."""
        k, s, p = _kernel_stride_pad(layer)
        if k is None:
            return self
        if isinstance(layer, nn.ConvTranspose2d):
            # Deconv output y comes from input (y - ((k-1)/2 - p)) / s.
            a, b = Fraction(1, s), -Fraction(k - 1, 2 * s) + Fraction(p, s)
        else:
            a, b = Fraction(s), Fraction(k - 1, 2) - p
        return CoordMap(self.scale * a, self.scale * b + self.offset)

    def through(self, layers: Iterable[nn.Module]) -> "CoordMap":
        """Extend this map through a sequence of layers."""
        m = self
        for layer in layers:
            m = m.then(layer)
        return m


def _kernel_stride_pad(layer: nn.Module):
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = (_first(v) for v in (layer.kernel_size, layer.stride, layer.padding))
        return k, s, p
    if isinstance(layer, (nn.ReLU, nn.Dropout, nn.Dropout2d, nn.Identity)):
        return None, None, None
    raise TypeError(f"no coordinate map for layer type {type(layer).__name__}")


def _first(v) -> int:
    return v[0] if isinstance(v, tuple) else v


def crop_offset(larger: CoordMap, reference: CoordMap) -> int:
    """Offset at which to crop ``larger`` so its cells align with ``reference`` (same scale)."""
    if larger.scale != reference.scale:
        raise ValueError(f"cannot align maps of scale {larger.scale} and {reference.scale}")
    c = (reference.offset - larger.offset) / larger.scale
    if c.denominator != 1 or c < 0:
        raise ValueError(f"maps are misaligned: crop offset {c} is not a non-negative integer")
    return int(c)


def receptive_field(layers: Iterable[nn.Module]) -> int:
    """Receptive field size (pixels) of one output cell of a conv/pool stack."""
    rf, jump = 1, 1
    for layer in layers:
        k, s, _ = _kernel_stride_pad(layer)
        if k is not None:
            rf += (k - 1) * jump
            jump *= s
    return rf
