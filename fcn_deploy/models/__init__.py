"""FCN architectures, their registry, and convolutionalization of classifiers."""
from . import zoo  # noqa: F401  (registers the builders)
from .backbones import alexnet, vgg16
from .convolutionalize import convolutionalize
from .registry import build_model, get_model, list_models, register_model

__all__ = ["alexnet", "build_model", "convolutionalize", "get_model", "list_models",
           "register_model", "vgg16"]
