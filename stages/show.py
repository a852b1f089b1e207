"""What people see on a terminal, and only there: rich's tables and progress bars; plain text in pipes, CI and --json.

The measuring and planning code (infra/) stays free of presentation: it hands back
data and plain lines, and takes a progress callback (infra/perf/bench.Progress).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from infra.perf import bench


def on_a_terminal() -> bool:
    return sys.stderr.isatty()


def progress_bars() -> bench.Progress:
    """One bar per bench level on a terminal (requests done of total, elapsed, time left); nothing elsewhere."""
    if not on_a_terminal():
        return bench.no_progress

    @contextlib.contextmanager
    def level(concurrency: int, total: int | None) -> Iterator[Callable[[], None]]:
        columns = [TextColumn(f"  concurrency {concurrency}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if total:
            columns.append(TimeRemainingColumn())
        with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
            task = bar.add_task("", total=total)
            yield lambda: bar.advance(task)

    return level
