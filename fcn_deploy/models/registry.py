"""Model registry (name -> builder), after torchvision's ``models/_api.py``."""
from __future__ import annotations

from typing import Callable

from torch import nn

from fcn_deploy.contract.archs import ARCHS

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator registering a builder ``fn(num_classes, width, **kw) -> nn.Module`` as ``name``."""
    def wrap(fn):
        if name not in ARCHS:  # the torch-free CLI offers only the declared names
            raise ValueError(f"model {name!r} is not declared in contract/archs.py")
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn
    return wrap


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_MODELS)


def build_model(arch: str, num_classes: int = 21, width: float = 1.0, **kwargs) -> nn.Module:
    """Build ``arch`` with ``num_classes`` outputs and channel counts scaled by ``width``."""
    if arch not in _MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(list_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, not {num_classes}")
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], not {width}")
    model = _MODELS[arch](num_classes=num_classes, width=width, **kwargs)
    model.arch, model.width = arch, width
    return model


get_model = build_model
