"""What a benchmark ran on: CPU model and flags, threads, measured peak, GPU, library versions,
and how busy the machine was.

The MHz in /proc/cpuinfo is the TSC rate, not the core clock, so the FP32 peak is measured
with a large GEMM instead of computed from the clock: the better of torch's (on its thread
pool, sized like the bench's) and numpy's (its BLAS uses every CPU, so it counts only for runs
on all of them), numpy's alone without torch; ``cpu_fp32_peak_by`` says which. GPU peaks
need torch and are null without it.

Busy rule: during each row, the CPU time that OTHER processes used is measured directly:
the system-wide busy time in /proc/stat (user, nice, system, irq, softirq, steal) less this
process's own CPU time (os.times, children excluded), over the row's wall time, in cores
(``other_cpu``). The load average is no measure of this: it counts the bench's own threads and
lags a minute, so an idle 2-core machine running 2 bench threads reads as busy. A row is
flagged when ``other_cpu`` exceeds max(0.5 core, 25% of the logical CPUs) by more than its
measuring error (both counters tick at SC_CLK_TCK, so a row of a few ticks cannot tell):
half a core taken from a bench that uses every core of a small machine slows it measurably,
well above an idle machine's background (daemons, the shell: a few hundredths of a core),
while on a large machine others must hold a quarter of the hardware threads before they
likely share the bench's cores (hyper-thread siblings) or its memory bandwidth. Without
/proc/stat (not Linux) ``other_cpu`` is null and no row is flagged.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
import platform
import time
from typing import NamedTuple

import numpy as np

from fcn_deploy import __version__

# Flags that decide int8/fp16 speed on x86 (VNNI: int8 dot products; AMX: tile matmuls).
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
# Variables that restrict the float kernels to an older ISA: a run under them is another CPU's.
KERNEL_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
LIBRARIES = ("torch", "onnxruntime", "onnx", "numpy", "tensorrt", "tensorrt_rtx", "cuda.bindings")


def optional_torch():
    """The torch module, or None where it is not installed (the runtime-only install)."""
    try:
        import torch  # the torch extra: absent from the runtime-only install
    except ImportError:
        return None
    return torch


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


def _read_text(path: str) -> str:
    """A /proc or /sys file's text; empty where it does not exist (other OSes, containers)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def physical_cores(cpuinfo: str | None = None) -> int:
    """Unique (physical id, core id) pairs in /proc/cpuinfo (or ``cpuinfo`` text): cores, not
    hyper-threads; os.cpu_count() where the file or those fields are missing (e.g. ARM)."""
    if cpuinfo is None:
        cpuinfo = _read_text("/proc/cpuinfo")
    cores, socket = set(), None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket = value.strip()
        elif key.strip() == "core id":
            cores.add((socket, value.strip()))
    return len(cores) or os.cpu_count() or 1


def default_threads(cpuinfo: str | None = None, affinity=None, cpu_max: str | None = None) -> int:
    """The default --threads: the fewest of the physical cores (``cpuinfo``: physical_cores'),
    the CPUs this process may run on (``affinity``: os.sched_getaffinity(0); taskset, docker
    --cpuset-cpus) and the cgroup v2 CPU quota rounded up (``cpu_max``: /sys/fs/cgroup/cpu.max,
    "200000 100000" is 2 CPUs, "max 100000" none; docker --cpus). Each source is read here
    when not given; one that is missing or unreadable limits nothing."""
    limits = [physical_cores(cpuinfo)]
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    if affinity:
        limits.append(len(affinity))
    if cpu_max is None:
        cpu_max = _read_text("/sys/fs/cgroup/cpu.max")
    try:
        quota, period = cpu_max.split()
        limits.append(math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):  # "max 100000" (no quota), "" (no file), malformed
        pass
    return max(1, min(limits))


def load_average() -> float | None:
    """The 1-minute load average, None where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


class CpuSample(NamedTuple):
    """CPU counters at one instant (see the module's busy rule)."""

    wall: float          # time.perf_counter(), seconds
    busy: float | None   # system-wide busy CPU seconds from /proc/stat; None where missing
    own: float           # this process's user + system CPU seconds, children excluded


def cpu_sample(stat_path: str = "/proc/stat") -> CpuSample:
    """The counters now; ``busy`` is None where ``stat_path`` is missing or unreadable."""
    busy = None
    try:
        with open(stat_path) as f:
            fields = f.readline().split()
        if fields[0] == "cpu":  # user nice system idle iowait irq softirq steal (guest in user)
            ticks = [int(v) for v in fields[1:9]]
            busy = (sum(ticks[:3]) + sum(ticks[5:8])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    times = os.times()
    return CpuSample(time.perf_counter(), busy, times.user + times.system)


def other_cpu(before: CpuSample, after: CpuSample, logical_cpus: int) -> dict:
    """``other_cpu``: cores' worth of CPU time other processes used between the samples (at
    least 0), and ``other_cpu_error``: its tick resolution (one tick per CPU and one of our own
    over the wall time); both None without /proc/stat."""
    wall = after.wall - before.wall
    if before.busy is None or after.busy is None or wall <= 0:
        return {"other_cpu": None, "other_cpu_error": None}
    others = (after.busy - before.busy) - (after.own - before.own)
    return {"other_cpu": max(0.0, others / wall),
            "other_cpu_error": (logical_cpus + 1) / os.sysconf("SC_CLK_TCK") / wall}


def busy_limit(logical_cpus: int) -> float:
    """Cores other processes may use during a row before it is flagged (the busy rule)."""
    return max(0.5, 0.25 * logical_cpus)


def busy_note(row: dict, logical_cpus: int) -> str | None:
    """Why ``row`` was measured on a busy machine (see the module's busy rule), else None."""
    other, error = row.get("other_cpu"), row.get("other_cpu_error") or 0.0
    limit = busy_limit(logical_cpus)
    if other is None or other - error <= limit:
        return None
    return (f"other processes used {other:.1f} CPU cores during it (limit {limit:.1f} of "
            f"{logical_cpus} logical CPUs): the machine was busy, times are inflated")


def gemm_peak_gflops(device: str = "cpu", dtype=None, n: int = 2048, seconds: float = 1.0,
                     library: str = "torch") -> float:
    """Best GFLOP/s of an n x n x n matmul over about ``seconds`` (a practical peak), by
    ``library``: "torch" (``dtype`` default float32, any device) or "numpy" (float32, CPU)."""
    if library == "numpy":
        if device != "cpu":
            raise ValueError("numpy measures the CPU peak only")
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        return _best_gflops(lambda: np.dot(a, b), lambda: None, n, seconds)
    import torch  # the torch extra, for torch's own peak and GPU peaks

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    return _best_gflops(lambda: a @ b, sync, n, seconds)


def _best_gflops(matmul, sync, n: int, seconds: float) -> float:
    matmul()  # warm-up: first-call allocation, BLAS and cuBLAS initialization
    sync()
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        matmul()
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
    versions["fcn_deploy"] = __version__
    return versions


def set_torch_threads(threads: int) -> None:
    """torch's intra-op pool, and its inter-op pool where still allowed, at ``threads``;
    nothing without torch (onnxruntime sessions get ``threads`` each)."""
    torch = optional_torch()
    if torch is None:
        return
    torch.set_num_threads(threads)
    try:  # settable once, before any inter-op work: a second run in one process keeps the first
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


@functools.lru_cache(maxsize=None)  # the machine does not change between a process's benches
def cpu_peak(libs: tuple[str, ...], torch_threads: int | None) -> tuple[float, str]:
    """The best FP32 GEMM GFLOP/s among ``libs`` and which library gave it: the better of
    torch's and numpy's, since torch's MKL takes a slow path on AMD CPUs (96-107 GFLOP/s on
    the 2-vCPU EPYC, where OpenBLAS and onnxruntime's kernels pass 120). Measured once
    per process, library set and torch thread count."""
    peaks = {lib: gemm_peak_gflops("cpu", n=4096, seconds=1.0, library=lib) for lib in libs}
    by = max(peaks, key=peaks.get)
    return peaks[by], by


def machine_info(threads: int) -> dict:
    """The ``machine`` section of bench.json; ``threads``: what torch and onnxruntime use.
    Without torch: its thread counts are null, numpy measures the CPU peak, and the GPU (named
    through cuda-python where it is installed) gets no measured peaks."""
    torch = optional_torch()
    info = {**cpu_info(), "physical_cores": physical_cores(), "threads": threads,
            "torch_threads": torch.get_num_threads() if torch else None,
            "torch_interop_threads": torch.get_num_interop_threads() if torch else None,
            "platform": platform.platform(), "libraries": library_versions(),
            "kernel_limits": {k: os.environ[k] for k in KERNEL_LIMITS if os.environ.get(k)}}
    # numpy's BLAS runs on every CPU: its peak counts only for runs on all of them.
    every_cpu = threads >= (os.cpu_count() or 1)
    libs = (("torch",) if torch else ()) + (("numpy",) if every_cpu or not torch else ())
    info["cpu_fp32_peak_gflops"], info["cpu_fp32_peak_by"] = cpu_peak(
        libs, torch.get_num_threads() if torch else None)
    if torch is None:
        info.update(_cuda_gpu())
    elif torch.cuda.is_available():
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


def _cuda_gpu() -> dict:
    """GPU 0's name, capability and memory through cuda-python, without torch: no GEMM peaks
    (null), no cuDNN setting. ``gpu`` is None without cuda-python or a usable GPU."""
    none = {"gpu": None, "gpu_fp32_peak_tflops": None, "gpu_fp16_peak_tflops": None}
    try:
        from cuda.bindings import runtime as rt  # cuda-python: the gpu extra

        err, count = rt.cudaGetDeviceCount()
        if int(err) != 0 or not count:
            return none
        err, props = rt.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return none
    except Exception:  # ImportError, or a CUDA library failing to load on a CPU machine
        return none
    name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else props.name
    return {**none, "gpu": name, "gpu_capability": f"SM{props.major}{props.minor}",
            "gpu_memory_gb": props.totalGlobalMem / 2 ** 30}
