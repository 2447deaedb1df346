"""Input conventions: how the uint8 RGB pixels of an image become a model's input. Weights learn
one convention and give wrong labels under another, so an artifact records its own by name and
every consumer (host preprocessing, rgb8 graphs, engines, Triton, serve) applies that one."""
from __future__ import annotations

from dataclasses import dataclass

from fcn_deploy.errors import ArtifactError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BGR, in 0-255 units: the VGG16 Caffe model's mean, as pytorch-fcn's data sets subtract it.
CAFFE_MEAN = (104.00698793, 116.66876762, 122.67891434)


@dataclass(frozen=True)
class Convention:
    """Channel order, scale and default mean/std (scaled units, model channel order): the input
    is (pixels in ``order`` / ``divisor`` - mean) / std."""

    name: str
    order: str          # RGB or BGR: the model's channel order
    divisor: float      # 255: values in [0, 1]; 1: values 0-255
    mean: tuple[float, ...]
    std: tuple[float, ...]
    summary: str

    @property
    def bgr(self) -> bool:
        return self.order == "BGR"

    def value_range(self) -> str:
        """The scaling in words, for an artifact's input description."""
        scale = "uint8 / 255" if self.divisor != 1 else "uint8 0-255"
        return f"{scale} in {self.order} order, then (x - mean) / std"

    def neutral_rgb(self, mean) -> tuple[int, int, int]:
        """The uint8 RGB colour that normalizes to (about) 0 under ``mean``."""
        rgb = [min(255, max(0, round(m * self.divisor))) for m in mean]
        return tuple(rgb[::-1] if self.bgr else rgb)


CONVENTIONS = {c.name: c for c in (
    Convention("imagenet", "RGB", 255.0, IMAGENET_MEAN, IMAGENET_STD,
               "RGB scaled to [0, 1], ImageNet mean/std (torchvision's weights, fcn-deploy's "
               "training)"),
    Convention("caffe", "BGR", 1.0, CAFFE_MEAN, (1.0, 1.0, 1.0),
               "BGR 0-255 minus the Caffe VGG mean, std 1 (the paper's Caffe weights, "
               "pytorch-fcn's files)"),
)}


def convention(name: str, where: object = "an artifact") -> Convention:
    """The convention ``name``; ArtifactError when this version does not know it."""
    if name not in CONVENTIONS:
        raise ArtifactError(f"{where} uses input convention {name!r}, which this fcn-deploy "
                            f"does not know ({', '.join(CONVENTIONS)}): update fcn-deploy")
    return CONVENTIONS[name]
