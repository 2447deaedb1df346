"""The input convention every artifact declares (RGB, scaled to [0, 1], then (x - mean) / std,
NCHW float32), in numpy: the runtime needs no torch to feed a model."""
from __future__ import annotations

from typing import Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> float32 N x 3 x H x W, scaled to [0, 1] then standardized."""
    x = np.asarray(images).astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s)
