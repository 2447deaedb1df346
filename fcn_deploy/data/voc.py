"""PASCAL VOC-layout segmentation data sets, and a tiny fixture writer for tests and docs."""

from pathlib import Path

import numpy as np
from PIL import Image

from fcn_deploy.contract.classes import VOC_CLASSES
from fcn_deploy.errors import DataError

from .pixels import ImageRefused, to_rgb8

IGNORE_INDEX = 255


def voc_palette():
    """The standard 256-colour VOC map as a flat list of 768 ints for PIL `putpalette`."""
    palette = []
    for i in range(256):
        r = g = b = 0
        for bit in range(8):
            r |= ((i >> (3 * bit)) & 1) << (7 - bit)
            g |= ((i >> (3 * bit + 1)) & 1) << (7 - bit)
            b |= ((i >> (3 * bit + 2)) & 1) << (7 - bit)
        palette += [r, g, b]
    return palette


def _error(path, reason):
    # path/reason kept apart so skip_bad can record them as a tuple
    err = DataError(f"{path}: {reason}")
    err.path, err.reason = Path(path), reason
    return err


def _decode(path, to_array):
    try:
        with Image.open(path) as im:
            return to_array(im, path)
    except FileNotFoundError:
        raise _error(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _error(path, f"cannot decode image ({e})") from e


def _lines(path):
    try:
        return [s.strip() for s in path.read_text().splitlines() if s.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise _error(path, f"cannot read text file ({e})") from e


def _rgb(im, path):
    try:  # predict's conversion: 16-bit and float by their range, CMYK, LAB, ...
        return to_rgb8(im)[0]
    except ImageRefused as e:
        raise _error(path, str(e)) from None


def _indices(im, path):
    if im.mode not in ("P", "L"):
        raise _error(path, f"mask is mode {im.mode}; it should be a palette (P) "
                           "or grayscale (L) image of class indices")
    return np.array(im, dtype=np.uint8)  # palette indices, not colours


class VOCSegmentation:
    """A split of a VOC-layout folder; items are (uint8 HxWx3 RGB image, uint8 HxW mask)."""

    has_labels = True

    def __init__(self, root, split="train", class_names=None, skip_bad=False):
        self.root, self.split = Path(root), split
        if not self.root.is_dir():
            raise _error(self.root, "data set root not found")
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in split_file.parent.glob("*.txt"))
            raise _error(split_file, f"split {split!r} not found; available splits: "
                                     f"{', '.join(found) or 'none'}")
        ids = _lines(split_file)
        if class_names is None and (self.root / "class_names.txt").is_file():
            class_names = _lines(self.root / "class_names.txt")
        self.class_names = list(VOC_CLASSES if class_names is None else class_names)
        self.num_classes = len(self.class_names)
        if not ids:
            raise _error(split_file, "split is empty")

        self.ids, self.skipped = [], []
        for id_ in ids:
            try:
                for path in self.paths(id_):
                    if not path.is_file():
                        raise _error(path, f"file for id {id_!r} (listed in {split_file}) "
                                           "not found")
                if skip_bad:
                    self._load(id_)
                self.ids.append(id_)
            except DataError as e:
                if not skip_bad:
                    raise
                self.skipped.append((e.path, e.reason))
        if not self.ids:
            path, reason = self.skipped[0]
            raise _error(split_file, f"no usable samples: all {len(ids)} skipped "
                                     f"(first: {path}: {reason})")

    def paths(self, id_) -> tuple[Path, Path]:
        """(image, mask) files of sample ``id_``."""
        return (self.root / "JPEGImages" / f"{id_}.jpg",
                self.root / "SegmentationClass" / f"{id_}.png")

    def _load(self, id_):
        image_path, mask_path = self.paths(id_)
        image, mask = _decode(image_path, _rgb), _decode(mask_path, _indices)
        if image.shape[:2] != mask.shape:
            raise _error(mask_path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                    f"image {image_path} size {image.shape[1]}x{image.shape[0]}")
        bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            raise _error(mask_path, f"label {mask[bad][0]} outside 0..{self.num_classes - 1} "
                                    f"(and not {IGNORE_INDEX} = ignore)")
        return image, mask

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self._load(self.ids[i])


def write_voc_fixture(root, n_train=3, n_val=2, size=(40, 56), num_classes=21, seed=0):
    """Write a tiny valid VOC-layout data set (size is height, width) under root; return root."""
    root, rng = Path(root), np.random.default_rng(seed)
    h, w = size
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if num_classes != len(VOC_CLASSES):
        names = [VOC_CLASSES[c] if c < len(VOC_CLASSES) else f"class{c}"
                 for c in range(num_classes)]
        (root / "class_names.txt").write_text("\n".join(names) + "\n")
    ids = [f"{n:06d}" for n in range(n_train + n_val)]
    for split, split_ids in (("train", ids[:n_train]), ("val", ids[n_train:])):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(i + "\n" for i in split_ids))
    for id_ in ids:
        image = np.clip(rng.normal(rng.integers(60, 196, 3), 8, (h, w, 3)), 0, 255)
        mask = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            y1, x1 = (y0 + rng.integers(max(h // 5, 3), h // 2 + 1),
                      x0 + rng.integers(max(w // 5, 3), w // 2 + 1))
            image[y0:y1, x0:x1] = rng.integers(0, 256, 3)
            mask[y0:y1, x0:x1] = rng.integers(1, num_classes)
        # VOC marks object outlines as ignore; do it for the last (unoccluded) object
        mask[y0:y1, x0] = mask[y0:y1, x1 - 1] = mask[y0, x0:x1] = mask[y1 - 1, x0:x1] = IGNORE_INDEX
        Image.fromarray(image.astype(np.uint8)).save(root / "JPEGImages" / f"{id_}.jpg", quality=95)
        png = Image.frombytes("P", (w, h), mask.tobytes())
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{id_}.png")
    return root
