"""The peers' own model code for parity tests (skipped when absent): torchvision 0.28's models
and torchfcn 1.9.7's, imported past their package ``__init__`` (torchvision's fails beside the
CPU torch: "operator torchvision::nms does not exist"; torchfcn's pulls in ``fcn``, downloads
only) through a stub package over the installed folder, held in sys.modules only while importing.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

_ROOTS = ("torchvision", "torchfcn", "fcn")


@contextlib.contextmanager
def _borrowed_modules():
    """Undo, on leaving, every sys.modules entry of the peers' packages added inside."""
    before = {k for k in sys.modules if k.split(".")[0] in _ROOTS}
    try:
        yield
    finally:
        for name in [k for k in sys.modules if k.split(".")[0] in _ROOTS and k not in before]:
            del sys.modules[name]


def _stub_package(name: str) -> types.ModuleType:
    """An empty package ``name`` over its installed folder (its ``__init__`` is not run), in
    sys.modules; pytest.skip when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed")
    stub = types.ModuleType(name)
    stub.__path__ = list(spec.submodule_search_locations)
    # a real spec: importlib.util.find_spec(name) raises on a module whose __spec__ is None
    stub.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    stub.__spec__.submodule_search_locations = stub.__path__
    sys.modules[name] = stub
    return stub


@functools.cache
def _torchvision() -> types.ModuleType:
    """The torchvision package module with ``models`` (and its submodules) imported."""
    # a torchvision already imported (a working install) is used as it is, and kept
    present = "torchvision" in sys.modules
    with contextlib.nullcontext() if present else _borrowed_modules():
        package = sys.modules["torchvision"] if present else _stub_package("torchvision")
        for name in ("models", "models.resnet", "models.segmentation"):
            importlib.import_module(f"torchvision.{name}")
        return package


def torchvision_models() -> types.ModuleType:
    """torchvision's ``torchvision.models`` (``.resnet``, ``.segmentation`` and the rest)."""
    return _torchvision().models


def _refuse_download(*args, **kwargs):
    raise RuntimeError("tests download nothing: torchfcn's fcn.data.cached_download is stubbed")


@functools.cache
def torchfcn_models() -> types.ModuleType:
    """torchfcn's ``torchfcn.models`` (FCN32s, FCN16s, FCN8s, FCN8sAtOnce, VGG16); its
    pretrained-weight downloads raise instead."""
    if importlib.util.find_spec("torchfcn") is None:
        pytest.skip("torchfcn is not installed")
    try:
        torchvision = _torchvision()  # torchfcn.models.vgg imports it; VGG16() calls it
    except pytest.skip.Exception:
        torchvision = types.ModuleType("torchvision")  # enough for the FCNs themselves
    with _borrowed_modules():
        fcn = types.ModuleType("fcn")
        fcn.data = types.ModuleType("fcn.data")
        fcn.data.cached_download = _refuse_download
        sys.modules.setdefault("fcn", fcn)
        sys.modules.setdefault("torchvision", torchvision)
        if "torchfcn" not in sys.modules:
            _stub_package("torchfcn")
        return importlib.import_module("torchfcn.models")


def randomize_batch_norm_(model: nn.Module, seed: int = 0) -> nn.Module:
    """A peer's model with random BatchNorm affines, running stats measured on random images
    then jittered (stats far from 0 and 1, activations still in range), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0, 0.1, generator=gen)
            m.momentum = None  # a cumulative average: one batch sets the stats
        model.train()(torch.randn(2, 3, 48, 48, generator=gen))
        for m in norms:
            m.momentum = 0.1
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25, generator=gen))
            m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(
                m.running_mean.shape, generator=gen))
    return model.eval()
