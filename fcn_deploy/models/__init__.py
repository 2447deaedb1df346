"""FCN architectures: model families (``families/``, one module each) declared without torch
and read by the catalog; builders, convolutionalization and checkpoints need torch. Names
below are imported on first use (PEP 562), so ``fcn_deploy.models.catalog`` stays torch-free."""
import importlib

# (convolutionalize is a module of the same name: import it from models.convolutionalize)
_LAZY = {"alexnet": "backbones", "vgg16": "backbones", "random_init_": "init",
         "build_model": "registry", "get_model": "registry", "list_models": "registry"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:  # torch: only when a model is built
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
