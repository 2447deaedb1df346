"""Mixed-size batching in numpy: images of different sizes are grouped by shape bucket, padded
to their bucket with the mean colour, run as one batch per bucket, and their outputs cropped
back. The mean colour normalizes to 0, which is what the net's own zero padding sees at its
input; deeper layers zero-pad their activations, which the padded pixels' activations are
not, so labels near the right and bottom edges can change. Where that is more than 0.1% of an
image size (PaddingGuard learns it from the first images of each size), images of that size
run unpadded, in groups of their own size."""
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


# Whether an H x W image may be padded into a bucket (PaddingGuard).
PadsFn = Callable[[int, int, "Bucket"], bool]


def bucket_for(h: int, w: int, buckets: Sequence[Bucket], max_batch: int,
               pads: PadsFn | None = None) -> Bucket:
    """The smallest bucket holding an H x W image; the image's own size without buckets, or
    where ``pads`` says padding into that bucket would change its labels."""
    if h < 1 or w < 1:
        raise BadImageError(f"image {h}x{w} is empty: give at least 1 x 1 pixels")
    if not buckets:
        return Bucket(h, w, max_batch)
    fitting = [b for b in buckets if b.fits(h, w)]
    if not fitting:
        sizes = ", ".join(map(str, buckets))
        raise BadImageError(f"image {h}x{w} is larger than every bucket ({sizes})")
    best = min(fitting, key=lambda b: (b.height * b.width, b.height))
    return best if pads is None or pads(h, w, best) else Bucket(h, w, best.max_batch)


def group(shapes: Sequence[tuple[int, int]], buckets: Sequence[Bucket], max_batch: int,
          pads: PadsFn | None = None) -> list[tuple[Bucket, list[int]]]:
    """(bucket, image indices) batches, in order of first appearance, each at most the
    bucket's ``max_batch`` images."""
    groups: dict[Bucket, list[int]] = {}
    for i, (h, w) in enumerate(shapes):
        groups.setdefault(bucket_for(h, w, buckets, max_batch, pads), []).append(i)
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
                 fill: np.ndarray, max_batch: int,
                 guard: "PaddingGuard | None" = None) -> list[dict[str, np.ndarray]]:
    """``run``'s outputs for each H x W x 3 image, cropped to its size: one padded batch per
    bucket (at most ``max_batch`` images; ``guard``: which sizes may be padded, learning from
    these images), in the order of ``images``."""
    shapes = [image.shape[:2] for image in images]
    out: list = [None] * len(images)
    for bucket, idx in group(shapes, buckets, max_batch, guard):
        outputs = run(pad_batch([images[i] for i in idx], bucket, fill))
        for k, i in enumerate(idx):
            h, w = shapes[i]
            out[i] = {name: value[k, :h, :w] for name, value in outputs.items()}
    if guard is not None and buckets:
        guard.learn(images, [o["labels"] for o in out], buckets, max_batch)
    return out



# The least share of the labels of a size's first images that padding must leave as they were
# for the size to be padded: a margin over the 99.9% every size must keep, since an image's
# share is heavy-tailed (the demo FCN-8s kept 99.96% on a 164 x 149 size's first 4 scenes,
# 99.90% over 32 of them, 99.21% on the worst one).
AGREEMENT = 0.9997
# Pixels of a size PaddingGuard compares before it decides (two 256 x 256 images, 82 of
# 40 x 40: one flip in a tiny image is more than 0.1%).
PROBE_PIXELS = 131072


class PaddingGuard:
    """Whether an H x W image may be padded into a bucket, learnt from the images served: the
    first ones of a size (``probe_pixels`` in all) run unpadded and are run once more padded
    (``learn``); the size is padded from then on only where at least ``agreement`` of their
    labels agreed. The share changes with the size itself, not only with how small it is: a
    size off the net's stride moves its coarse grid's edge cells."""

    def __init__(self, run: RunFn, fill: np.ndarray, agreement: float = AGREEMENT,
                 probe_pixels: int = PROBE_PIXELS, sizes: int = 4096):
        self.run, self.fill, self.agreement, self.sizes = run, fill, agreement, sizes
        self.probe_pixels = probe_pixels
        self.seen: dict[tuple[int, int, Bucket], list[int]] = {}  # [labels agreeing, pixels]

    def __call__(self, h: int, w: int, bucket: Bucket) -> bool:
        if (h, w) == (bucket.height, bucket.width):
            return True
        same, pixels = self.seen.get((h, w, bucket), (0, 0))
        return pixels >= self.probe_pixels and same >= self.agreement * pixels

    def learning(self, h: int, w: int, bucket: Bucket) -> bool:
        """Whether images of this size are still compared padded and unpadded."""
        return ((h, w) != (bucket.height, bucket.width)
                and self.seen.get((h, w, bucket), (0, 0))[1] < self.probe_pixels)

    def learn(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
              buckets: Sequence[Bucket], max_batch: int) -> None:
        """Run the images of sizes still being learnt padded into their buckets, and count how
        many of their (unpadded) ``labels`` that leaves as they are."""
        todo: dict[Bucket, list[int]] = {}
        for i, image in enumerate(images):
            bucket = bucket_for(*image.shape[:2], buckets, max_batch)
            if self.learning(*image.shape[:2], bucket):
                todo.setdefault(bucket, []).append(i)
        for bucket, idx in todo.items():
            for k in range(0, len(idx), bucket.max_batch):
                part = idx[k:k + bucket.max_batch]
                padded = self.run(pad_batch([images[i] for i in part], bucket, self.fill))
                for j, i in enumerate(part):
                    h, w = images[i].shape[:2]
                    key = (h, w, bucket)
                    if key not in self.seen and len(self.seen) >= self.sizes:  # bounded
                        self.seen.pop(next(iter(self.seen)))  # the oldest size
                    count = self.seen.setdefault(key, [0, 0])
                    count[0] += int((padded["labels"][j, :h, :w] == labels[i]).sum())
                    count[1] += h * w
