"""Preprocessing shared by every backend, and batching of (image, mask) samples."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 N x H x W x 3 RGB -> float32 N x 3 x H x W, scaled to [0, 1] then standardized."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


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
