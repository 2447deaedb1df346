"""A pipelined frame loop: decoding, inference and post-processing overlap in bounded worker
threads, results come out in input order, a bounded window gives back-pressure, and a failed
item is reported in its result instead of ending the run. Standard library only."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fcn_deploy.errors import FcnDeployError
from fcn_deploy.wording import counted


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline; ``workers`` > 1 runs it on a pool (order is restored)."""

    name: str
    fn: Callable[[Any], Any]
    workers: int = 1


@dataclass
class FrameResult:
    """What became of one input item: the last stage's value, or the first stage error."""

    index: int
    item: Any
    value: Any = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def run_pipeline(items: Iterable[Any], stages: Sequence[Stage], depth: int = 4,
                 catch: tuple[type[BaseException], ...] = (Exception,),
                 fatal: tuple[type[BaseException], ...] = ()) -> Iterator[FrameResult]:
    """Run every item through ``stages`` with at most ``depth`` items in flight; yield results
    in input order. Errors of a type in ``catch`` fail only their item; those in ``fatal``
    (out of memory: the next item would fail too) end the run, raised where it is read."""
    stages = list(stages)
    _check(stages, depth)
    # Validation happens here, at the call, rather than at the first next() of the generator.
    return _run(iter(items), stages, depth, catch, fatal)


def _check(stages: list[Stage], depth: int) -> None:
    if depth < 1:
        raise FcnDeployError(f"pipeline depth must be at least 1, got {depth}")
    if not stages:
        raise FcnDeployError("a pipeline needs at least one stage")
    for stage in stages:
        if stage.workers < 1:
            raise FcnDeployError(f"stage {stage.name!r} needs at least 1 worker, "
                                 f"got {stage.workers}")
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        # FrameResult.seconds is keyed by name; duplicates would merge their timings.
        raise FcnDeployError(f"pipeline stage names must be unique, got {names}")


def _run(items: Iterator[Any], stages: list[Stage], depth: int,
         catch: tuple[type[BaseException], ...],
         fatal: tuple[type[BaseException], ...]) -> Iterator[FrameResult]:
    pools = [ThreadPoolExecutor(s.workers, thread_name_prefix=s.name) for s in stages]
    closing = threading.Event()
    window: deque[tuple[FrameResult, Future]] = deque()
    try:
        for index, item in enumerate(items):
            window.append(_submit(pools, stages, FrameResult(index, item), closing, catch,
                                  fatal))
            if len(window) >= depth:
                yield _wait(*window.popleft())
        while window:
            yield _wait(*window.popleft())
    finally:
        closing.set()
        # Cancel the queues of every pool before waiting on any, so a later stage does not
        # keep working through its queue while an earlier pool is being joined.
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _submit(pools: list[ThreadPoolExecutor], stages: list[Stage], result: FrameResult,
            closing: threading.Event, catch: tuple[type[BaseException], ...],
            fatal: tuple[type[BaseException], ...]) -> tuple[FrameResult, Future]:
    """Queue every stage of one item; each waits on the previous one's future. Pools take
    items in input order, so no job waits on one queued behind it: no deadlock."""
    future = None
    for pool, stage in zip(pools, stages):
        future = pool.submit(_job, stage, future, result, closing, catch, fatal)
    return result, future


def _job(stage: Stage, previous: Future | None, result: FrameResult,
         closing: threading.Event, catch: tuple[type[BaseException], ...],
         fatal: tuple[type[BaseException], ...]) -> None:
    if previous is not None:
        previous.result()  # re-raises an uncaught error of an earlier stage, or a cancellation
    if result.error is not None:
        return
    if closing.is_set():
        raise CancelledError
    start = time.perf_counter()
    try:
        # The value field carries each stage's output to the next; the chain of futures
        # orders these writes, so no lock is needed.
        result.value = stage.fn(result.item if previous is None else result.value)
    except (KeyboardInterrupt, *fatal):
        raise
    except catch as exc:
        result.value = None
        result.error = f"{stage.name}: {str(exc) or type(exc).__name__}"
    finally:
        result.seconds[stage.name] = time.perf_counter() - start


def _wait(result: FrameResult, last: Future) -> FrameResult:
    last.result()
    return result


@dataclass
class PipelineStats:
    """Throughput and mean per-stage time of the results ``add``-ed since ``start``."""

    frames: int = 0
    failed: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_frames: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def start(self) -> None:
        self.started = time.perf_counter()

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.failed += not result.ok
        for name, seconds in result.seconds.items():
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + seconds
            self.stage_frames[name] = self.stage_frames.get(name, 0) + 1

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def frames_per_second(self) -> float:
        wall = self.wall_seconds
        return self.frames / wall if wall > 0 else 0.0

    def mean_ms(self) -> dict[str, float]:
        """Mean milliseconds of each stage over the frames it ran on."""
        return {name: 1000 * total / self.stage_frames[name]
                for name, total in self.stage_seconds.items()}

    def summary(self) -> str:
        """One line: frames, wall time, frames/s, failures, and mean ms of each stage."""
        line = f"{counted(self.frames, 'frame')} in {self.wall_seconds:.1f} s: "
        line += f"{self.frames_per_second:.1f} frames/s"
        if self.failed:
            line += f", {self.failed} failed"
        means = self.mean_ms()
        if means:
            line += "; per frame: " + ", ".join(f"{n} {ms:.1f} ms" for n, ms in means.items())
        return line
