"""Amortization: a convolutionalized classifier's class map at once vs patch by patch.

Both paths use the same weights and the same backend; the speedup is measured in one run on
one machine, next to the FLOP ratio that bounds what sharing work can buy.
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcn_deploy.models.convolutionalize import convolutionalize

from .options import check_backend
from .sliding_window import compare_maps, extract_patches, patch_grid, sliding_window

Run = Callable[[torch.Tensor], torch.Tensor]


def time_ms(fn: Callable[[], object], repeats: int = 3, budget_s: float = 10.0,
            sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` in ms over up to ``repeats`` runs (fewer once ``budget_s``
    is spent, at least one); ``sync`` waits for a GPU. Callers warm ``fn`` up first."""
    with torch.inference_mode():
        sync()
        times: list[float] = []
        while len(times) < repeats and (not times or sum(times) < budget_s):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by torch.utils.flop_counter."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _meta_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of ``module`` on an input of ``shape``, on a meta-device copy (no arithmetic)."""
    meta = copy.deepcopy(module).to("meta")
    return count_flops(lambda: meta(torch.empty(shape, device="meta")))


def layer_times(module: nn.Module, run: Callable[[], object]) -> list[dict]:
    """Wall ms and GFLOP of each conv and linear layer of ``module`` over one ``run()``, in
    call order (forward hooks: CPU ops are synchronous, so the time between hooks is the
    layer's own)."""
    rows: dict[str, dict] = {}
    starts: dict[str, float] = {}

    def before(name: str):
        return lambda m, inputs: starts.__setitem__(name, time.perf_counter())

    def after(name: str):
        def hook(m: nn.Module, inputs, out: torch.Tensor) -> None:
            row = rows.setdefault(name, {"layer": name, "ms": 0.0, "gflop": 0.0})
            row["ms"] += 1000 * (time.perf_counter() - starts[name])
            # one multiply-add per weight per output position (conv) or per row (linear)
            positions = out[..., 0].numel() if isinstance(m, nn.Linear) else out[:, 0].numel()
            row["gflop"] += 2 * m.weight.numel() * positions / 1e9
        return hook

    handles = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles += [m.register_forward_pre_hook(before(name)),
                        m.register_forward_hook(after(name))]
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return list(rows.values())


def layer_profile(classifier: nn.Module, fcn: nn.Module, x: torch.Tensor,
                  batch_size: int) -> list[dict]:
    """Eager torch on CPU, layer by layer: the FCN on ``x`` next to the same layer over all
    batched patches (convolutionalization keeps the layer order, so the layers pair up)."""
    patch, stride = classifier.input_size, fcn.stride
    fcn_rows = layer_times(fcn, lambda: fcn(x))
    patch_rows = layer_times(classifier, lambda: sliding_window(
        classifier, x, patch, stride, "batched", batch_size))
    return [{"layer": p["layer"], "fcn_ms": f["ms"], "fcn_gflop": f["gflop"],
             "patch_ms": p["ms"], "patch_gflop": p["gflop"]}
            for f, p in zip(fcn_rows, patch_rows, strict=True)]


def torch_runner(module: nn.Module, device: str, fp16: bool) -> Run:
    """``module`` on ``device`` (FP16 weights and inputs when asked); float32 scores out."""
    dtype = torch.float16 if fp16 else torch.float32
    module = copy.deepcopy(module).to(device, dtype).eval()
    return lambda x: module(x.to(dtype)).float()


def frozen_runner(module: nn.Module, example: torch.Tensor) -> Run:
    """``module`` traced at ``example``, frozen and optimized for inference (weights packed
    once); the trace holds no shape-dependent branch, so other batch sizes and sides run."""
    with torch.no_grad():
        traced = torch.jit.trace(copy.deepcopy(module).to(example.device).eval(), example)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def onnxruntime_runner(module: nn.Module, example: torch.Tensor, dynamic: dict, path: Path,
                       threads: int | None) -> Run:
    """``module`` exported to ``path`` and run by onnxruntime on CPU."""
    import onnxruntime as ort  # 0.2-0.3 s: only for the onnxruntime backend

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(module.eval(), (example,), str(path), input_names=["input"],
                          output_names=["scores"], dynamic_axes={"input": dynamic},
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    if threads:  # the same count as torch's pools (bench.py), so both paths compete alike
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.cpu().numpy()})[0])


def runners(backend: str, classifier: nn.Module, fcn: nn.Module, device: str, work_dir: Path,
            threads: int | None) -> tuple[Run, Run]:
    """Classifier and FCN runners for one backend; both paths always share it."""
    check_backend(backend, device)
    if backend == "onnxruntime":
        p = classifier.input_size
        return (onnxruntime_runner(classifier, torch.zeros(1, 3, p, p), {0: "N"},
                                   work_dir / "classifier.onnx", threads),
                onnxruntime_runner(fcn, torch.zeros(1, 3, p, p), {2: "H", 3: "W"},
                                   work_dir / "fcn.onnx", threads))
    if backend == "torch-frozen":
        p = classifier.input_size
        return (frozen_runner(classifier, torch.zeros(2, 3, p, p, device=device)),
                frozen_runner(fcn, torch.zeros(1, 3, p, p, device=device)))
    fp16 = backend == "torch-fp16"
    return torch_runner(classifier, device, fp16), torch_runner(fcn, device, fp16)


def amortization_row(name: str, classifier: nn.Module, image_size: int, backend: str = "torch",
                     device: str = "cpu", batch_size: int = 32, repeats: int = 3, seed: int = 0,
                     threads: int | None = None, budget_s: float = 10.0,
                     profile: bool = False, fcn: nn.Module | None = None) -> dict:
    """FCN vs sequential and batched patches on one ``image_size`` square image; ``fcn`` is
    the convolutionalized classifier (made here for plain chains of layers). With ``profile``,
    eager torch rows on CPU also get the per-layer ``layer_profile``."""
    classifier = classifier.eval()
    fcn = (fcn or convolutionalize(classifier, classifier.input_size)).eval()
    patch, stride = classifier.input_size, fcn.stride
    rows, cols = patch_grid(image_size, image_size, patch, stride)
    x = torch.randn(1, 3, image_size, image_size,
                    generator=torch.Generator().manual_seed(seed)).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with tempfile.TemporaryDirectory() as work:
        classify, run_fcn = runners(backend, classifier, fcn, device, Path(work), threads)
        with torch.inference_mode():  # this comparison run is also the FCN's and batches' warm-up
            # A padded trunk (ResNet) also scores cells whose patch would cross the image's far
            # edge; the cells of patches inside the image come first.
            cmp = compare_maps(sliding_window(classify, x, patch, stride, "batched", batch_size),
                               run_fcn(x)[0][:, :rows, :cols])
            classify(extract_patches(x, patch, stride)[:1])  # warm-up of the batch-1 path
        fcn_ms = time_ms(lambda: run_fcn(x), repeats, budget_s, sync)
        seq_ms = time_ms(lambda: sliding_window(classify, x, patch, stride, "sequential"),
                         repeats, budget_s, sync)
        bat_ms = time_ms(lambda: sliding_window(classify, x, patch, stride, "batched", batch_size),
                         repeats, budget_s, sync)
        layers = (layer_profile(classifier, fcn, x, batch_size)
                  if profile and backend == "torch" and device == "cpu" else None)
    fcn_flops = _meta_flops(fcn, (1, 3, image_size, image_size))
    patch_flops = _meta_flops(classifier, (1, 3, patch, patch)) * rows * cols
    best = min(seq_ms, bat_ms)
    return {
        "model": name, "backend": backend, "device": device, "image_size": image_size,
        "patch_size": patch, "stride": stride, "grid": [rows, cols], "patches": rows * cols,
        "fcn_ms": fcn_ms, "patch_sequential_ms": seq_ms, "patch_batched_ms": bat_ms,
        "batch_size": batch_size, "speedup_sequential": seq_ms / fcn_ms,
        "speedup_batched": bat_ms / fcn_ms, "speedup_vs_best": best / fcn_ms,
        "best_baseline": "sequential" if seq_ms <= bat_ms else "batched",
        "fcn_flops": fcn_flops, "patch_flops": patch_flops, "flop_ratio": patch_flops / fcn_flops,
        "speedup_over_flop_ratio": best / fcn_ms / (patch_flops / fcn_flops),
        "fcn_gflops_per_s": fcn_flops / fcn_ms / 1e6,
        "patch_gflops_per_s": patch_flops / best / 1e6, **cmp, "layers": layers,
    }
