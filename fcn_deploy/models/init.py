"""Random initialisation for untrained nets that stand in for trained ones (export, bench)."""
from __future__ import annotations

import torch
from torch import nn


def random_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every conv (score layers too) He-normal (fan_in, ReLU gain), biases zero; in place.

    The training init zeroes the score layers (the paper's choice), so an untrained net's
    logits are identically zero: its exports verify trivially and benchmarks or INT8
    calibration measure a degenerate net. Upsamplers (ConvTranspose2d) stay bilinear: that is
    what they are in trained FCNs (the final one is never learned), and a random one would mix
    the class channels into something no deployed model computes.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):  # ConvTranspose2d is not a Conv2d subclass
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=gen)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _calibrate_batch_norm(model, gen)
    return model


def _calibrate_batch_norm(model: nn.Module, gen: torch.Generator) -> None:
    """BatchNorm running statistics of one random batch: at their initial 0/1 they normalize
    nothing in eval mode, and activations grow through residual blocks (ResNet-101's logits
    to ~4e6, past FP16's range)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch sets the statistics
    was_training = model.training
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 64, 64, generator=gen))
    for m in norms:
        m.momentum = 0.1
    model.train(was_training)
