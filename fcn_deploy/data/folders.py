"""Users' own data: an ``images/`` + ``masks/`` folder pair, and a plain folder of images (no
labels). Neither has splits: every split is the whole folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fcn_deploy.contract.classes import read_class_file
from fcn_deploy.errors import DataError, OptionError

from .pixels import Conversion, ImageRefused, to_rgb8
from .voc import IGNORE_INDEX, _decode, _error

# What PIL reads; media/images.py's input list plus the netpbm formats.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Lossy compression shifts the class ids near every edge, so these cannot hold masks.
_LOSSY = (".jpg", ".jpeg")
CLASS_NAMES_FILE = "class_names.txt"


def image_files(folder: Path) -> dict[str, Path]:
    """{stem: file} of the images directly in ``folder`` (by suffix, sorted, hidden files
    left out); DataError naming both files when two share a stem."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if (path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES
                or not path.is_file()):
            continue
        if path.stem in found:  # masks pair with images by stem: one of them would be lost
            raise DataError(f"{path} and {found[path.stem]} share the name {path.stem!r}; "
                            "rename one")
        found[path.stem] = path
    return found


def _mask_ids(im, path: Path) -> np.ndarray:
    """uint8 H x W class ids of a mask image: palette indices or gray values, never colours."""
    if path.suffix.lower() in _LOSSY:
        raise _error(path, "mask is a JPEG, whose lossy compression changes class ids at "
                           "edges; save masks as index PNGs")
    if im.mode in ("P", "L", "1"):
        return np.array(im, dtype=np.uint8)  # palette indices, not colours
    if im.mode == "I" or im.mode.startswith("I;16"):
        values = np.asarray(im)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > IGNORE_INDEX:
            raise _error(path, f"mask (mode {im.mode}) holds value {lo if lo < 0 else hi}; "
                               f"class ids must be 0..{IGNORE_INDEX - 1} ({IGNORE_INDEX} = void)")
        return values.astype(np.uint8)
    colour = im.mode.startswith(("RGB", "CMYK", "YCbCr", "LAB", "HSV"))
    what = "a colour image" if colour else "not an index image"
    raise _error(path, f"mask is {what} (mode {im.mode}); it must be an index PNG (mode P or "
                       f"L) of class ids, {IGNORE_INDEX} = void")


class _Folder:
    """What the folder data sets share: class names, decoding, skip_bad and the item list."""

    has_labels = True

    def __init__(self, root, num_classes: int | None, class_names, skip_bad: bool):
        self.root = Path(root)
        if not self.root.is_dir():
            raise _error(self.root, "data set folder not found")
        self.skipped: list[tuple[Path, str]] = []
        # {conversion: file names}: images ``to_rgb8`` changed beyond 8-bit RGB as stored,
        # filled as items load, so a caller can print media.images.conversion_note lines
        self.conversions: dict[Conversion, set[str]] = {}
        self.skip_bad = skip_bad
        if class_names is None and (self.root / CLASS_NAMES_FILE).is_file():
            try:
                class_names = read_class_file(self.root / CLASS_NAMES_FILE)
            except OptionError as e:  # the data set's file, not an option
                raise DataError(str(e)) from None
        self.num_classes: int | None = None
        self.class_names: list[str] | None = None
        if class_names is not None or num_classes is not None:
            self.set_classes(len(class_names) if num_classes is None else num_classes,
                             class_names)

    def set_classes(self, num_classes: int, class_names=None) -> None:
        """Give a data set that has no class count of its own the model's (names default to
        class0..); DataError if it already has another."""
        if class_names is not None and len(class_names) != num_classes:
            raise OptionError(f"{len(class_names)} class names for {num_classes} classes")
        if self.num_classes is not None and self.num_classes != num_classes:
            raise DataError(f"{self.root} has {self.num_classes} classes, not {num_classes}")
        if class_names is None:
            class_names = self.class_names or [f"class{i}" for i in range(num_classes)]
        self.num_classes, self.class_names = num_classes, list(class_names)

    def _keep_loadable(self, ids: list[str]) -> list[str]:
        """``ids`` less those that fail to load, recorded in ``skipped`` (skip_bad only)."""
        if not self.skip_bad:
            return ids
        kept = []
        for id_ in ids:
            try:
                self._load(id_)
                kept.append(id_)
            except DataError as e:
                self.skipped.append((e.path, e.reason))
        return kept

    def _finish(self, ids: list[str], total: int) -> None:
        self.ids = self._keep_loadable(ids)
        if not self.ids:
            path, reason = self.skipped[0]
            raise _error(self.root, f"no usable samples: all {total} skipped "
                                    f"(first: {path}: {reason})")

    def _image(self, path: Path) -> np.ndarray:
        def rgb(im, path):
            try:
                image, conversion = to_rgb8(im)
            except ImageRefused as e:
                raise _error(path, str(e)) from None
            if conversion is not None:
                self.conversions.setdefault(conversion, set()).add(path.name)
            return image

        return _decode(path, rgb)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return self._load(self.ids[i])


class ImageMaskFolders(_Folder):
    """``root/images/`` and ``root/masks/`` paired by stem; items are (uint8 HxWx3 RGB image,
    uint8 HxW class ids, 255 = void). Class names: ``class_names``, else
    ``root/class_names.txt``, else none until ``set_classes`` (evaluation sets the model's)."""

    def __init__(self, root, num_classes: int | None = None, class_names=None,
                 skip_bad: bool = False):
        super().__init__(root, num_classes, class_names, skip_bad)
        self.image_dir, self.mask_dir = self.root / "images", self.root / "masks"
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise DataError(f"{self.root}: no {folder.name}/ folder; an images/ + masks/ "
                                "data set needs both")
        self.images, self.masks = image_files(self.image_dir), image_files(self.mask_dir)
        if not self.images and not self.masks:
            raise DataError(f"{self.root}: images/ and masks/ hold no images "
                            f"({' '.join(IMAGE_SUFFIXES)})")
        lone = [(self.images, self.masks, "image", "mask"),
                (self.masks, self.images, "mask", "image")]
        for have, other, what, lacks in lone:
            missing = [stem for stem in have if stem not in other]
            if not missing:
                continue
            reason = f"no {lacks} of the same name in {lacks}s/"
            if not self.skip_bad:
                verb = "has" if len(missing) == 1 else "have"
                raise DataError(f"{have[missing[0]]}: {reason} ({len(missing)} of "
                                f"{len(have)} {what}s {verb} none)")
            self.skipped += [(have[stem], reason) for stem in missing]
        pairs = [stem for stem in self.images if stem in self.masks]
        self._finish(pairs, len(self.images.keys() | self.masks.keys()))

    def paths(self, id_: str) -> tuple[Path, Path]:
        """(image, mask) files of sample ``id_`` (a stem)."""
        return self.images[id_], self.masks[id_]

    def _load(self, id_: str) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.paths(id_)
        image, mask = self._image(image_path), _decode(mask_path, _mask_ids)
        if image.shape[:2] != mask.shape:
            raise _error(mask_path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                    f"image {image_path} size {image.shape[1]}x{image.shape[0]}")
        if self.num_classes is not None:
            bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
            if bad.any():
                raise _error(mask_path, f"label {mask[bad][0]} outside the classes "
                                        f"0..{self.num_classes - 1} (and not {IGNORE_INDEX} "
                                        "= void)")
        return image, mask


class ImageFolder(_Folder):
    """The images directly in ``root`` (sorted, not its subfolders), without labels: items are
    (uint8 HxWx3 RGB image, None), for label agreement between artifacts and calibration."""

    has_labels = False

    def __init__(self, root, num_classes: int | None = None, class_names=None,
                 skip_bad: bool = False):
        super().__init__(root, num_classes, class_names, skip_bad)
        self.files = image_files(self.root)
        if not self.files:
            raise DataError(f"{self.root}: folder holds no images ({' '.join(IMAGE_SUFFIXES)})")
        self._finish(list(self.files), len(self.files))

    def paths(self, id_: str) -> tuple[Path, None]:
        """(image file, None) of sample ``id_`` (a stem)."""
        return self.files[id_], None

    def _load(self, id_: str) -> tuple[np.ndarray, None]:
        return self._image(self.files[id_]), None
