"""Model registry after torchvision's ``models/_api.py``: ``get_model(name, **kw)`` and
``list_models()``, over the catalog's families (models/families/, one module each)."""
from __future__ import annotations

from torch import nn

from .catalog import ARCHS, family_of


def list_models() -> list[str]:
    """Names of every architecture of every family, sorted."""
    return list(ARCHS)


def build_model(arch: str, num_classes: int = 21, width: float = 1.0, **kwargs) -> nn.Module:
    """Build ``arch`` with ``num_classes`` outputs and channel counts scaled by ``width``."""
    family = family_of(arch)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, not {num_classes}")
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], not {width}")
    model = family.build(arch, num_classes=num_classes, width=width, **kwargs)
    model.arch, model.width, model.family = arch, width, family
    return model


get_model = build_model
