"""Text forms of shapes (trtexec's NxCxHxW, HxW sides) and their parsers: the one place the CLI,
the builder, tiling and the runtime read them."""
from __future__ import annotations

import re

from .errors import ExportError

_SHAPE = re.compile(r"^\d+x\d+x\d+x\d+$")


def fmt_shape(shape) -> str:
    """(1, 3, 512, 512) -> ``"1x3x512x512"``."""
    return "x".join(map(str, shape))


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x3x512x512"`` (trtexec syntax) -> (1, 3, 512, 512)."""
    if not _SHAPE.match(text.strip()):
        raise ExportError(f"malformed shape {text!r}; expected NxCxHxW, e.g. 1x3x512x512")
    return tuple(int(v) for v in text.strip().split("x"))


def parse_hw(text: str, what: str) -> tuple[int, int]:
    """``"1024x2048"`` -> (1024, 2048); a single side ``"512"`` -> (512, 512)."""
    h, x, w = text.strip().partition("x")
    w = w if x else h
    if not (h.isdigit() and w.isdigit()) or int(h) < 1 or int(w) < 1:
        raise ExportError(f"malformed {what} {text!r}; expected HxW or a side, "
                          "e.g. 500 or 1024x2048")
    return int(h), int(w)
