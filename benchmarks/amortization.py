"""Amortization: a convolutionalized classifier's class map at once vs patch by patch.

Both paths use the same weights and the same backend (torch here); the speedup is measured in
one run on one machine, next to the FLOP ratio that bounds what sharing work can buy.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcn_deploy.models import convolutionalize

from .sliding_window import compare_maps, extract_patches, patch_grid, sliding_window


def time_ms(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds (perf_counter), after ``warmup`` calls."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by torch.utils.flop_counter."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def amortization_row(name: str, classifier: nn.Module, image_size: int, batch_size: int = 32,
                     repeats: int = 3, seed: int = 0) -> dict:
    """FCN vs sequential and batched patches on one ``image_size`` square image."""
    classifier = classifier.eval()
    fcn = convolutionalize(classifier, classifier.input_size).eval()
    patch, stride = classifier.input_size, fcn.stride
    rows, cols = patch_grid(image_size, image_size, patch, stride)
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():  # this comparison run is also the FCN's and batches' warm-up
        cmp = compare_maps(sliding_window(classifier, x, patch, stride, "batched", batch_size), fcn(x)[0])
    fcn_ms = time_ms(lambda: fcn(x), repeats, warmup=0)
    seq_ms = time_ms(lambda: sliding_window(classifier, x, patch, stride, "sequential"), repeats)
    bat_ms = time_ms(lambda: sliding_window(classifier, x, patch, stride, "batched", batch_size),
                     repeats, warmup=0)
    one_patch = extract_patches(x, patch, stride)[:1]
    fcn_flops = count_flops(lambda: fcn(x))
    patch_flops = count_flops(lambda: classifier(one_patch)) * rows * cols
    flop_ratio = patch_flops / fcn_flops
    best = min(seq_ms, bat_ms)
    return {
        "model": name, "image_size": image_size, "patch_size": patch, "stride": stride,
        "grid": [rows, cols], "patches": rows * cols, "fcn_ms": fcn_ms,
        "patch_sequential_ms": seq_ms, "patch_batched_ms": bat_ms, "batch_size": batch_size,
        "speedup_sequential": seq_ms / fcn_ms, "speedup_batched": bat_ms / fcn_ms,
        "speedup_vs_best": best / fcn_ms, "fcn_flops": fcn_flops, "patch_flops": patch_flops,
        "flop_ratio": flop_ratio, "speedup_over_flop_ratio": best / fcn_ms / flop_ratio,
        "fcn_gflops_per_s": fcn_flops / fcn_ms / 1e6,
        "patch_gflops_per_s": patch_flops / best / 1e6, **cmp,
    }
