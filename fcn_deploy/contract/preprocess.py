"""The input an artifact declares, in numpy: the runtime needs no torch to feed a model.
``float`` graphs take the normalized NCHW float32 batch of the artifact's input convention
(contract/conventions.py); ``rgb8`` graphs take the uint8 NHWC RGB frames themselves and do the
same inside the graph."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fcn_deploy.errors import FcnDeployError

from .conventions import IMAGENET_MEAN, IMAGENET_STD, convention
from .metadata import ArtifactMeta


def normalize(images: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD, convention_name: str = "imagenet"
              ) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> float32 N x 3 x H x W in ``convention_name``'s channel order
    and scale, then standardized (the ops of models/heads.RGB8Input, in its order)."""
    c = convention(convention_name)
    x = np.asarray(images).astype(np.float32)
    x = (x[..., ::-1] if c.bgr else x).transpose(0, 3, 1, 2)
    if c.divisor != 1:
        x = x / np.float32(c.divisor)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s)


def model_input(images: np.ndarray, meta: ArtifactMeta) -> np.ndarray:
    """uint8 N x H x W x 3 RGB images -> what ``meta``'s graph takes: the images themselves
    (rgb8: the graph normalizes) or the normalized float32 NCHW batch."""
    images = np.asarray(images)
    if not _frames(images):
        raise FcnDeployError(f"images must be uint8 N x H x W x 3 RGB, not {images.dtype} "
                             f"{'x'.join(map(str, images.shape))}")
    if meta.input.format == "rgb8":
        return np.ascontiguousarray(images)
    return normalize(images, **meta.normalization)


def check_input(batch: np.ndarray, meta: ArtifactMeta, where) -> np.ndarray:
    """``batch`` as the graph's input dtype, contiguous; FcnDeployError when it is not in the
    artifact's convention (float frames given to an rgb8 graph, or the other way round)."""
    spec, batch = meta.input, np.asarray(batch)
    if spec.format == "rgb8":
        if not _frames(batch):
            raise FcnDeployError(
                f"{where} takes uint8 N x H x W x 3 RGB frames (its graph normalizes), not "
                f"{batch.dtype} {'x'.join(map(str, batch.shape))}: pass the frames as captured")
        return np.ascontiguousarray(batch)
    if batch.dtype == np.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
        raise FcnDeployError(
            f"{where} takes normalized float32 N x 3 x H x W batches, not {batch.dtype} "
            f"{'x'.join(map(str, batch.shape))}: uint8 images go through preprocess() or "
            "predict()")
    return np.ascontiguousarray(batch, dtype=np.float32)


def _frames(a: np.ndarray) -> bool:
    """Whether ``a`` is a batch of uint8 N x H x W x 3 RGB frames."""
    return a.dtype == np.uint8 and a.ndim == 4 and a.shape[-1] == 3
