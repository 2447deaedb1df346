"""In-network upsampling: transposed convolutions initialised to bilinear interpolation."""
from __future__ import annotations

import torch
from torch import nn


def bilinear_kernel(size: int) -> torch.Tensor:
    """2-D bilinear interpolation kernel of side ``size`` (the FCN/Caffe definition)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    return (filt[:, None] * filt[None, :]).float()


def bilinear_upsampler(channels: int, kernel: int, stride: int,
                       learnable: bool) -> nn.ConvTranspose2d:
    """Channel-wise ConvTranspose2d without bias, weights = bilinear kernel on the diagonal."""
    up = nn.ConvTranspose2d(channels, channels, kernel, stride=stride, bias=False)
    with torch.no_grad():
        up.weight.zero_()
        k = bilinear_kernel(kernel)
        for c in range(channels):
            up.weight[c, c] = k
    up.weight.requires_grad_(learnable)
    return up


def crop_like(x: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """Crop ``x`` spatially at ``offset`` to the height and width of ``like``."""
    h, w = like.shape[2], like.shape[3]
    return x[:, :, offset:offset + h, offset:offset + w]
