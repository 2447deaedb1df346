"""Batching, cropping and mosaic tiling of (image, mask) samples (the input convention itself:
contract/preprocess.py)."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from fcn_deploy.errors import DataError


def batches(dataset, batch_size: int, order: Sequence[int] | None = None
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stack samples of equal size into batches (a size change starts a new batch)."""
    items = []
    for i in (range(len(dataset)) if order is None else order):
        image, mask = dataset[i]
        if items and (len(items) == batch_size or items[0][0].shape != image.shape):
            yield _stack(items)
            items = []
        items.append((image, mask))
    if items:
        yield _stack(items)


def _stack(items):
    return np.stack([i for i, _ in items]), np.stack([m for _, m in items])


def random_crop(image: np.ndarray, mask: np.ndarray, size: tuple[int, int],
                rng: np.random.Generator, ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Random ``size`` crop; smaller images are padded (mask with ``ignore_index``) first."""
    h, w = size
    ph, pw = max(h - image.shape[0], 0), max(w - image.shape[1], 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=ignore_index)
    y = rng.integers(image.shape[0] - h + 1)
    x = rng.integers(image.shape[1] - w + 1)
    return image[y:y + h, x:x + w], mask[y:y + h, x:x + w]


class Mosaic:
    """``k`` x ``k`` samples of ``dataset`` tiled into one, in ``order`` (the samples left over
    when ``len(order)`` is not a multiple of k*k are left out)."""

    def __init__(self, dataset, k: int, order: Sequence[int]):
        self.dataset, self.k, self.order = dataset, k, order

    def __len__(self) -> int:
        return len(self.order) // self.k ** 2

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.k ** 2
        tiles = [self.dataset[j] for j in self.order[i * n:(i + 1) * n]]
        if len({image.shape for image, _ in tiles}) > 1:
            raise DataError("a mosaic tiles samples of one size: crop them first (--crop)")
        return self._tile([t[0] for t in tiles]), self._tile([t[1] for t in tiles])

    def _tile(self, parts: list[np.ndarray]) -> np.ndarray:
        rows = range(0, len(parts), self.k)
        return np.concatenate([np.concatenate(parts[r:r + self.k], 1) for r in rows], 0)
