"""Reading input images and writing label maps (palette PNGs) and colourised overlays."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from fcn_deploy.atomic import atomic_path
from fcn_deploy.data.pixels import Conversion, ImageRefused, image_conversion, to_rgb8
from fcn_deploy.data.voc import voc_palette
from fcn_deploy.errors import DataError
from fcn_deploy.media.video import VIDEO_SUFFIXES
from fcn_deploy.wording import counted

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# zlib level of every PNG written here. Measured on a 1280x720 frame (synthetic scene, JPEG
# q90) and its label map, on 2 EPYC cores: the RGB overlay takes ~110-185 ms at level 1 against
# ~470-840 ms at PIL's default 6, for files only 10-15% larger (1.2 MB); the palette label map
# ~2-14 ms against ~7-53 ms, 11-200 KB against 5-115 KB. Encoding dominated predict, so 1.
# Lossless at any level: read_labels gives back the same class ids.
PNG_COMPRESS_LEVEL = 1

# PIL warns (once, with its source line) about e.g. palette transparency: the alpha flag says
# it once, in our words. One filter for the warnings PIL itself raises, set here rather than
# by catch_warnings around each decode: that swaps the process-wide filter list, which races
# when images decode on several threads (predict's scan and decode stages).
warnings.filterwarnings("ignore", module=r"PIL\.")


def collect_images(inputs: list[Path], videos: bool = False) -> list[Path]:
    """Expand folders into their image files (sorted; with ``videos`` their video files too);
    every path must exist."""
    suffixes = IMAGE_SUFFIXES | (VIDEO_SUFFIXES if videos else set())
    files = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in suffixes)
            if not found:
                raise DataError(f"{p}: folder holds no images{' or videos' if videos else ''} "
                                f"({', '.join(sorted(suffixes))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    stems: dict[str, Path] = {}
    for f in files:  # outputs are named by stem: two inputs must not write the same file
        if f.stem in stems:
            images = {f.suffix.lower(), stems[f.stem].suffix.lower()} <= IMAGE_SUFFIXES
            what = f"{f.stem}.png" if images else f"outputs named {f.stem}"
            raise DataError(f"{f} and {stems[f.stem]} would both write {what}; rename one")
        stems[f.stem] = f
    return files


def read_image(path: Path) -> np.ndarray:
    """uint8 H x W x 3 RGB array of an image file (any pixel mode, by ``to_rgb8``); DataError
    naming it if it is not a readable image or one ``to_rgb8`` refuses."""
    return decode_image(path)[0]


def decode_image(path: Path) -> tuple[np.ndarray, bool]:
    """(uint8 H x W x 3 RGB array, whether an alpha channel was dropped) of an image file.
    Alpha is dropped, not composited: colours stay as stored, as OpenCV's IMREAD_COLOR does."""
    with _opened(path) as (im, alpha):
        return to_rgb8(im)[0], alpha


def alpha_note(names: list[str]) -> str:
    """The one line saying that images named ``names`` lost their alpha channel."""
    return _images_note(names, ("has", "have"), "an alpha channel", "it is dropped, colours "
                        "are used as stored (not composited on a background)")


def _images_note(names: list[str], verbs: tuple[str, str], what: str, how: str) -> str:
    """``note: 2 images have WHAT (first.png, ...): HOW``, the verb agreeing with the count."""
    many = len(names) > 1
    return (f"note: {counted(len(names), 'image')} {verbs[many]} {what} ({names[0]}"
            f"{', ...' if many else ''}): {how}")


class ImageInfo(NamedTuple):
    """What ``probe_image`` finds: (H, W), whether alpha is dropped, the conversion to note."""

    size: tuple[int, int]
    alpha: bool
    conversion: Conversion | None


def probe_image(path: Path) -> ImageInfo:
    """(H, W), alpha and the conversion ``to_rgb8`` will make of an image file, decoded in full
    (a cut-off file fails here too) but converted only where the check needs its values;
    DataError naming the file if it is not a readable image or one ``to_rgb8`` refuses."""
    with _opened(path) as (im, alpha):
        im.load()
        return ImageInfo((im.height, im.width), alpha, image_conversion(im))


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[Image.Image, bool]]:
    try:
        with Image.open(path) as im:
            yield im, im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from e
    except ImageRefused as e:
        raise DataError(f"{path}: {e}") from None


def conversion_note(conversion: Conversion, names: list[str]) -> str:
    """The one line saying how the images named ``names`` became 8-bit RGB."""
    return _images_note(names, ("is", "are"), conversion.what, conversion.how)


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


def output_names(stem: str, overlay: bool = True, labels: bool = True) -> list[str]:
    """The files ``write_prediction`` writes for an input named ``stem``."""
    return [f"{stem}.png"] * labels + [f"{stem}_overlay.png"] * overlay


def blend(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8: the 50% blend of ``image`` and the colours of ``labels`` (rounded
    down); integer sums, ~6x faster than float at 720p."""
    return ((image.astype(np.uint16) + colorize(labels)) >> 1).astype(np.uint8)


def write_prediction(out: Path, stem: str, image: np.ndarray, labels: np.ndarray,
                     legend: list[tuple[int, str, float]] | None = None,
                     label_map: bool = True) -> None:
    """``<stem>.png`` (palette label map, unless not ``label_map``) and, given a ``legend``
    (class id, name, pixel share of the classes present), ``<stem>_overlay.png``: a 50% blend
    with that legend beside it."""
    if label_map:
        write_labels(out, stem, labels)
    if legend is not None:
        overlay = Image.fromarray(blend(image, labels))
        _save(with_legend(overlay, legend), out / f"{stem}_overlay.png")


def with_legend(image: Image.Image,
                entries: list[tuple[int, str, float | None]]) -> Image.Image:
    """``image`` with a white panel on its right: a colour swatch, name and pixel share (unless
    None) per (class id, name, share) entry."""
    font = ImageFont.load_default()
    row = 16
    lines = [name if share is None else f"{name} {share:.1%}" for _, name, share in entries]
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
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
