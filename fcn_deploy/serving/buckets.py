"""Mixed-size batching in numpy: images of different sizes are grouped by shape bucket, padded
to their bucket with the mean colour, run as one batch per bucket, and their outputs cropped
back. The mean colour normalizes to 0, which is what the net's own zero padding sees at its
input; deeper layers zero-pad their activations, which the padded pixels' activations are
not, so labels near the right and bottom edges can change. Where that is more than 0.1% of an
image size (PaddingGuard measures it once per size), images of that size run unpadded, in
groups of their own size."""
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
                 pads: PadsFn | None = None) -> list[dict[str, np.ndarray]]:
    """``run``'s outputs for each H x W x 3 image, cropped to its size: one padded batch per
    bucket (at most ``max_batch`` images; ``pads``: which sizes may be padded), in the order
    of ``images``."""
    shapes = [image.shape[:2] for image in images]
    out: list = [None] * len(images)
    for bucket, idx in group(shapes, buckets, max_batch, pads):
        outputs = run(pad_batch([images[i] for i in idx], bucket, fill))
        for k, i in enumerate(idx):
            h, w = shapes[i]
            out[i] = {name: value[k, :h, :w] for name, value in outputs.items()}
    return out



# The least share of noise images' labels padding must leave unchanged: above the 99.9% that
# photos must keep, because flips cluster (one coarse cell flips a patch of pixels) and a
# probe of 16k pixels varies by about that much.
AGREEMENT = 0.9995
# Pixels PaddingGuard compares per size, at least (as many noise images as that takes).
PROBE_PIXELS = 16384


class PaddingGuard:
    """Whether padding an H x W image into a bucket keeps at least ``agreement`` of its labels:
    measured once per size and bucket, on seeded noise images padded and unpadded (two runs;
    noise has small logit margins, so this is stricter than photos). The share changes with
    the size itself, not only with how small it is: sizes off the net's stride move its coarse
    grid's edge cells."""

    def __init__(self, run: RunFn, fill: np.ndarray, agreement: float = AGREEMENT,
                 sizes: int = 4096):
        self.run, self.fill, self.agreement, self.sizes = run, fill, agreement, sizes
        self.kept: dict[tuple[int, int, Bucket], float] = {}

    def __call__(self, h: int, w: int, bucket: Bucket) -> bool:
        if (h, w) == (bucket.height, bucket.width):
            return True
        key = (h, w, bucket)
        if key not in self.kept:
            if len(self.kept) >= self.sizes:  # bounded: a stream of new sizes
                self.kept.pop(next(iter(self.kept)))
            self.kept[key] = self.measure(h, w, bucket)
        return self.kept[key] >= self.agreement

    def measure(self, h: int, w: int, bucket: Bucket) -> float:
        """The share of noise images' labels that padding into ``bucket`` leaves as is (enough
        images for ``PROBE_PIXELS``: one flip in a tiny image is more than 0.1%)."""
        n, m = -(-PROBE_PIXELS // (h * w)), bucket.max_batch
        images = np.random.default_rng([h, w]).integers(0, 256, (n, h, w, 3), np.uint8)
        same = [self.run(pad_batch(part, bucket, self.fill))["labels"][:, :h, :w]
                == self.run(part)["labels"] for part in np.split(images, range(m, n, m))]
        return float(np.concatenate(same).mean())
