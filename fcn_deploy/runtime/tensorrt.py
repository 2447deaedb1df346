"""The TensorRT plumbing the engine runtime and the builder share: which TensorRT module
(``tensorrt`` or ``tensorrt_rtx``), a logger that keeps messages for one-line errors, and the
optimization ``Profile`` type with its trtexec-style parser. ``import tensorrt`` stays lazy:
nothing here needs it at import time."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from fcn_deploy.errors import ExportError, OptionError
from fcn_deploy.shapes import fmt_shape, parse_shape

BACKENDS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}


@dataclass(frozen=True)
class Profile:
    """One optimization profile of the ``input`` tensor: min/opt/max NCHW shapes."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def __post_init__(self):
        for name, shape in (("min", self.min), ("opt", self.opt), ("max", self.max)):
            n, c, h, w = shape
            if c != 3:
                raise OptionError(f"profile {name} {fmt_shape(shape)}: the input has 3 channels, "
                                  f"not {c}")
            # Any H, W >= 1 gives an output of the input's size (models/backbones.py): the
            # largest profile is a matter of the GPU's memory, as in trtexec.
            if min(n, h, w) < 1:
                raise OptionError(f"profile {name} {fmt_shape(shape)}: N, H and W must be >= 1")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise OptionError(f"profile {self} needs min <= opt <= max in every dimension")

    def __str__(self):
        return f"{fmt_shape(self.min)}:{fmt_shape(self.opt)}:{fmt_shape(self.max)}"


# build's default: 64 to 1024 px, tuned for 512, batches up to 4
DEFAULT_PROFILE = Profile((1, 3, 64, 64), (1, 3, 512, 512), (4, 3, 1024, 1024))


def parse_profile(text: str) -> Profile:
    """``"1x3x256x256:1x3x512x512:1x3x640x640"`` (MIN:OPT:MAX) -> Profile."""
    parts = text.split(":")
    if len(parts) != 3:
        raise OptionError(f"malformed profile {text!r}; expected MIN:OPT:MAX shapes, e.g. "
                          "1x3x256x256:1x3x512x512:1x3x640x640")
    return Profile(*(parse_shape(p) for p in parts))


def import_backend(name: str = "auto"):
    """The TensorRT module for ``auto``, ``tensorrt`` or ``tensorrt-rtx``."""
    if name != "auto" and name not in BACKENDS:
        raise OptionError(f"unknown backend {name!r}; choose auto, {', '.join(BACKENDS)}")
    for candidate in (BACKENDS.values() if name == "auto" else [BACKENDS[name]]):
        try:
            return importlib.import_module(candidate)
        except ImportError:
            continue
    want = "tensorrt or tensorrt_rtx" if name == "auto" else BACKENDS[name]
    raise ExportError(f"{want} is not installed (pip install 'fcn-deploy[trt]' gives tensorrt_rtx)")


def is_rtx(trt) -> bool:
    """Whether ``trt`` is TensorRT-RTX (ahead-of-time builds, runtime kernel cache)."""
    return trt.__name__ == "tensorrt_rtx"


def collecting_logger(trt):
    """A TensorRT logger that keeps messages for error reports instead of printing them."""
    class Collector(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

        def error(self, last: bool = False) -> str:
            """First line of the first (or last) error-or-worse message."""
            errors = [m for sev, m in self.messages if sev <= trt.ILogger.Severity.ERROR]
            return errors[-1 if last else 0].splitlines()[0] if errors else "no error message"
    return Collector()
