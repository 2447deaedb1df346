"""The backend table: every runtime fcn-deploy can run an artifact in, declared by one module
under ``runtime/backends/`` (name, artifact kinds, devices, extra, availability, options,
capabilities). ``open_segmenter``, the CLI's choices and help, bench, cpu_backends and the
reports read it; a new backend is one new module there. Reading the table imports no backend
library (nor numpy): the CLI's --help stays fast."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from fcn_deploy.errors import OptionError

KINDS = ("checkpoint", "onnx", "engine")
KIND_NAMES = {"checkpoint": "checkpoints", "onnx": "ONNX files", "engine": "TensorRT engines"}
DEVICES = ("cpu", "cuda")
DEVICE_NAMES = {"cpu": "the CPU", "cuda": "a CUDA GPU"}
# What a backend can do beyond running a batch (bench times a second load with a cache, serve
# and tiling use profiles, rgb8 graphs take frames as captured).
CAPABILITIES = ("compiled_cache", "engine_profiles", "uint8_frames")


@dataclass(frozen=True)
class Backend:
    """One runtime: ``open(path, device, options)`` returns its (unloaded) Segmenter; ``check``
    returns why it cannot run here (None: it can), after the ``requires`` imports are found."""

    name: str
    kinds: tuple[str, ...]
    devices: tuple[str, ...]
    open: Callable
    requires: tuple[str, ...] = ()          # import names; missing: the extra installs them
    extra: str | None = None                # pip install 'fcn-deploy[extra]'
    options: tuple[str, ...] = ()           # open_segmenter keywords it takes
    capabilities: frozenset = field(default_factory=frozenset)
    order: int = 50                         # lower: preferred where --backend is auto
    check: Callable[[], str | None] | None = None
    summary: str = ""                       # one line for --help and docs

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, in one line; None when it can."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            hint = f": pip install 'fcn-deploy[{self.extra}]'" if self.extra else ""
            return f"the {self.name} backend needs {missing[0]}, which is not installed here{hint}"
        return self.check() if self.check else None


@functools.cache
def backends() -> dict[str, Backend]:
    """name -> Backend of every module under runtime/backends/, preferred first."""
    from . import backends as package  # the declarations only: no backend library

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.append(module.BACKEND)
    return {b.name: b for b in sorted(found, key=lambda b: (b.order, b.name))}


def names(kind: str | None = None, device: str | None = None) -> list[str]:
    """Backend names, preferred first; only those running ``kind`` on ``device`` if given."""
    return [b.name for b in backends().values()
            if (kind is None or kind in b.kinds) and (device is None or device in b.devices)]


def installed(kind: str, device: str) -> list[str]:
    """The backends that run ``kind`` on ``device`` and can run here, preferred first."""
    return [n for n in names(kind, device) if backends()[n].unavailable() is None]


def check_device(device: str) -> None:
    """OptionError unless ``device`` is one the backends know."""
    if device not in DEVICES:
        raise OptionError(f"unknown device {device!r}; choose {' or '.join(DEVICES)}")


def choose(kind: str, device: str, name: str = "auto") -> Backend:
    """The backend ``name`` (checked against the artifact's kind and the device), or with
    ``auto`` the first available one that runs ``kind`` on ``device``."""
    check_device(device)
    if name != "auto":
        backend = get(name)
        if kind not in backend.kinds:
            raise OptionError(f"the {name} backend does not run {KIND_NAMES[kind]}; they run in "
                              f"{', '.join(names(kind))}")
        if device not in backend.devices:
            where = " or ".join(DEVICE_NAMES[d] for d in backend.devices)
            raise OptionError(f"the {name} backend runs on {where}; use "
                              f"--device {backend.devices[0]}")
        return backend
    # engines run on their GPU whatever --device says (it picks torch's and ONNX runtimes')
    candidates = [backends()[n] for n in names(kind, device) or names(kind)]
    return next((b for b in candidates if b.unavailable() is None), candidates[0])


def get(name: str) -> Backend:
    """The backend called ``name``; OptionError naming the choices."""
    if name not in backends():
        raise OptionError(f"unknown backend {name!r}; choose auto, {', '.join(backends())}")
    return backends()[name]


def check_options(backend: Backend, options: dict) -> dict:
    """The options given (not None or False); OptionError for one that ``backend`` does not
    take."""
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    extra = [k for k in given if k not in backend.options]
    if extra:
        takers = [b.name for b in backends().values() if extra[0] in b.options]
        raise OptionError(f"{_flag(extra[0])} does not apply to the {backend.name} backend"
                          + (f" (it is for {', '.join(takers)})" if takers else ""))
    return given


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")
