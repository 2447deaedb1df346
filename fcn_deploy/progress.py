"""Rich progress bars that stay quiet when output is not a terminal (CI logs), or there print
a plain line now and then, so a long run never looks stuck."""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Plain progress lines: at each quarter of the work, or this often (s), whichever comes first.
PLAIN_EVERY_S = 30.0
_worker_prefix: str | None = None  # set by as_worker


def as_worker(prefix: str) -> None:
    """In one of several processes sharing a terminal: plain progress lines only, each led by
    ``prefix`` (live bars of two processes would overwrite each other)."""
    global _worker_prefix
    _worker_prefix = prefix


class _Bar:
    def __init__(self, progress: Progress, task, description: str, total: int, plain: bool):
        self._progress, self._task = progress, task
        self._description, self._total, self._plain = description, total, plain
        self._done, self._start = 0, time.perf_counter()
        self._last_line = self._start

    def advance(self, n: int = 1, **fields) -> None:
        self._progress.update(self._task, advance=n, **fields)
        self._done += n
        if self._plain:
            self._maybe_line(fields.get("status", ""))

    def _maybe_line(self, status: str) -> None:
        now = time.perf_counter()
        quarter = (4 * self._done) // self._total != (4 * (self._done - 1)) // self._total
        if not (quarter or now - self._last_line >= PLAIN_EVERY_S):
            return
        self._last_line, elapsed = now, now - self._start
        left = elapsed / self._done * (self._total - self._done)
        self._progress.console.print(
            f"{self._description}: {self._done}/{self._total}, {elapsed:.0f} s elapsed, "
            f"ETA {left:.0f} s" + (f", {status}" if status else ""), highlight=False)


@contextlib.contextmanager
def progress_bar(description: str, total: int, status: str = "",
                 plain_lines: bool = False) -> Iterator[_Bar]:
    """A progress bar with ETA and an optional ``status`` field (e.g. loss), updated by
    ``advance``; off a terminal, ``plain_lines`` prints occasional lines instead."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}")]
    console = Console(stderr=True)
    live = console.is_terminal and _worker_prefix is None
    with Progress(*columns, console=console, disable=not live) as progress:
        task = progress.add_task(description, total=total, status=status)
        yield _Bar(progress, task, (_worker_prefix or "") + description, max(total, 1),
                   plain_lines and not live)
