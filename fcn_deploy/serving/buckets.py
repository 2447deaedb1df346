"""Mixed-size batching in numpy: images of different sizes are grouped by shape bucket, padded
to their bucket with the mean colour, run as one batch per bucket, and their outputs cropped
back. The mean colour normalizes to 0, which is what the net's own zero padding sees."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.contract.conventions import convention
from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.errors import FcnDeployError, OptionError
from fcn_deploy.shapes import size_list

# A batch function: uint8 N x H x W x 3 images -> outputs by name, each N x H x W.
RunFn = Callable[[np.ndarray], "dict[str, np.ndarray]"]


class BadImageError(FcnDeployError):
    """A request's image cannot be served: empty, or larger than every bucket."""


@dataclass(frozen=True)
class Bucket:
    """A padded batch shape: images up to ``height`` x ``width``, ``max_batch`` per run."""

    height: int
    width: int
    max_batch: int

    def fits(self, h: int, w: int) -> bool:
        return h <= self.height and w <= self.width

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


def parse_buckets(text: str, max_batch: int) -> list[Bucket]:
    """``--buckets 256,480x640`` -> Buckets of those sizes, ``max_batch`` images each."""
    try:
        sizes = size_list(text, "the list")
    except FcnDeployError as e:
        raise OptionError(f"--buckets {text!r}: {e}") from None
    return [Bucket(h, w, max_batch) for h, w in sizes]


def fill_colour(meta: ArtifactMeta) -> np.ndarray:
    """The uint8 RGB colour that normalizes to (about) 0 in ``meta``'s input convention."""
    return np.array(convention(meta.convention).neutral_rgb(meta.mean), np.uint8)


def bucket_for(h: int, w: int, buckets: Sequence[Bucket], max_batch: int) -> Bucket:
    """The smallest bucket holding an H x W image; without buckets, the image's own size."""
    if h < 1 or w < 1:
        raise BadImageError(f"image {h}x{w} is empty: give at least 1 x 1 pixels")
    if not buckets:
        return Bucket(h, w, max_batch)
    fitting = [b for b in buckets if b.fits(h, w)]
    if not fitting:
        sizes = ", ".join(map(str, buckets))
        raise BadImageError(f"image {h}x{w} is larger than every bucket ({sizes})")
    return min(fitting, key=lambda b: (b.height * b.width, b.height))


def group(shapes: Sequence[tuple[int, int]], buckets: Sequence[Bucket],
          max_batch: int) -> list[tuple[Bucket, list[int]]]:
    """(bucket, image indices) batches, in order of first appearance, each at most the
    bucket's ``max_batch`` images."""
    groups: dict[Bucket, list[int]] = {}
    for i, (h, w) in enumerate(shapes):
        groups.setdefault(bucket_for(h, w, buckets, max_batch), []).append(i)
    return [(b, idx[k:k + b.max_batch]) for b, idx in groups.items()
            for k in range(0, len(idx), b.max_batch)]


def pad_batch(images: Sequence[np.ndarray], bucket: Bucket, fill: np.ndarray) -> np.ndarray:
    """uint8 N x bucket H x bucket W x 3: each image at the top left, the rest ``fill``."""
    batch = np.empty((len(images), bucket.height, bucket.width, 3), np.uint8)
    batch[:] = fill
    for slot, image in zip(batch, images):
        slot[:image.shape[0], :image.shape[1]] = image
    return batch


def run_bucketed(run: RunFn, images: Sequence[np.ndarray], buckets: Sequence[Bucket],
                 fill: np.ndarray, max_batch: int) -> list[dict[str, np.ndarray]]:
    """``run``'s outputs for each H x W x 3 image, cropped to its size: one padded batch per
    bucket (at most ``max_batch`` images), in the order of ``images``."""
    shapes = [image.shape[:2] for image in images]
    out: list = [None] * len(images)
    for bucket, idx in group(shapes, buckets, max_batch):
        outputs = run(pad_batch([images[i] for i in idx], bucket, fill))
        for k, i in enumerate(idx):
            h, w = shapes[i]
            out[i] = {name: value[k, :h, :w] for name, value in outputs.items()}
    return out
