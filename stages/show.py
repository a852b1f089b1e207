"""What people see on a terminal, and only there: rich's tables and progress bars; plain text in pipes, CI and --json.

The measuring and planning code (infra/) stays free of presentation: it hands back
data and plain lines, and takes a progress callback (infra/perf/bench.Progress).
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from infra.perf import bench


def on_a_terminal(stream=None) -> bool:
    return (stream or sys.stderr).isatty()


def plan(plans: list[dict], console: Console | None = None) -> None:
    """`invoke plan` on a terminal: per recipe, a two-column table whose values wrap at the terminal's width
    (launch commands and image layers run to hundreds of characters), warnings highlighted."""
    from infra.control import plan as plans_

    console = console or Console()
    for p in plans:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for label, value, kind in plans_.rows(p):
            grid.add_row(label, Text(value, style="bold yellow" if kind == "warning" else ""))
        console.print(Text(plans_.title(p), style="bold cyan"))
        console.print(grid)
        console.print()
    console.print(plans_.credentials_line())


DASHES = re.compile(r"^(\s*)-+(?:  +-+)*\s*$")  # the rule under a plain-text table's header (infra/perf/bench._table)


def lines(text: str, console: Console | None = None) -> None:
    """A result's lines on a terminal: its plain-text tables (the bench table, the ledger, a comparison, the gate's)
    as tables whose cells wrap at the terminal's width, warnings highlighted, other long lines folded."""
    console = console or Console()
    rows = text.splitlines()
    i = 0
    while i < len(rows):
        if i + 1 < len(rows) and (rule := DASHES.match(rows[i + 1])):
            indent = rule.group(1)
            spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rows[i + 1])]
            end = i + 2
            while end < len(rows) and rows[end].strip() and rows[end].startswith(indent):
                end += 1
            console.print(_table(rows[i], rows[i + 2:end], spans))
            i = end
            continue
        warning = rows[i].lstrip().lower().startswith(("warning", "error"))
        console.print(Text(rows[i], style="bold yellow" if warning else ""), overflow="fold")
        i += 1


def _table(header: str, body: list[str], spans: list[tuple[int, int]]) -> Table:
    """A plain-text table read back by its columns (each starts where its rule starts; the last runs to the end)."""

    def cells(line: str) -> list[str]:
        starts = [s for s, _ in spans] + [len(line) + 1]
        return [line[a:b].strip() for a, b in zip(starts, starts[1:])]

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in cells(header):
        table.add_column(name, overflow="fold")
    for line in body:
        table.add_row(*cells(line))
    return table


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
