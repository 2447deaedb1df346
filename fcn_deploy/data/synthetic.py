"""Synthetic segmentation scenes, the embedded default data set (no download needed).

Each image is drawn procedurally from ``(seed, split, index)``: a cluttered low-saturation
background (gradient, noise, grey distractor shapes) with coloured, textured objects of six
classes, including thin bars, thin rings and small objects, so fine localisation matters.
Class is carried by shape and a hue family; saturation, value, texture, size, pose vary.
"""
from __future__ import annotations

import colorsys

import numpy as np

SYNTHETIC_CLASSES = ["background", "disk", "square", "triangle", "bar", "ring", "cross"]
# One hue family per class (degrees), jittered per object.
_HUES = {"disk": 0, "square": 120, "triangle": 240, "bar": 55, "ring": 300, "cross": 180}
_SPLITS = {"train": 0, "val": 1, "test": 2}


class SyntheticShapes:
    """``length`` deterministic scenes of ``size`` (H, W) for ``split`` (train/val/test)."""

    class_names = SYNTHETIC_CLASSES
    num_classes = len(SYNTHETIC_CLASSES)

    def __init__(self, split: str = "train", length: int = 256, size=(128, 128), seed: int = 0):
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(_SPLITS)}")
        self.split, self.length, self.seed = split, length, seed
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        return render_scene(np.random.default_rng([self.seed, _SPLITS[self.split], i]), self.size)


def render_scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (uint8 HxWx3 RGB image, uint8 HxW class-index mask)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, yy, xx)
    mask = np.zeros((h, w), np.uint8)
    scale = min(h, w)
    for _ in range(rng.integers(3, 9)):  # grey distractors: shapes without a class colour
        shape = _shape_mask(rng, rng.choice(list(_HUES)), yy, xx, scale)
        image[shape] = rng.uniform(0.2, 0.8) + rng.normal(0, 0.03, 3)
    for _ in range(rng.integers(5, 11)):
        name = rng.choice(list(_HUES))
        shape = _shape_mask(rng, name, yy, xx, scale)
        image[shape] = _textured_colour(rng, _HUES[name], yy, xx)[shape]
        mask[shape] = SYNTHETIC_CLASSES.index(name)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), mask


def _background(rng, yy, xx) -> np.ndarray:
    h, w = yy.shape
    base = rng.uniform(0.2, 0.8, 3).astype(np.float32)
    base = base.mean() + (base - base.mean()) * 0.25  # low saturation: not a class colour
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None] * rng.uniform(0, 0.3)
    coarse = rng.normal(0, 0.08, (h // 8 + 2, w // 8 + 2)).astype(np.float32)
    blotch = np.kron(coarse, np.ones((8, 8), np.float32))[:h, :w, None]
    return base + ramp + blotch


def _textured_colour(rng, hue_deg, yy, xx) -> np.ndarray:
    hue = ((hue_deg + rng.uniform(-15, 15)) % 360) / 360
    rgb = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1), rng.uniform(0.55, 1)), np.float32)
    kind, period = rng.integers(3), rng.uniform(3, 9)
    if kind == 0:
        shade = np.ones_like(yy)
    elif kind == 1:  # stripes at a random angle
        a = rng.uniform(0, np.pi)
        shade = 0.8 + 0.2 * (np.sin((np.cos(a) * xx + np.sin(a) * yy) * 2 * np.pi / period) > 0)
    else:  # checker
        shade = 0.8 + 0.2 * (((xx // period) + (yy // period)) % 2)
    return rgb * shade[..., None]


def _shape_mask(rng, name, yy, xx, scale) -> np.ndarray:
    h, w = yy.shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    # Sizes span small (a few pixels) to large; log-uniform so small objects are common.
    r = float(np.exp(rng.uniform(np.log(4), np.log(scale * 0.4))))
    a = rng.uniform(0, np.pi)
    u = np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)
    v = -np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy)
    thin = rng.uniform(1.5, 4.5)
    if name == "disk":
        return u ** 2 + v ** 2 <= r ** 2
    if name == "square":
        return np.maximum(abs(u), abs(v)) <= r * 0.8
    if name == "triangle":
        return (v >= -r / 2) & (v <= r - np.sqrt(3) * abs(u))
    if name == "bar":
        return (abs(u) <= r * 1.5 + 3) & (abs(v) <= thin)
    if name == "ring":
        d = np.sqrt(u ** 2 + v ** 2)
        return (d <= r + 3) & (d >= r + 3 - 2 * thin)
    if name == "cross":
        arm = r + 2
        return ((abs(u) <= arm) & (abs(v) <= thin)) | ((abs(v) <= arm) & (abs(u) <= thin))
    raise ValueError(name)
