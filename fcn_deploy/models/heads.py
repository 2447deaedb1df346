"""Output modes: what an exported graph returns, computed in the graph itself.

Deployments rarely want raw logits: an app drawing a mask wants 1 byte per pixel, one
thresholding on confidence wants the label and its probability. Computing them in the graph
keeps the argmax/softmax on the accelerator and shrinks what crosses the bus.
"""
from __future__ import annotations

import torch
from torch import nn

from fcn_deploy.contract.conventions import convention
from fcn_deploy.contract.outputs import OUTPUT_MODES, PER_CLASS

__all__ = ["OUTPUT_MODES", "PER_CLASS", "OutputHead", "RGB8Input"]


class RGB8Input(nn.Module):
    """uint8 N x H x W x 3 RGB frames -> the normalized float32 NCHW batch of input convention
    ``convention_name``, with the ops of ``contract.preprocess.normalize`` in its order, so both
    paths give the same floats."""

    def __init__(self, mean, std, convention_name: str = "imagenet"):
        super().__init__()
        c = convention(convention_name)
        self.bgr, self.divisor = c.bgr, c.divisor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, frames):
        # Cast first: TensorRT takes a uint8 tensor into Cast, not into Transpose.
        x = frames.float()
        x = (x.flip(-1) if self.bgr else x).permute(0, 3, 1, 2)
        if self.divisor != 1:
            x = x / self.divisor
        return (x - self.mean) / self.std


class OutputHead(nn.Module):
    """``model`` followed by the output mode: softmax, argmax (uint8) or argmax + max prob;
    ``preprocess`` (``RGB8Input``), when given, runs before it (exported as /preprocess/...)."""

    def __init__(self, model: nn.Module, mode: str, preprocess: nn.Module | None = None):
        super().__init__()
        if mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output mode {mode!r}")
        self.model, self.mode, self.preprocess = model, mode, preprocess

    def forward(self, x):
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.from_logits(self.model(x))

    def from_logits(self, logits: torch.Tensor):
        """The output mode applied to logits the model already computed."""
        if self.mode == "logits":
            return logits
        if self.mode == "probs":
            return logits.softmax(1)
        if self.mode == "labels":
            return logits.argmax(1).to(torch.uint8)
        score, labels = logits.softmax(1).max(1)
        return labels.to(torch.uint8), score
