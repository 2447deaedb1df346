"""The patch-by-patch baseline: run a classifier on every patch an FCN's output cell sees.

Cell (i, j) of a convolutionalized net's class map is the classifier on the patch at
(i * stride, j * stride); assembling those patch results gives the map the FCN computes at
once. ``sequential`` runs one patch at a time (the paper's naive approach), ``batched`` stacks
patches into batches (the strong baseline).
"""
from __future__ import annotations

import torch
from torch import nn

MODES = ("sequential", "batched")


def patch_grid(height: int, width: int, patch: int, stride: int) -> tuple[int, int]:
    """Rows and columns of whole patches of side ``patch`` at ``stride`` in an image."""
    if height < patch or width < patch:
        raise ValueError(f"image {height}x{width} is smaller than the {patch}x{patch} patch")
    return (height - patch) // stride + 1, (width - patch) // stride + 1


def extract_patches(image: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """1 x C x H x W image -> (rows * cols) x C x patch x patch, row-major."""
    tiles = image.unfold(2, patch, stride).unfold(3, patch, stride)  # 1, C, rows, cols, p, p
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, image.shape[1], patch, patch)


@torch.inference_mode()
def sliding_window(classifier: nn.Module, image: torch.Tensor, patch: int, stride: int,
                   mode: str = "batched", batch_size: int = 32) -> torch.Tensor:
    """Class map (K x rows x cols) assembled from the classifier run on every patch."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose {' or '.join(MODES)}")
    rows, cols = patch_grid(image.shape[2], image.shape[3], patch, stride)
    patches = extract_patches(image, patch, stride)
    step = 1 if mode == "sequential" else batch_size
    scores = torch.cat([classifier(patches[i:i + step]) for i in range(0, len(patches), step)])
    return scores.T.reshape(-1, rows, cols)


def compare_maps(patch_map: torch.Tensor, fcn_map: torch.Tensor) -> dict:
    """Max abs difference and argmax agreement of two K x rows x cols maps, overall and on
    the border cells (where zero padding makes a patch differ from its place in the image)."""
    if patch_map.shape != fcn_map.shape:
        raise ValueError(f"maps differ in shape: {tuple(patch_map.shape)} "
                         f"vs {tuple(fcn_map.shape)}")
    diff = (patch_map - fcn_map).abs().amax(0)
    agree = patch_map.argmax(0) == fcn_map.argmax(0)
    border = torch.ones_like(agree)
    border[1:-1, 1:-1] = False
    interior = ~border
    return {
        "max_abs_diff": float(diff.max()),
        "argmax_agreement": float(agree.float().mean()),
        "border_max_abs_diff": float(diff[border].max()),
        "interior_max_abs_diff": float(diff[interior].max()) if interior.any() else None,
    }
