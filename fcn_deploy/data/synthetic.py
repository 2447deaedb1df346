"""Synthetic segmentation scenes, the embedded default data set (no download needed).

Each image is drawn procedurally from ``(seed, split, index)``: a cluttered low-saturation
background (gradient, noise, grey distractor shapes) with coloured, textured objects of six
classes, including thin bars, thin rings and small objects, so fine localisation matters.
Class is carried by shape and a hue family; saturation, value, texture, size, pose vary.
Two scene styles: ``clutter`` (the default: many objects, sizes down to a few pixels, thin
parts) and ``objects`` (a few large objects on clutter, as in PASCAL VOC, where a stride-32
net is a fair segmenter and the skips refine its boundaries).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

SYNTHETIC_CLASSES = ["background", "disk", "square", "triangle", "bar", "ring", "cross"]
# One hue family per class (degrees), jittered per object.
_HUES = {"disk": 0, "square": 120, "triangle": 240, "bar": 55, "ring": 300, "cross": 180}
_SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SceneStyle:
    """How many objects (and grey distractors) a scene holds and their radius: log-uniform from
    ``max(min_radius px, min_radius_frac x short side)`` to ``max_radius x short side``;
    ``thin_frac`` widens bars, rings and crosses with their radius."""

    objects: tuple[int, int]
    distractors: tuple[int, int]
    min_radius: float
    max_radius: float
    min_radius_frac: float = 0.0
    thin_frac: float = 0.0


SCENE_STYLES = {
    "clutter": SceneStyle(objects=(5, 10), distractors=(3, 8), min_radius=4, max_radius=0.4),
    "objects": SceneStyle(objects=(1, 3), distractors=(2, 4), min_radius=4, max_radius=0.45,
                          min_radius_frac=0.2, thin_frac=0.35),
}


class SyntheticShapes:
    """``length`` deterministic scenes of ``size`` (H, W) for ``split`` (train/val/test) in
    scene ``style`` (``SCENE_STYLES``)."""

    class_names = SYNTHETIC_CLASSES
    num_classes = len(SYNTHETIC_CLASSES)
    has_labels = True

    def __init__(self, split: str = "train", length: int = 256, size=(128, 128), seed: int = 0,
                 style: str = "clutter", cache: bool = False):
        _check(split, style)
        self.split, self.length, self.seed, self.style = split, length, seed, style
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        # rendering costs ~14% of an FCN-32s training epoch at 192 px; each epoch re-reads all
        self._cache: dict | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], i])
        scene = render_scene(rng, self.size, SCENE_STYLES[self.style])
        if self._cache is not None:
            for a in scene:
                a.flags.writeable = False  # shared by every later read: nobody may edit it
            self._cache[i] = scene
        return scene


class ScenePatches:
    """``length`` deterministic classifier patches (``render_patch``) of ``size`` x ``size``:
    the ImageNet of the synthetic scenes, for pretraining a trunk."""

    class_names = SYNTHETIC_CLASSES
    num_classes = len(SYNTHETIC_CLASSES)

    def __init__(self, split: str = "train", length: int = 1024, size: int = 224, seed: int = 0,
                 style: str = "objects"):
        _check(split, style)
        self.split, self.length, self.size, self.seed, self.style = split, length, size, seed, style

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        # stream 3 keeps patches apart from the scenes of every split
        rng = np.random.default_rng([self.seed, 3 + _SPLITS[self.split], i])
        return render_patch(rng, self.size, SCENE_STYLES[self.style])


def _check(split: str, style: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(_SPLITS)}")
    if style not in SCENE_STYLES:
        raise ValueError(f"unknown scene style {style!r}; choose one of "
                         f"{', '.join(SCENE_STYLES)}")


def render_scene(rng: np.random.Generator, size: tuple[int, int],
                 style: SceneStyle = SCENE_STYLES["clutter"]) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (uint8 HxWx3 RGB image, uint8 HxW class-index mask)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, yy, xx)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(style.distractors[0], style.distractors[1] + 1)):
        # grey distractors: shapes without a class colour
        shape = _shape_mask(rng, rng.choice(list(_HUES)), yy, xx, style)
        image[shape] = rng.uniform(0.2, 0.8) + rng.normal(0, 0.03, 3)
    for _ in range(rng.integers(style.objects[0], style.objects[1] + 1)):
        name = rng.choice(list(_HUES))
        shape = _shape_mask(rng, name, yy, xx, style)
        image[shape] = _textured_colour(rng, _HUES[name], yy, xx)[shape]
        mask[shape] = SYNTHETIC_CLASSES.index(name)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), mask


def render_patch(rng: np.random.Generator, size: int,
                 style: SceneStyle = SCENE_STYLES["objects"]) -> tuple[np.ndarray, int]:
    """A classifier's training patch: a scene whose centre pixel has a uniformly drawn class
    (an object of that class is drawn last, centred near the middle); (image, class index)."""
    image, mask = render_scene(rng, (size, size), style)
    label = int(rng.integers(len(SYNTHETIC_CLASSES)))
    if label == 0:  # the scene as drawn: usually background at the centre
        return image, int(mask[size // 2, size // 2])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    name = SYNTHETIC_CLASSES[label]
    centre = size / 2 + rng.uniform(-size / 16, size / 16, 2)
    shape = _shape_mask(rng, name, yy, xx, style, centre)
    colour = (_textured_colour(rng, _HUES[name], yy, xx) * 255).round().astype(np.uint8)
    image[shape] = colour[shape]
    middle = size // 2
    # a ring's hole can leave the centre to what was there
    return image, label if shape[middle, middle] else int(mask[middle, middle])


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


def _shape_mask(rng, name, yy, xx, style: SceneStyle, centre=None) -> np.ndarray:
    h, w = yy.shape
    scale = min(h, w)
    cy, cx = (rng.uniform(0, h), rng.uniform(0, w)) if centre is None else centre
    # Sizes are log-uniform so that small objects are common.
    low = max(style.min_radius, style.min_radius_frac * scale)
    r = float(np.exp(rng.uniform(np.log(low), np.log(scale * style.max_radius))))
    a = rng.uniform(0, np.pi)
    u = np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)
    v = -np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy)
    thin = rng.uniform(1.5, 4.5) + style.thin_frac * r
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
