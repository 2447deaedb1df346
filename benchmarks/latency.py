"""Latency harness, one for bench, cpu_backends and the frame loop: contenders timed in turn,
round by round (``in_turn``, ``interleave``), speeds as the median of per-round ratios
(``ratio_of_rounds``); warm-up, then a fixed count or a time budget; percentiles, throughput,
achieved GFLOP/s and the memory of the first run, per Segmenter and input shape.

FLOPs are counted by torch's FlopCounterMode: without torch (the runtime-only install),
``gflop`` and ``gflops_per_s`` are null rather than estimated."""
from __future__ import annotations

import functools
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

from .machine import optional_torch

T = TypeVar("T")


def run_timings(timed: Callable[[], float], warmup: int = 3, iters: int | None = None,
                seconds: float = 2.0, min_iters: int = 3, max_iters: int = 1000) -> list[float]:
    """Milliseconds of each timed run: ``iters`` runs, or as many as fit in ``seconds``
    (at least ``min_iters``, at most ``max_iters``), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        timed()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < (iters or max_iters):
        times.append(timed())
        if iters is None and len(times) >= min_iters and time.perf_counter() - start >= seconds:
            break
    return times


def summarize(times_ms: list[float], batch: int) -> dict:
    """p50/p90/p95/p99, mean and images/s of a list of per-batch milliseconds."""
    t = np.asarray(times_ms)
    p50, p90, p95, p99 = np.percentile(t, [50, 90, 95, 99])
    return {"iterations": len(t), "p50_ms": p50, "p90_ms": p90, "p95_ms": p95, "p99_ms": p99,
            "mean_ms": float(t.mean()), "min_ms": float(t.min()),
            "images_per_s": 1000 * batch / float(t.mean())}


def model_flops(meta, shape: tuple[int, int, int, int]) -> int | None:
    """FLOPs of the artifact's network at ``shape``, counted on a meta-device copy (no weights
    allocated, so a 1024x2048 full-width count costs no memory); None without torch.
    ``meta``: the artifact's ArtifactMeta."""
    if optional_torch() is None:
        return None
    return _flops(meta.arch, meta.num_classes, meta.width, tuple(shape))


@functools.lru_cache(maxsize=None)  # the same net at the same shape across artifacts and modes
def _flops(arch: str, num_classes: int, width: float, shape: tuple[int, int, int, int]) -> int:
    import torch  # the torch extra: FLOPs are counted by torch's FlopCounterMode

    from fcn_deploy.models import build_model  # torch

    from .amortization import count_flops  # torch

    with torch.device("meta"):
        model = build_model(arch, num_classes, width)
        x = torch.empty(shape)
    return count_flops(lambda: model(x))


@contextmanager
def peak_memory(device: str, backend: str) -> Iterator[dict]:
    """Memory while the block runs, in MB: process peak RSS on CPU (Linux VmHWM, reset first);
    on CUDA, PyTorch's allocator peak, or for other backends the GPU memory in use at the end
    (through cuda-python where torch is not installed)."""
    result: dict = {}
    torch = optional_torch() if device.startswith("cuda") else None
    if device.startswith("cuda") and torch is None:
        yield result
        used = _cuda_used_mb()
        if used is not None:
            result["gpu_used_mb"] = used
        return
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        yield result
        if backend == "torch":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            free, total = torch.cuda.mem_get_info()
            result["gpu_used_mb"] = (total - free) / 2 ** 20
        return
    _reset_rss_peak()
    yield result
    hwm = _read_status("VmHWM")
    if hwm is not None:
        result["peak_rss_mb"] = hwm / 1024


def _cuda_used_mb() -> float | None:
    """GPU memory in use on the current device, in MB, by cudaMemGetInfo (None if unavailable)."""
    try:
        from cuda.bindings import runtime as rt  # cuda-python: the gpu extra

        err, free, total = rt.cudaMemGetInfo()
    except Exception:  # no cuda-python, or a CUDA library that does not load
        return None
    return None if int(err) != 0 else (total - free) / 2 ** 20


def _reset_rss_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def _read_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        pass
    return None


def in_turn(measures: Sequence[Callable[[], T]], rounds: int) -> list[list[T]]:
    """Each of ``measures`` once per round, in turn, for ``rounds`` rounds: what a busy spell of
    a shared machine costs falls on all of them alike. Per measure, its value of each round."""
    values: list[list[T]] = [[] for _ in measures]
    for _ in range(rounds):
        for out, measure in zip(values, measures):
            out.append(measure())
    return values


def ratio_of_rounds(reference: Sequence[float], values: Sequence[float]) -> float:
    """The median over rounds of ``reference / value``: a speed when both are times of the
    same rounds (> 1: faster than the reference), robust to a round the machine was busy."""
    return statistics.median(r / v for r, v in zip(reference, values))


@dataclass
class Contender:
    """One thing timed at one input shape: a timer (ms per call), its first run (lazy work,
    allocation) and the memory that first run took, then the ms of every run, per round."""

    timed: Callable[[], float]
    first_ms: float
    memory: dict
    rounds: list[list[float]] = field(default_factory=list)

    @classmethod
    def start(cls, segmenter, shape: tuple[int, int, int, int],
              timer: Callable[[], float] | None = None) -> "Contender":
        """``segmenter``'s own timer at NCHW ``shape`` (or ``timer``, e.g. tiled inference),
        after its first run."""
        with peak_memory(segmenter.device, segmenter.backend) as memory:
            timed = timer or segmenter.timer(shape)
            first = timed()
        return cls(timed, first, memory)

    @property
    def times(self) -> list[float]:
        return [t for r in self.rounds for t in r]

    @property
    def round_p50s(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]


def interleave(contenders: Sequence[Contender], warmup: int = 3, iters: int | None = None,
               seconds: float = 2.0, rounds: int = 3) -> None:
    """Time ``contenders`` in turn, round by round (``in_turn``): ``iters`` runs each in all
    (as many rounds as runs at most), or ``seconds`` each split over the rounds (at least 3
    runs in all); ``warmup`` counts the first run."""
    for c in contenders:
        for _ in range(max(warmup - 1, 0)):
            c.timed()
    if iters is not None:
        rounds = min(rounds, iters)
    for r in range(rounds):
        runs = None if iters is None else iters // rounds + (r < iters % rounds)
        least = -(-3 // rounds)
        measures = [functools.partial(run_timings, c.timed, 0, runs, seconds / rounds, least)
                    for c in contenders]
        for c, [times] in zip(contenders, in_turn(measures, 1)):
            c.rounds.append(times)


def latency_row(segmenter, shape: tuple[int, int, int, int], warmup: int = 3,
                iters: int | None = None, seconds: float = 2.0, flops: int | None = None,
                timer: Callable[[], float] | None = None,
                contender: Contender | None = None) -> dict:
    """One latency row of ``segmenter`` at NCHW ``shape``: of ``contender`` when it was timed
    already (``interleave``), else timed alone here (``timer`` replaces its own)."""
    if contender is None:
        contender = Contender.start(segmenter, shape, timer)
        interleave([contender], warmup, iters, seconds, rounds=1)
    n, _, h, w = shape
    row = {"backend": segmenter.backend, "precision": segmenter.precision,
           "device": segmenter.device, "batch": n, "height": h, "width": w,
           # what crosses to the device per image: float32 NCHW, or a quarter of it for rgb8
           "input_format": segmenter.meta.input.format,
           "input_bytes_per_image": 3 * h * w * segmenter.meta.input.itemsize,
           "first_run_ms": contender.first_ms, **segmenter.phases,
           **summarize(contender.times, n), "rounds": len(contender.rounds),
           "round_p50_ms": contender.round_p50s, **contender.memory}
    row["gflop"] = flops / 1e9 if flops else None  # null: not counted (no torch here)
    row["gflops_per_s"] = flops / row["p50_ms"] / 1e6 if flops else None
    return row
