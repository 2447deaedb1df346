"""Initialise an FCN from another checkpoint: an ImageNet-style classifier (torchvision layout,
convolutionalized on the way), the original FCN layout, or a coarser FCN (staged training)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError


def check_fits(module: nn.Module, state: dict[str, torch.Tensor], source: str,
               strict: bool = True) -> None:
    """Raise CheckpointError naming the first tensor whose name or shape does not fit ``module``."""
    own = module.state_dict()
    for name, tensor in state.items():
        if name in own and own[name].shape != tensor.shape:
            raise CheckpointError(
                f"{source} does not fit the architecture: {name} has shape {tuple(tensor.shape)} "
                f"in the checkpoint but {tuple(own[name].shape)} in the model")
        if strict and name not in own:
            raise CheckpointError(f"{source} does not fit the architecture: "
                                  f"unexpected tensor {name}")
    missing = [k for k in own if k not in state]
    if strict and missing:
        raise CheckpointError(f"{source} does not fit the architecture: "
                              f"missing tensor {missing[0]}")


def init_from_state(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                    same_classes: bool = False) -> list[str]:
    """Copy ``state`` into ``model``; return the names of the model tensors that were set.
    A classifier's last layer is dropped unless ``same_classes`` (it was trained on the FCN's
    classes, in order): then it becomes ``score_fr``, and FCN-32s starts as the classifier
    applied to every 32-px step of the image."""
    if model.family.is_classifier(state):
        state = _fcn_state_from_classifier(model, state, source, same_classes)
    own = model.state_dict()
    check_fits(model, state, source, strict=False)
    loaded = [k for k in state if k in own]
    trunk = [k for k in own if k.split(".")[0] in model.trunk_names]
    if not set(trunk) & set(loaded):
        raise CheckpointError(f"{source} does not fit {model.arch}: none of its tensors match the "
                              f"trunk (first model tensor: {trunk[0]}, "
                              f"first file tensor: {next(iter(state))})")
    model.load_state_dict({**own, **{k: state[k] for k in loaded}})
    return loaded


def _fcn_state_from_classifier(model: nn.Module, state: dict, source: str,
                               same_classes: bool) -> dict:
    """Load a classifier checkpoint into its family's classifier, convolutionalize it, and name
    its tensors as the FCN's (the family knows its trunk's names)."""
    family = model.family
    last = [v for v in state.values() if v.dim() == 2][-1]  # the last fc layer: the classes
    classifier = family.classifier(last.shape[0], model.width, arch=model.arch)
    check_fits(classifier, state, source)
    classifier.load_state_dict(state)
    net = family.convolutionalize(classifier)
    *convs, scores = [m for m in net.classifier if isinstance(m, nn.Conv2d)]
    # the classifier's last layer scores the FCN's classes where the FCN scores from its fc7
    same_classes = same_classes and "score_fr.weight" in model.state_dict()
    out = {f"score_fr.{p}": getattr(scores, p) for p in ("weight", "bias")} if same_classes else {}
    return {**out, **family.fcn_state(model, net, convs)}
