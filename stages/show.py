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


def plan(plans: list, console: Console | None = None, full: bool = True) -> None:
    """`invoke plan` on a terminal: per recipe, a two-column table whose values wrap at the terminal's width
    (launch commands and image layers run to hundreds of characters), warnings highlighted."""
    from infra.control import plan as plans_

    console = console or Console()
    for p in plans:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for label, value, kind in plans_.rows(p, full):
            grid.add_row(label, Text(value, style="bold yellow" if kind == "warning" else ""))
        console.print(Text(plans_.title(p), style="bold cyan"))
        console.print(grid)
        console.print()
    console.print(plans_.credentials_line())


DASHES = re.compile(r"^(\s*)-+(?:  +-+)*\s*$")  # the rule under a plain-text table's header (infra/perf/bench._table)


def lines(text: str, console: Console | None = None) -> None:
    """A result's lines on a terminal: its plain-text tables (the bench table, the ledger, a comparison, the gate's)
    as tables that fit the terminal's width (text wraps between words, a number is never split; columns that do not
    fit go to a further block, each led by the first column), warnings highlighted, other long lines folded. A table
    ends at a blank line or a line outside its indent, so the notes printed below it stay below it."""
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
            for k, table in enumerate(_tables(rows[i], rows[i + 2:end], spans, console)):
                if k:
                    console.print()
                console.print(table)
            i = end
            continue
        warning = rows[i].lstrip().lower().startswith(("warning", "error"))
        console.print(Text(rows[i], style="bold yellow" if warning else ""), overflow="fold")
        i += 1


def _tables(header: str, body: list[str], spans: list[tuple[int, int]], console: Console) -> list[Table]:
    """A plain-text table read back by its columns (each starts where its rule starts; the last runs to the end), as
    one table where it fits the console, else as blocks of the columns that fit, each repeating the first column."""

    def cells(line: str) -> list[str]:
        starts = [s for s, _ in spans] + [len(line) + 1]
        return [line[a:b].strip() for a, b in zip(starts, starts[1:])]

    names, grid = cells(header), [cells(line) for line in body]
    texts = [[names[c], *(row[c] for row in grid)] for c in range(len(names))]
    # A column is never narrower than its longest word (a number is one word): text wraps between words and a figure
    # is never split. Columns that do not fit beside each other at that width go to the next block.
    least = [max(len(word) for text in column for word in text.split() or [""]) for column in texts]
    most = [max(len(text) for text in column) for column in texts]
    gap = 3  # between two columns: padding, the (blank) rule, padding

    groups: list[list[int]] = [[0]]
    for c in range(1, len(names)):
        beside = groups[-1] + [c]
        if sum(least[k] for k in beside) + gap * (len(beside) - 1) <= console.width or len(groups[-1]) == 1:
            groups[-1].append(c)
        else:
            groups.append([0, c])

    def table(columns: list[int]) -> Table:
        width = {c: least[c] for c in columns}
        spare = console.width - sum(width.values()) - gap * (len(columns) - 1)
        for c in sorted(columns, key=lambda c: most[c] - least[c]):  # widen the nearly-whole columns first
            grow = min(most[c] - width[c], max(spare, 0))
            width[c] += grow
            spare -= grow
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for c in columns:
            t.add_column(names[c], overflow="fold", width=width[c])
        for row in grid:
            t.add_row(*(row[c] for c in columns))
        return t

    return [table(g) for g in groups]


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
