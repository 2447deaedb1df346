"""Data sets: synthetic scenes (the embedded default), PASCAL VOC-layout folders, images/ +
masks/ folders and plain folders of images (no labels)."""

from pathlib import Path

from ..errors import DataError, OptionError
from .folders import ImageFolder, ImageMaskFolders, image_files
from .synthetic import SCENE_STYLES, SyntheticShapes
from .voc import VOCSegmentation

SYNTHETIC = "synthetic"
LAYOUTS = (f"use '{SYNTHETIC}', a folder with images/ and masks/, a PASCAL VOC-layout folder "
           "(JPEGImages/, SegmentationClass/, ImageSets/Segmentation/) or a folder of images")
_VOC_FOLDERS = ("JPEGImages", "SegmentationClass", "ImageSets")
# Synthetic sets up to this size (RGB + labels) keep their rendered scenes: epochs re-read them
SYNTHETIC_CACHE_BYTES = 1 << 30


def open_dataset(data: str, split: str, image_size: int = 128, samples: int = 256,
                 seed: int = 0, skip_bad: bool = False, class_names=None):
    """``synthetic[:STYLE]`` (``samples`` generated scenes of ``image_size``, a ``SCENE_STYLES``
    style), or a folder: ``images/`` + ``masks/`` (``ImageMaskFolders``), VOC layout
    (``VOCSegmentation``) or plain images (``ImageFolder``, no labels). Only the synthetic and
    VOC sets have splits: the other two give their whole folder for any ``split``.
    ``class_names`` names a folder's classes (the synthetic scenes have their own)."""
    name, _, style = data.partition(":")
    if name == SYNTHETIC:
        if style and style not in SCENE_STYLES:
            raise OptionError(f"unknown synthetic scene style {style!r}; choose one of "
                              f"{', '.join(SCENE_STYLES)}")
        cache = samples * image_size ** 2 * 4 <= SYNTHETIC_CACHE_BYTES
        return SyntheticShapes(split, samples, image_size, seed, style or "clutter", cache)
    root = Path(data)
    if not root.exists():
        raise DataError(f"data set {data} does not exist ({LAYOUTS})")
    if not root.is_dir():
        raise DataError(f"data set {data} is a file, not a folder ({LAYOUTS})")
    if (root / "images").is_dir() or (root / "masks").is_dir():
        return ImageMaskFolders(root, class_names=class_names, skip_bad=skip_bad)
    if any((root / sub).is_dir() for sub in _VOC_FOLDERS):
        return VOCSegmentation(root, split, class_names=class_names, skip_bad=skip_bad)
    if image_files(root):
        return ImageFolder(root, class_names=class_names, skip_bad=skip_bad)
    raise DataError(f"data set {data} holds none of the accepted layouts ({LAYOUTS})")


class FirstItems:
    """The first ``n`` items of ``dataset`` (a user's folder can hold thousands), its other
    attributes passed through; ``images_only`` drops the labels (another class list's) and
    takes ``num_classes``, so models can still be compared on the images."""

    def __init__(self, dataset, n: int, images_only: bool = False,
                 num_classes: int | None = None):
        self.dataset, self.n, self.images_only = dataset, min(n, len(dataset)), images_only
        if images_only:
            self.has_labels, self.num_classes = False, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        image, label = self.dataset[index]
        return image, None if self.images_only else label

    def __getattr__(self, name: str):
        return getattr(self.dataset, name)
