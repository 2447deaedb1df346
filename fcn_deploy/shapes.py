"""Text forms of shapes and sizes (trtexec's NxCxHxW, HxW sides, comma-separated lists) and
their parsers: the one place the CLI, the builder, the bench, tiling and the runtime read them."""
from __future__ import annotations

import re

from .errors import OptionError

_SHAPE = re.compile(r"^\d+x\d+x\d+x\d+$")


def fmt_shape(shape) -> str:
    """(1, 3, 512, 512) -> ``"1x3x512x512"``."""
    return "x".join(map(str, shape))


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x3x512x512"`` (trtexec syntax) -> (1, 3, 512, 512)."""
    if not _SHAPE.match(text.strip()):
        raise OptionError(f"malformed shape {text!r}; expected NxCxHxW, e.g. 1x3x512x512")
    return tuple(int(v) for v in text.strip().split("x"))


def parse_hw(text: str, what: str) -> tuple[int, int]:
    """``"1024x2048"`` -> (1024, 2048); a single side ``"512"`` -> (512, 512)."""
    h, x, w = text.strip().partition("x")
    w = w if x else h
    if not (h.isdigit() and w.isdigit()) or int(h) < 1 or int(w) < 1:
        raise OptionError(f"malformed {what} {text!r}; expected HxW or a side, "
                          "e.g. 500 or 1024x2048")
    return int(h), int(w)


def int_list(text: str, what: str) -> list[int]:
    """``1,2,4`` -> [1, 2, 4]; FcnDeployError naming option ``what`` unless all are positive."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"malformed {what} {text!r}; "
                          "expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise OptionError(f"{what} {text!r}: give positive integers")
    return values


def size_list(text: str, what: str) -> list[tuple[int, int]]:
    """``256,500,1024x2048`` -> [(256, 256), (500, 500), (1024, 2048)] (HxW or square)."""
    sizes = [parse_hw(item, "size") for item in filter(None, (t.strip() for t in text.split(",")))]
    if not sizes:
        raise OptionError(f"{what} is empty")
    return sizes


def name_list(text: str) -> list[str]:
    """``a,b,,c`` -> [a, b, c]: empty items dropped."""
    return [name for name in text.split(",") if name]
