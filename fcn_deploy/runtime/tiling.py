"""Tiled inference for images larger than a backend takes (an engine's profile, or a small
device's memory): overlapping tiles are batched through any
Segmenter and their logits blended with a linear ramp across each overlap before the argmax,
so no seam shows where one tile's border context ends.

``tiled_predict`` blends one band (row) of tiles at a time: rows no later band reaches are
final once their band is done, so it holds float scores for one band's rows (classes x tile
height x W) and uint8 labels for the image, never classes x H x W floats; its labels equal
those of blending the whole image at once (the same sums, in the same order). ``predictor``
also tiles automatically when an image's estimated peak exceeds the memory budget
(runtime/memory.py)."""
from __future__ import annotations

import numpy as np

from fcn_deploy.contract.outputs import PER_CLASS
from fcn_deploy.errors import OptionError
from fcn_deploy.shapes import parse_hw

from . import memory

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


def predictor(segmenter, tile: tuple[int, int] | None, overlap: int,
              max_memory: int | None = None, log=None):
    """``segmenter.predict``, or tiled prediction when ``tile`` is given (predict --tile);
    without a tile, images whose estimated peak exceeds the budget (``max_memory`` bytes or
    the available memory) are tiled automatically, said once per image size through ``log``.
    A failed allocation is one OutOfMemoryError naming the size and the fix."""
    if tile is None:
        run = AutoTiler(segmenter, overlap, max_memory, log)
    else:
        def run(images):
            return tiled_predict(segmenter, images, tile, overlap)
    return lambda images: guarded(run, images, segmenter.meta)


def guarded(run, images: np.ndarray, meta=None) -> np.ndarray:
    """``run(images)``, a failed allocation (numpy's MemoryError, onnxruntime's, a C++
    bad_alloc) raised as one OutOfMemoryError naming the images' size."""
    try:
        return run(images)
    except memory.OutOfMemoryError:
        raise
    except Exception as e:  # backends raise their own types: RuntimeError, ORT's Fail, ...
        if not memory.is_allocation_failure(e):
            raise
        raise memory.out_of_memory(e, np.shape(images)[:3], meta) from e


class AutoTiler:
    """Whole images where their estimated peak fits the budget, tiles where it does not (CPU
    backends of artifacts that record ``activation_bytes_per_pixel``)."""

    def __init__(self, segmenter, overlap: int, max_memory: int | None = None, log=None):
        self.segmenter, self.overlap, self.max_memory = segmenter, overlap, max_memory
        self.log, self.said = log or (lambda line: None), set()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        n, h, w = np.shape(images)[:3]
        tile = self.plan(n, h, w)
        if tile is None:
            return self.segmenter.predict(images)
        return tiled_predict(self.segmenter, images, tile, self.overlap, tiles_per_batch=1)

    def plan(self, n: int, h: int, w: int) -> tuple[int, int] | None:
        """The tile for N images of H x W, or None to run them whole."""
        seg, meta = self.segmenter, self.segmenter.meta
        need = memory.estimate_peak(meta, n, h, w)
        if need is None:
            if self.max_memory is not None:
                self._once("unknown", f"note: {seg.path} records no activation_bytes_per_pixel "
                           "(exported before fcn-deploy measured it): its memory need is "
                           "unknown, so --max-memory cannot tile; re-export it, or use --tile")
            return None
        if seg.device != "cpu":  # device memory: the engine's profiles and --tile bound it
            return None
        limit, what = memory.budget(self.max_memory)
        if limit is None or need <= memory.HEADROOM * limit:
            return None
        if seg.output not in PER_CLASS:
            self._once("labels", f"note: {h}x{w} needs ~{memory.fmt_bytes(need)} ({what} "
                       f"{memory.fmt_bytes(limit)}) but {seg.path} returns {seg.output}, which "
                       "tiles cannot blend: running it whole")
            return None
        tile = memory.fit_tile(meta, int(memory.HEADROOM * limit), h, w, self.overlap)
        if tile is None:
            smallest = self.overlap + memory.MIN_TILE
            raise memory.OutOfMemoryError(
                f"a {h}x{w} image needs ~{memory.fmt_bytes(need)} and even {smallest}x{smallest} "
                f"tiles need more than {what} ({memory.fmt_bytes(limit)}): free memory, raise "
                "--max-memory, or lower --overlap")
        self._once((h, w), f"note: {h}x{w} needs ~{memory.fmt_bytes(need)} ({what} "
                   f"{memory.fmt_bytes(limit)}): segmenting in {tile[0]}x{tile[1]} tiles")
        return tile

    def _once(self, key, line: str) -> None:
        if key not in self.said:
            self.said.add(key)
            self.log(line)


def tiled_predict(segmenter, images: np.ndarray, tile: tuple[int, int], overlap: int,
                  tiles_per_batch: int = 4) -> np.ndarray:
    """uint8 label maps of uint8 NHWC images, segmented tile by tile, one band of tiles blended
    at a time (module docstring); each tile is preprocessed on its own."""
    _check_blendable(segmenter)
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    th, tw = min(tile[0], h), min(tile[1], w)
    weight = ramp(th, tw, overlap)
    rows, cols = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    labels = np.empty((n, h, w), np.uint8)
    total = np.zeros((th, w), np.float32)  # summed weights of rows top .. top + th
    for i in range(n):
        band, top = None, 0  # summed weighted scores of rows top .. top + th
        total[:] = 0
        for y in rows:
            if band is not None:  # rows above y are final: no later tile reaches them
                shift = y - top
                _finish(band[:, :shift], total[:shift], labels[i, top:y])
                for buffer in (band, total):
                    buffer[..., :th - shift, :] = buffer[..., shift:, :]
                    buffer[..., th - shift:, :] = 0
            top = y
            boxes = [(y, x) for x in cols]
            for k in range(0, len(boxes), tiles_per_batch):
                chunk = boxes[k:k + tiles_per_batch]
                logits = segmenter.infer(segmenter.preprocess(
                    np.stack([images[i, y:y + th, x:x + tw] for y, x in chunk])))
                if band is None:
                    band = np.zeros((logits.shape[1], th, w), np.float32)
                for (_, x), tile_logits in zip(chunk, logits):
                    band[:, :, x:x + tw] += tile_logits * weight
                    total[:, x:x + tw] += weight
        _finish(band, total, labels[i, top:top + th])
    return labels


def _finish(scores: np.ndarray, total: np.ndarray, out: np.ndarray) -> None:
    """Final labels of blended rows: the argmax of the weighted mean scores, into ``out``."""
    out[...] = (scores / total).argmax(0)


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
