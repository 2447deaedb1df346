"""Weight files fcn-deploy did not write: the input convention their weights learned (asked
for where it is not known), and the paper's other nets that no architecture here can hold,
recognized by their tensor names so the refusal says what the file is, not just which tensor
is extra."""
from __future__ import annotations

from pathlib import Path

from fcn_deploy.errors import CheckpointError, OptionError


def _siftflow(state: dict) -> str | None:
    if any(k.startswith(("score_fr_sem.", "score_fr_geo.")) for k in state):
        return ("a SIFT Flow FCN with two heads (score_fr_sem: semantic classes, score_fr_geo: "
                "geometric classes); fcn-deploy exports nets with one score map")


def _nyud(state: dict) -> str | None:
    if any(k.startswith("conv1_1_bgrd.") for k in state):
        return ("an NYUD color-D FCN (conv1_1_bgrd: 4-channel BGR-D input); fcn-deploy's nets "
                "take 3-channel images")
    if any("_hha." in k for k in state):
        return ("an NYUD color-HHA FCN (two streams, color and HHA depth, fused at the scores); "
                "fcn-deploy's nets take one 3-channel image")


def _caffenet(state: dict) -> str | None:
    conv1, conv2 = state.get("conv1.weight"), state.get("conv2.weight")
    if conv1 is not None and conv2 is not None and conv2.shape[1] != conv1.shape[0]:
        return ("CaffeNet FCN-AlexNet (grouped conv2/conv4/conv5 and LRN layers); "
                "fcn32s-alexnet is torchvision's AlexNet, without groups or LRN")


def refuse_unsupported(state: dict, source: str) -> None:
    """CheckpointError in one line when ``state`` is one of the nets above."""
    for what in (_siftflow, _nyud, _caffenet):
        found = what(state)
        if found:
            raise CheckpointError(f"{source} is {found}: not supported")


def foreign_convention(source: Path, family, given: str | None) -> str:
    """The input convention of weights fcn-deploy did not write: ``given``, else the family's
    for files in its layout; OptionError asking for it where that is not known."""
    if given:
        return given
    ask = ("pass --input-convention caffe (BGR 0-255 minus the Caffe mean: the paper's weights, "
           "pytorch-fcn's files) or imagenet (RGB / 255, ImageNet mean/std)")
    if "from_caffe" in source.name.lower():
        raise OptionError(f"{source.name} is named like pytorch-fcn's conversion of the paper's "
                          f"Caffe weights, which take BGR 0-255 minus the Caffe mean: {ask}")
    if family.foreign_convention is None:
        raise OptionError(f"{source} has no fcn-deploy metadata, so nothing says which input "
                          f"its weights learned: {ask}")
    return family.foreign_convention
