"""Tiled inference for images larger than a backend takes (an engine's profile, or a small
device's memory): overlapping tiles are batched through any
Segmenter and their logits blended with a linear ramp across each overlap before the argmax,
so no seam shows where one tile's border context ends."""
from __future__ import annotations

import numpy as np

from fcn_deploy.contract.outputs import PER_CLASS
from fcn_deploy.errors import OptionError
from fcn_deploy.shapes import parse_hw

# ``--tile auto`` for artifacts without profiles: any size runs whole, so a tile only bounds
# memory; 1024 px keeps a full-width VGG16 FCN under ~4 GB of activations per tile.
AUTO_TILE = (1024, 1024)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``size`` px, neighbours sharing at least
    ``overlap`` px; the last tile ends flush with the image. A side that fits in one tile is
    not tiled, whatever the overlap."""
    if size <= tile:
        return [0]
    if tile <= overlap:
        raise OptionError(f"tile {tile} px must be larger than the overlap {overlap} px")
    count = -(-(size - overlap) // (tile - overlap))  # ceil
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def ramp(tile_h: int, tile_w: int, overlap: int) -> np.ndarray:
    """Blend weights of one tile: 1 inside, falling linearly towards each edge over
    ``overlap`` px (never 0, so image borders covered by one tile keep their logits)."""
    def axis(n):
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) + 1.0
        return np.minimum(d / max(overlap, 1), 1.0)
    return np.outer(axis(tile_h), axis(tile_w)).astype(np.float32)


def tiled_logits(segmenter, batch: np.ndarray, tile: tuple[int, int], overlap: int,
                 tiles_per_batch: int = 4) -> np.ndarray:
    """Logits (N x K x H x W) of a batch in the segmenter's input convention (normalized NCHW,
    or uint8 NHWC frames), computed tile by tile."""
    _check_blendable(segmenter)
    n, _, h, w = segmenter.meta.input.nchw(batch.shape)
    nhwc = segmenter.meta.input.layout == "NHWC"
    th, tw = min(tile[0], h), min(tile[1], w)
    weight = ramp(th, tw, overlap)
    boxes = [(y, x) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]
    out = total = None
    for i in range(n):
        for k in range(0, len(boxes), tiles_per_batch):
            chunk = boxes[k:k + tiles_per_batch]
            tiles = [batch[i, y:y + th, x:x + tw] if nhwc else batch[i, :, y:y + th, x:x + tw]
                     for y, x in chunk]
            logits = segmenter.infer(np.stack(tiles))
            if out is None:
                out = np.zeros((n, logits.shape[1], h, w), np.float32)
                total = np.zeros((h, w), np.float32)
            for (y, x), tile_logits in zip(chunk, logits):
                out[i, :, y:y + th, x:x + tw] += tile_logits * weight
                if i == 0:
                    total[y:y + th, x:x + tw] += weight
    return out / total


def predictor(segmenter, tile: tuple[int, int] | None, overlap: int):
    """``segmenter.predict``, or tiled prediction when ``tile`` is given (predict --tile)."""
    if tile is None:
        return segmenter.predict
    return lambda images: tiled_predict(segmenter, images, tile, overlap)


def tiled_predict(segmenter, images: np.ndarray, tile: tuple[int, int], overlap: int,
                  tiles_per_batch: int = 4) -> np.ndarray:
    """uint8 label maps of uint8 NHWC images, segmented tile by tile."""
    x = segmenter.preprocess(images)
    return tiled_logits(segmenter, x, tile, overlap, tiles_per_batch).argmax(1).astype(np.uint8)


def parse_tile(text: str, segmenter=None, overlap: int = 0) -> tuple[int, int]:
    """``512x768`` or ``512`` -> (H, W); ``auto`` -> the largest H, W an engine's profiles
    take, or ``AUTO_TILE`` for other artifacts. Checks ``overlap`` too."""
    if segmenter is not None:
        _check_blendable(segmenter)
    tile = _tile(text, segmenter)
    if min(tile) <= overlap:
        raise OptionError(f"tile {tile[0]}x{tile[1]} must be larger than "
                             f"the overlap {overlap} px")
    return tile


def _tile(text: str, segmenter) -> tuple[int, int]:
    if text == "auto":
        profiles = getattr(segmenter, "profiles", None)
        if profiles:
            return max(p.max[2] for p in profiles), max(p.max[3] for p in profiles)
        return AUTO_TILE
    tile = parse_hw(text, "tile")
    profiles = getattr(segmenter, "profiles", None)
    if profiles and not any(tile[0] <= p.max[2] and tile[1] <= p.max[3] for p in profiles):
        raise OptionError(f"tile {tile[0]}x{tile[1]} is larger than every profile of "
                             f"{segmenter.path} ({', '.join(map(str, profiles))})")
    return tile


def _check_blendable(segmenter) -> None:
    if segmenter.output not in PER_CLASS:
        raise OptionError(f"tiled inference blends per-class scores; {segmenter.path} returns "
                             f"{segmenter.output}: export it with --output logits or probs")
