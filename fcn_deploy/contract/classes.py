"""Named class sets of the FCN paper's data sets, and class-name files: the names a model's
score channels get. Needs neither numpy nor torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fcn_deploy.errors import OptionError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
# The 59 most frequent PASCAL-Context classes the FCN paper evaluates (its section 6).
PASCAL_CONTEXT_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "table", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor", "bag", "bed", "bench", "book", "building", "cabinet", "ceiling", "cloth",
    "computer", "cup", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "keyboard", "light", "mountain", "mouse", "curtain", "platform", "sign", "plate", "road",
    "rock", "shelves", "sidewalk", "sky", "snow", "bedclothes", "track", "tree", "truck",
    "wall", "water", "window", "wood",
)
# NYUDv2's 40 classes as grouped by Gupta et al. (spellings theirs).
NYUD40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
SIFTFLOW_CLASSES = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase",
    "streetlight", "sun", "tree", "window",
)


@dataclass(frozen=True)
class ByCount:
    """A class set whose names depend on the model's class count (with or without a
    background channel); called with that count, the names or None."""

    variants: tuple[tuple[str, ...], ...]

    def __call__(self, num_classes: int) -> tuple[str, ...] | None:
        return next((v for v in self.variants if len(v) == num_classes), None)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(sorted(len(v) for v in self.variants))


CLASS_SETS: dict[str, tuple[str, ...] | ByCount] = {
    "voc": VOC_CLASSES,
    "pascal-context": ByCount((("background", *PASCAL_CONTEXT_CLASSES), PASCAL_CONTEXT_CLASSES)),
    "nyud40": NYUD40_CLASSES,
    "siftflow": SIFTFLOW_CLASSES,
}
CLASS_SET_NAMES = tuple(CLASS_SETS)


def class_names(spec: str, num_classes: int) -> list[str]:
    """The names of a model's ``num_classes`` score channels from ``spec``: a ``CLASS_SETS``
    name or a UTF-8 file of one name per line; OptionError when they do not fit."""
    if spec in CLASS_SETS:
        found = CLASS_SETS[spec]
        names = found(num_classes) if isinstance(found, ByCount) else found
        if names is None or len(names) != num_classes:
            counts = found.counts if isinstance(found, ByCount) else (len(found),)
            raise OptionError(f"class set {spec!r} has {' or '.join(map(str, counts))} classes "
                              f"but the model has {num_classes}")
        return list(names)
    path = Path(spec)
    if not path.is_file():
        raise OptionError(f"{spec!r} is neither a class set ({', '.join(CLASS_SET_NAMES)}) nor "
                          "a file of class names (one per line)")
    names = read_class_file(path)
    if len(names) != num_classes:
        raise OptionError(f"{path} names {len(names)} classes but the model has {num_classes}")
    return names


def read_class_file(path: str | Path) -> list[str]:
    """The class names of a UTF-8 text file, one per line (trailing blank lines ignored);
    OptionError naming the file and line for an empty or repeated name."""
    try:  # utf-8-sig: Windows editors start UTF-8 files with a byte-order mark
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise OptionError(f"{path}: class names must be UTF-8 text ({e.reason} at byte "
                          f"{e.start})") from None
    except OSError as e:
        raise OptionError(f"{path}: cannot read class names ({e.strerror or e})") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise OptionError(f"{path}: no class names (one per line)")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if not name:
            raise OptionError(f"{path}: line {number} is empty; every class needs a name")
        if name in seen:
            raise OptionError(f"{path}: line {number} repeats class name {name!r} "
                              f"(line {seen[name]})")
        seen[name] = number
    return names
