"""Data sets: synthetic scenes (the embedded default) and PASCAL VOC-layout folders."""

from pathlib import Path

from ..errors import DataError, OptionError
from .synthetic import SCENE_STYLES, SyntheticShapes
from .voc import VOCSegmentation

SYNTHETIC = "synthetic"


def open_dataset(data: str, split: str, image_size: int = 128, samples: int = 256,
                 seed: int = 0, skip_bad: bool = False):
    """``synthetic`` or ``synthetic:STYLE`` (generated, ``samples`` images of ``image_size``
    in a ``SCENE_STYLES`` style) or a VOC-layout folder."""
    name, _, style = data.partition(":")
    if name == SYNTHETIC:
        if style and style not in SCENE_STYLES:
            raise OptionError(f"unknown synthetic scene style {style!r}; choose one of "
                              f"{', '.join(SCENE_STYLES)}")
        return SyntheticShapes(split, samples, image_size, seed, style or "clutter")
    if not Path(data).exists():
        raise DataError(f"data set {data} does not exist "
                        f"(use '{SYNTHETIC}' or a VOC-layout folder)")
    return VOCSegmentation(data, split, skip_bad=skip_bad)
