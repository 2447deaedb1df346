"""Output modes: what an exported graph returns, computed in the graph itself.

Deployments rarely want raw logits: an app drawing a mask wants 1 byte per pixel, one
thresholding on confidence wants the label and its probability. Computing them in the graph
keeps the argmax/softmax on the accelerator and shrinks what crosses the bus.
"""
from __future__ import annotations

import torch
from torch import nn

from fcn_deploy.contract.outputs import OUTPUT_MODES, PER_CLASS

__all__ = ["OUTPUT_MODES", "PER_CLASS", "OutputHead"]


class OutputHead(nn.Module):
    """``model`` followed by the output mode: softmax, argmax (uint8) or argmax + max prob."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        if mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output mode {mode!r}")
        self.model, self.mode = model, mode

    def forward(self, x):
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
