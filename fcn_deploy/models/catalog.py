"""The model catalog: every family under models/families/ and its architectures, read without
torch (the CLI's --arch choices, an artifact's arch check). A new family is one module there."""
from __future__ import annotations

import functools
import importlib
import pkgutil

from fcn_deploy.errors import OptionError

from .family import ArchSpec, ModelFamily


@functools.cache
def families() -> dict[str, ModelFamily]:
    """name -> ModelFamily of every module under models/families/."""
    from . import families as package  # declarations only: no torch

    found = [importlib.import_module(f"{package.__name__}.{info.name}").FAMILY
             for info in pkgutil.iter_modules(package.__path__)]
    return {f.name: f for f in sorted(found, key=lambda f: f.name)}


@functools.cache
def archs() -> dict[str, tuple[ModelFamily, ArchSpec]]:
    """arch name -> (its family, its spec), every family's."""
    return {a.name: (f, a) for f in families().values() for a in f.archs}


def family_of(arch: str) -> ModelFamily:
    """The family that builds ``arch``; OptionError naming the choices."""
    if arch not in archs():
        raise OptionError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return archs()[arch][0]


ARCHS = tuple(sorted(archs()))
