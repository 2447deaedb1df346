"""FCN architectures, their registry, and convolutionalization of classifiers."""
from . import zoo  # noqa: F401  (registers the builders)
from .backbones import alexnet, vgg16
from .convolutionalize import convolutionalize
from .init import random_init_
from .registry import build_model, get_model, list_models, register_model

__all__ = ["alexnet", "build_model", "convolutionalize", "get_model", "list_models",
           "random_init_", "register_model", "vgg16"]
