"""Rich progress bars that stay quiet when output is not a terminal (CI logs)."""
from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _Bar:
    def __init__(self, progress: Progress, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1, **fields) -> None:
        self._progress.update(self._task, advance=n, **fields)


@contextlib.contextmanager
def progress_bar(description: str, total: int, status: str = "") -> Iterator[_Bar]:
    """A progress bar with an optional ``status`` field (e.g. loss), updated by ``advance``."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, status=status))
