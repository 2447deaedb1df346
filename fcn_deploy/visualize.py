"""Reading input images and writing label maps (palette PNGs) and colourised overlays."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from .atomic import atomic_path
from .data.voc import voc_palette
from .errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def collect_images(inputs: list[Path]) -> list[Path]:
    """Expand folders into their image files (sorted); every path must exist."""
    files = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: folder holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    stems: dict[str, Path] = {}
    for f in files:  # outputs are named by stem: two inputs must not write the same file
        if f.stem in stems:
            raise DataError(f"{f} and {stems[f.stem]} would both write {f.stem}.png; rename one")
        stems[f.stem] = f
    return files


def read_image(path: Path) -> np.ndarray:
    """uint8 H x W x 3 RGB array of an image file; DataError naming it if it is not one."""
    return decode_image(path)[0]


def decode_image(path: Path) -> tuple[np.ndarray, bool]:
    """(uint8 H x W x 3 RGB array, whether an alpha channel was dropped) of an image file.
    Alpha is dropped, not composited: colours stay as stored, as OpenCV's IMREAD_COLOR does."""
    with _opened(path) as (im, alpha):
        return np.array(im.convert("RGB"), dtype=np.uint8), alpha


def alpha_note(names: list[str]) -> str:
    """The one line saying that images named ``names`` lost their alpha channel."""
    return (f"note: {len(names)} image(s) have an alpha channel ({names[0]}"
            f"{', ...' if len(names) > 1 else ''}): it is dropped, colours are used as stored "
            "(not composited on a background)")


def probe_image(path: Path) -> tuple[tuple[int, int], bool]:
    """((H, W), alpha) of an image file, decoded in full (a cut-off file fails here too) but
    not converted; DataError naming the file if it is not a readable image."""
    with _opened(path) as (im, alpha):
        im.load()
        return (im.height, im.width), alpha


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[Image.Image, bool]]:
    try:
        # PIL warns (once, with its source line) about e.g. palette transparency: the alpha
        # flag says it once, in our words
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            yield im, im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from e


def colorize(labels: np.ndarray) -> np.ndarray:
    """H x W class ids -> H x W x 3 colours from the VOC palette."""
    return np.asarray(voc_palette(), np.uint8).reshape(256, 3)[labels]


def write_labels(out: Path, stem: str, labels: np.ndarray) -> None:
    """``<stem>.png``: the label map as a palette PNG (VOC colours), written atomically."""
    mask = Image.fromarray(labels.astype(np.uint8))
    mask.putpalette(voc_palette())
    _save(mask, out / f"{stem}.png")


def read_labels(path: Path) -> np.ndarray:
    """The class ids of a label PNG written by ``write_labels``."""
    try:
        with Image.open(path) as im:
            return np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable label map ({e})") from e


def output_names(stem: str, overlay: bool = True) -> list[str]:
    """The files ``write_prediction`` writes for an input named ``stem``."""
    return [f"{stem}.png"] + ([f"{stem}_overlay.png"] if overlay else [])


def write_prediction(out: Path, stem: str, image: np.ndarray, labels: np.ndarray,
                     legend: list[tuple[int, str, float]] | None = None) -> None:
    """``<stem>.png`` (palette label map) and, given a ``legend`` (class id, name, pixel share
    of the classes present), ``<stem>_overlay.png``: a 50% blend with that legend beside it."""
    write_labels(out, stem, labels)
    if legend is not None:
        overlay = Image.fromarray((0.5 * image + 0.5 * colorize(labels)).astype(np.uint8))
        _save(with_legend(overlay, legend), out / f"{stem}_overlay.png")


def with_legend(image: Image.Image, entries: list[tuple[int, str, float]]) -> Image.Image:
    """``image`` with a white panel on its right: a colour swatch, name and pixel share per
    (class id, name, share) entry."""
    font = ImageFont.load_default()
    row = 16
    lines = [f"{name} {share:.1%}" for _, name, share in entries]
    text_w = max((int(font.getlength(t)) for t in lines), default=0)
    panel_w = 30 + text_w
    canvas = Image.new("RGB", (image.width + panel_w, max(image.height, row * len(lines) + 8)),
                       "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    palette = colorize(np.arange(256, dtype=np.uint8))
    for i, ((k, _, _), text) in enumerate(zip(entries, lines)):
        x, y = image.width + 6, 4 + i * row
        draw.rectangle([x, y, x + 12, y + 12], fill=tuple(int(c) for c in palette[k]),
                       outline="black")
        draw.text((x + 18, y), text, fill="black", font=font)
    return canvas


def _save(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
