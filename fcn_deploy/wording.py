"""How counts and file names read in messages: "1 frame", never "1 frames"; two files of one
name told apart by their folders."""
from __future__ import annotations

from pathlib import Path


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, in the plural (``plural``, else noun + "s") unless ``n`` is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def short_names(paths: list[Path]) -> list[str]:
    """Each path as its file name, with as many parent folders as it takes to tell it from the
    others (``fcn8s.onnx`` and ``ex2/fcn8s.onnx``, not two rows named ``fcn8s.onnx``)."""
    full = [Path(p).absolute().parts for p in paths]
    names = []
    for parts in full:
        depth = 1
        while depth < len(parts) and any(q != parts and q[-depth:] == parts[-depth:]
                                         for q in full):
            depth += 1
        names.append(str(Path(*parts[-depth:])))
    return names
