"""Readable on any terminal: results fit the terminal's width (80 and 120 columns) without splitting a number, notes
stay below their table, and piped output stays plain text.

The reports are real ones (tests/fixtures/bench/: `invoke bench` against tests/fakes/openai_server.py, the runs
docs/bench.md shows); the layout is judged, never the numbers' size. rich honours COLUMNS; the pty test runs the
real CLI on a pseudo-terminal, as a person's shell would.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from rich.console import Console

from infra.perf import bench
from stages import show
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "bench"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def report(name: str = "baseline") -> bench.BenchReport:
    return bench.load_report(FIXTURES / f"{name}.json")


def busy(r: bench.BenchReport) -> bench.BenchReport:
    """The same report with its client busy at the highest level (as on a loaded machine)."""
    data = r.model_dump(mode="json")
    data["levels"][-1]["client"].update(busy=True, cpu_utilization=0.97)
    return bench.BenchReport.model_validate(data)


def on_terminal(text: str, width: int) -> str:
    console = Console(width=width, force_terminal=True, record=True, file=open(os.devnull, "w"))
    show.lines(text, console)
    return console.export_text()


def cells(text: str) -> list[str]:
    """The plain table's numeric cells (p50/p90/p99 trios and single figures), as the terminal must show them whole."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("----"))
    body = [line for line in lines[rule + 1:] if line.strip() and line[0].isdigit()]
    return [cell for line in body for cell in line.split() if re.fullmatch(r"[\d./]+", cell) and "." in cell]


@pytest.mark.parametrize("width", [80, 120])
def test_the_bench_table_fits_the_terminal_and_never_splits_a_number(width):
    text = bench.render_table(busy(report()))
    shown = on_terminal(text, width)
    assert max(len(line) for line in shown.splitlines()) <= width
    words = shown.split()
    for cell in cells(text):
        assert cell in words, f"{cell} split or lost at {width} columns"
    # Fewer columns per block: every block is led by the concurrency column.
    blocks = [line for line in shown.splitlines() if line.split()[:1] == ["conc"]]
    assert len(blocks) >= (2 if width == 80 else 1)
    assert sum(line.startswith(("16 ", " 16 ")) or line.split()[:1] == ["16"]
               for line in shown.splitlines()) == len(blocks)


@pytest.mark.parametrize("width", [80, 120])
def test_the_busy_note_is_below_the_table_in_one_piece(width):
    text = bench.render_table(busy(report()))
    note = next(line for line in text.splitlines() if "the client was busy" in line)
    assert text.splitlines().index(note) > text.splitlines().index("")  # plain text: after a blank line
    shown = on_terminal(text, width)
    flat = " ".join(shown.split())
    assert " ".join(note.split()) in flat  # wrapped between words at most, never spread over cells
    last_cell = cells(text)[-1]
    assert flat.index(" ".join(note.split())) > flat.rindex(last_cell)


def test_piped_output_stays_plain():
    text = bench.render_table(busy(report()))
    assert not ANSI.search(text) and "\n----  -------  ------" in text
    assert text.splitlines()[-1].startswith("concurrency 16: the client was busy")


def test_a_comparison_fits_80_columns_too():
    comparison = bench.compare(report("baseline"), report("spec-decode"))
    text = bench.render_compare(comparison)
    shown = on_terminal(text, 80)
    assert max(len(line) for line in shown.splitlines()) <= 80
    assert "x1.6" in shown and "worse" in shown and "better" in shown


def run_on_a_pty(args: list[str], columns: int, timeout: float = 60) -> str:
    """`invoke ARGS` on a pseudo-terminal COLUMNS wide: what a person sees, escape codes removed."""
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))} | {
        "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color", "INFRA_STATE_DIR": os.devnull + ".d"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, stdin=child, stdout=child,
                               stderr=child, close_fds=True)
    os.close(child)
    out = b""
    deadline = time.monotonic() + timeout  # a bound on a hung child, not a judgement of speed
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(main)
    assert process.returncode == 0, out.decode(errors="replace")[-2000:]
    return ANSI.sub("", out.decode()).replace("\r", "")


@pytest.mark.parametrize("columns", [80, 120])
def test_bench_on_a_real_terminal_fits_its_width(columns, fake_server):
    server = fake_server("--ttft", "0.01", "--itl", "0.002", "--tokens", "16")
    shown = run_on_a_pty(["bench", "--url", server.url, "--concurrency", "1,4", "--requests", "4"], columns)
    table = [line for line in shown.splitlines() if line.strip() and "━" not in line]  # the progress bars are gone
    assert any(line.split()[:1] == ["conc"] for line in table)
    assert max(len(line) for line in table) <= columns, shown


def test_plan_is_a_page_per_recipe_by_default_and_everything_with_full(cli):
    """231 lines at 80 columns was too much to read: the default shows where, on what, what it costs and takes, the
    gate, the cold start and every warning; --full (and --json) keep everything."""
    compact = cli("plan", "--env", "prod").stdout
    full = cli("plan", "--env", "prod", "--full").stdout
    assert not ANSI.search(compact) and not ANSI.search(full)  # piped: plain text
    for label in ("Modal", "GPU", "Scaling", "Endpoint", "Cost", "Standing cost", "First pipeline", "Gate",
                  "Cold start"):
        assert re.search(rf"^{label}\s", compact, re.M), label
    for label in ("Launch", "Kernels", "Image", "Job", "Compile job", "Gate measure"):
        assert not re.search(rf"^{label}\s", compact, re.M) and re.search(rf"^{label}\s", full, re.M), label
    assert "measured with this model: ready in 354.5 s without caches" in compact  # the VLM's measured start
    assert "`invoke plan --full` adds" in compact and "`invoke plan --full` adds" not in full
    assert compact.count("WARNING") == full.count("WARNING")  # nothing that needs attention is left out


@pytest.mark.parametrize("columns", [80, 120])
def test_plan_on_a_real_terminal_fits_a_screen_or_two(columns):
    shown = run_on_a_pty(["plan", "--env", "prod"], columns)
    assert max(len(line) for line in shown.splitlines()) <= columns
    assert len(shown.splitlines()) <= (60 if columns == 80 else 45)
    assert "== prod / qwen3-8b-low-latency" in shown and "== prod / qwen3.6-35b-vlm" in shown
