"""Pixel modes -> 8-bit RGB. PIL's convert("RGB") is right for the 8-bit modes, CMYK, YCbCr
and HSV, but clips 16-bit values at 255 (a white image) and truncates floats (a black one),
so those are scaled here by their type's range; never by an image's own min/max, which would
make a dark frame bright. Data sets and predict read images through ``to_rgb8``."""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from PIL import Image


class Conversion(NamedTuple):
    """A conversion worth a note: the images are ``what``, and ``how`` they became 8-bit RGB
    ("16-bit", "scaled to 8 bits by their full range 0-65535")."""

    what: str
    how: str


class ImageRefused(Exception):
    """An image with no known mapping to 8-bit RGB; the message is the one-line reason."""


# Converted by convert("RGB") as stored, alpha dropped (PIL un-premultiplies RGBa; La goes
# through LA, as PIL has no La -> RGB).
_AS_STORED = {"1", "L", "P", "RGB", "RGBX", "RGBA", "LA", "PA", "RGBa", "La"}
_COLOUR_SPACES = {
    "CMYK": Conversion("CMYK", "converted to RGB by the naive formula (no colour profile)"),
    "YCbCr": Conversion("YCbCr", "converted to RGB by JPEG's full-range BT.601"),
    "LAB": Conversion("CIELAB", "converted to sRGB by LittleCMS (D50 white)"),
    "HSV": Conversion("HSV", "converted to RGB"),
}
_FLOAT = Conversion("32-bit float", "values 0-1 scaled to 0-255")


def to_rgb8(im: Image.Image) -> tuple[np.ndarray, Conversion | None]:
    """(uint8 H x W x 3 RGB array, the conversion to note or None) of a PIL image of any mode:
    8-bit modes as PIL converts them (alpha dropped), 16-bit gray scaled by its full range,
    float gray from [0, 1], CMYK, YCbCr, CIELAB and HSV converted. ImageRefused (one-line
    reason) for float values outside [0, 1], NaN or infinite, for mode I values outside
    0-65535, and for modes not listed here."""
    if _deep(im.mode):
        gray, conversion = _deep_gray8(im)
        return np.repeat(gray[..., None], 3, axis=2), conversion
    conversion = _colour_conversion(im.mode)
    if im.mode == "La":
        im = im.convert("LA")
    elif im.mode == "LAB":
        from PIL import ImageCms  # LittleCMS: only CIELAB images need it

        im = ImageCms.applyTransform(im, _lab_to_srgb())
    return np.array(im.convert("RGB"), dtype=np.uint8), conversion


def image_conversion(im: Image.Image) -> Conversion | None:
    """The conversion ``to_rgb8`` makes of ``im`` (None: none worth a note), or its
    ImageRefused; reads the values only of 16-bit and float images (their range check)."""
    return _deep_gray8(im)[1] if _deep(im.mode) else _colour_conversion(im.mode)


def _deep(mode: str) -> bool:
    return mode in ("I", "F") or mode.startswith("I;16")


def _colour_conversion(mode: str) -> Conversion | None:
    if mode in _AS_STORED:
        return None
    if mode == "LAB":
        try:
            _lab_to_srgb()
        except ImportError:
            raise ImageRefused("CIELAB image, and this Pillow lacks LittleCMS (ImageCms) to "
                               "convert it") from None
    if mode in _COLOUR_SPACES:
        return _COLOUR_SPACES[mode]
    raise ImageRefused(f"pixel mode {mode} is not supported (convert it to RGB, gray or "
                       "palette)")


@functools.cache
def _lab_to_srgb():
    """CIELAB (D50, PIL's LAB: L 0-255, a and b signed bytes) -> sRGB. cmsFLAGS_NOCACHE:
    LittleCMS otherwise writes a one-pixel cache in the shared transform, a race between
    decode threads. cmsFLAGS_NOOPTIMIZE: the optimised 8-bit path is off by up to 22 levels
    (sRGB red's Lab came back 251,5,4, blue's 22,7,252; exact: 255,0,0 and 0,1,254), and
    exact costs ~0.13 s per megapixel, for a rare mode."""
    from PIL import ImageCms  # LittleCMS: only CIELAB images need it

    return ImageCms.buildTransform(ImageCms.createProfile("LAB"),
                                   ImageCms.createProfile("sRGB"), "LAB", "RGB",
                                   flags=0x0040 | 0x0100)


def _deep_gray8(im: Image.Image) -> tuple[np.ndarray, Conversion]:
    """uint8 H x W of a 16-bit, 32-bit integer or float gray image, scaled by its range."""
    values = np.asarray(im)
    if im.mode == "F":
        return _float_gray8(values), _FLOAT
    bits = _integer_bits(im)
    top = (1 << bits) - 1
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > top:  # only mode I (int32) can hold these
        raise ImageRefused(f"integer image (mode {im.mode}) with values {lo}..{hi} outside "
                           f"0..{top}: its range is unknown")
    # round(v * 255 / top) in integers: top is odd, so no value falls on a half
    scaled = (values.astype(np.uint32) * 255 + top // 2) // top
    return scaled.astype(np.uint8), Conversion(f"{bits}-bit", "scaled to 8 bits by their "
                                               f"full range 0-{top}")


def _integer_bits(im: Image.Image) -> int:
    """16, or fewer where a TIFF's BitsPerSample says so: a 12-bit TIFF opens as I;16 with
    values up to 4095. Mode I (16-bit PGMs, signed or 32-bit TIFFs, which is how PIL saves
    16-bit data as TIFF) counts as 16-bit, its values checked."""
    tags = getattr(im, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    return min(bits[0], 16) if bits else 16


def _float_gray8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (the convention of float images) x 255, rounded. Other ranges are
    refused, [0, 255] too: a float image above 1 may as well be HDR or a depth map."""
    if not np.isfinite(values).all():
        raise ImageRefused("float image with NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > 1:
        raise ImageRefused(f"float image with values {lo:g}..{hi:g}; float images must lie "
                           "in [0, 1]")
    return np.rint(values * 255).astype(np.uint8)
