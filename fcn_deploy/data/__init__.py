"""Data sets: synthetic scenes (the embedded default) and PASCAL VOC-layout folders."""

from pathlib import Path

from ..errors import DataError
from .synthetic import SyntheticShapes
from .voc import VOCSegmentation

SYNTHETIC = "synthetic"


def open_dataset(data: str, split: str, image_size: int = 128, samples: int = 256,
                 seed: int = 0, skip_bad: bool = False):
    """``synthetic`` (generated, ``samples`` images of ``image_size``) or a VOC-layout folder."""
    if data == SYNTHETIC:
        return SyntheticShapes(split, samples, image_size, seed)
    if not Path(data).exists():
        raise DataError(f"data set {data} does not exist "
                        f"(use '{SYNTHETIC}' or a VOC-layout folder)")
    return VOCSegmentation(data, split, skip_bad=skip_bad)
