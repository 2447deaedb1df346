"""What a benchmark ran on: CPU model and flags, threads, measured peak, GPU, library versions,
and how busy the machine was.

The MHz in /proc/cpuinfo is the TSC rate, not the core clock, so the FP32 peak is measured
with a large GEMM instead of computed from the clock.

Busy rule: a row is flagged when the 1-minute load average before or after it exceeds the
logical CPU count, i.e. more threads wanted to run than the CPU has hardware threads, so the
row's threads waited for a CPU and its times are inflated. The default thread count (physical
cores) keeps the bench's own share of the load below that line.
"""
from __future__ import annotations

import importlib
import os
import platform
import time

import torch

# Flags that decide int8/fp16 speed on x86 (VNNI: int8 dot products; AMX: tile matmuls).
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
LIBRARIES = ("torch", "onnxruntime", "onnx", "numpy", "tensorrt", "tensorrt_rtx", "cuda.bindings")


def cpu_info() -> dict:
    """CPU model name and the speed-relevant flags from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": [f for f in FLAGS if f in flags],
            "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}), "logical_cpus": os.cpu_count()}


def physical_cores(cpuinfo: str | None = None) -> int:
    """Unique (physical id, core id) pairs in /proc/cpuinfo (or ``cpuinfo`` text): cores, not
    hyper-threads; os.cpu_count() where the file or those fields are missing (e.g. ARM)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    cores, socket = set(), None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket = value.strip()
        elif key.strip() == "core id":
            cores.add((socket, value.strip()))
    return len(cores) or os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average, None where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def busy_note(row: dict, logical_cpus: int) -> str | None:
    """Why ``row`` was measured on a busy machine (see the module's busy rule), else None."""
    loads = {k: row.get(f"load_{k}") for k in ("before", "after")}
    known = [v for v in loads.values() if v is not None]
    if not known or max(known) <= logical_cpus:
        return None
    seen = " / ".join(f"{v:.1f} {k}" for k, v in loads.items() if v is not None)
    return (f"1-min load average {seen} > {logical_cpus} logical CPUs: the machine was busy, "
            "times are inflated")


def gemm_peak_gflops(device: str = "cpu", dtype=torch.float32, n: int = 2048,
                     seconds: float = 1.0) -> float:
    """Best GFLOP/s of an n x n x n matmul over about ``seconds`` (a practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        sync()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return 2 * n ** 3 / best / 1e9


def library_versions() -> dict:
    """Versions of the libraries a run may use (None where not installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            mod = importlib.import_module(name)
            versions[name] = getattr(mod, "__version__", "installed")
        except Exception:  # ImportError, or a CUDA library failing to load on a CPU machine
            versions[name] = None
    from fcn_deploy import __version__

    versions["fcn_deploy"] = __version__
    return versions


def machine_info(threads: int) -> dict:
    """The ``machine`` section of bench.json; ``threads``: what torch and onnxruntime use."""
    info = {**cpu_info(), "physical_cores": physical_cores(), "threads": threads,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "platform": platform.platform(), "libraries": library_versions()}
    info["cpu_fp32_peak_gflops"] = gemm_peak_gflops("cpu", n=4096, seconds=2.0)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_capability"] = "SM%d%d" % torch.cuda.get_device_capability(0)
        info["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
        # PyTorch's "fp32" convolutions run in TF32 on tensor cores when this is on (default).
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["gpu_fp32_peak_tflops"] = gemm_peak_gflops("cuda", n=8192) / 1e3
        info["gpu_fp16_peak_tflops"] = gemm_peak_gflops("cuda", torch.float16, n=8192) / 1e3
    else:
        info["gpu"] = None
    return info
