"""Every output example in README.md and docs/ is produced by the suite: none is typed by hand.

Two kinds of block show output. A `console` block shows a command after `$` and what it prints; tests/test_docs.py
runs the command and checks the lines. Any other block that shows output (a table, a message, a report) is marked
on the line before its fence with `<!-- output: NAME -->`, and NAME is produced here, by the code that prints it,
from fixed inputs (a real bench report in tests/fixtures/bench/, a test's billing rows): the block must show those
lines (in order; `...` skips lines). `INFRA_WRITE_DOCS=1 python -m pytest tests/test_doc_examples.py` rewrites the
blocks from what the code prints now. Blocks of input (`bash`, `toml`, `python`, `json`, `yaml`) need no mark. A
page's own test may produce its blocks instead, marked `<!-- produced by tests/test_x.py: NAME -->` (docs/bake.md).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_docs import shows_in_order

INPUT = {"bash", "toml", "python", "json", "yaml", "console"}  # console: run and checked by tests/test_docs.py
MARK = re.compile(r"<!-- output: ([a-z0-9-]+) -->")
# A page's own test may produce its blocks instead (docs/bake.md: tests/test_bake.py), marked with its file and name.
ELSEWHERE = re.compile(r"<!-- (?:produced by )?(?:([a-z0-9 -]+): )?(tests/test_[a-z0-9_]+\.py)(?:: ([a-z0-9 -]+))? -->")
FIXTURES = REPO / "tests" / "fixtures" / "bench"
WRITE_DOCS = bool(os.environ.get("INFRA_WRITE_DOCS"))  # read at import: tests run with INFRA_* cleared


def _report(name: str):
    from infra.perf import bench

    return bench.BenchReport.read(json.loads((FIXTURES / f"{name}.json").read_text()))


def bench_runs() -> str:
    from infra.perf import bench

    return "\n\n".join(bench.render_table(_report(name)) for name in ("baseline", "spec-decode"))


def bench_comparison() -> str:
    from infra.perf import bench

    return bench.render_compare(bench.compare(_report("baseline"), _report("spec-decode")))


def bench_bad_concurrency() -> str:
    from infra.runtime.errors import ConfigError
    from stages import flags

    with pytest.raises(ConfigError) as caught:
        flags.bench_options(url="http://127.0.0.1:9", concurrency="1,x")
    return f"error: {caught.value}"


def costs_bill() -> str:
    from tests.test_costs import REPLICA, START, H, billed, release, row

    v1, v2 = release(1, START - 2 * H, tag="git-aaa"), release(2, START + 6.5 * H, tag="git-bbb", measured=True)
    rows = [row(START + h * H, REPLICA, commit="git-aaa") for h in range(6)]
    rows += [row(START + 6 * H, 1.5 * REPLICA, commit="git-bbb")]
    rows += [row(START + h * H, 2 * REPLICA) for h in range(7, 12)]
    rows += [row(START + 3 * H, 4.0, role="jobs", commit=None)]
    return "\n".join("  " + line for line in billed([v2, v1], rows).lines())


# The gate's examples: a release of the 8B recipe that lost a quarter of its decode speed (TPOT 6.0 -> 7.5 ms, TTFT
# 154 -> 193.5 ms), measured with prod's objectives and workload shape at 1 and the target concurrency (10).
RECIPE, TARGET = "qwen3-8b-low-latency", 10
A_ID, SKIPPED_ID, B_ID = "r20260105-101500-1a2b3c", "r20260108-120000-7a8b9c", "r20260112-093000-4d5e6f"


def _gate_report(ttft: float, tpot: float):
    from infra.perf import bench
    from tests.fakes import bench_reports

    workload = bench.Workload(prompt_tokens=512, max_tokens=128, extra={"temperature": 0.0})
    return bench_reports.report(*(bench_reports.level(c, ttft=ttft, tpot=tpot, tokens=128, ok=40) for c in (1, TARGET)),
                                workload=workload)


def gate_refused() -> str:
    from infra.control.objectives import resolve
    from infra.control.resolve import gate_for
    from infra.control.settings import load_settings
    from infra.perf import gate

    prod = gate_for(load_settings("prod"), RECIPE)
    ev = gate.evaluate(resolve(prod, TARGET), _gate_report(0.1935, 0.0075), _gate_report(0.154, 0.006),
                       regression_budget=prod.regression_budget, measured_label=f"{B_ID} on staging",
                       baseline_label=f"{A_ID} (v7), measured by its own gate on staging")
    return gate.render_text(ev, f"{RECIPE} {B_ID} staging → prod")


def _skip():
    from infra.perf import gate

    ci = {"GITHUB_ACTOR": "octocat", "GITHUB_WORKFLOW": "promote-prod", "GITHUB_RUN_ID": "123456",
          "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REPOSITORY": "acme/sglang-modal-infra"}
    override = gate.skip_override("hotfix for CVE-2026-1", environ=ci, now=1767830400.0)
    return override.model_copy(update={"by": "runner@fv-az123"})


def gate_skipped() -> str:
    return _skip().line()


def _history() -> list:
    from infra.perf import gate
    from tests.test_ledger import passed, release

    def gated(version: int, release_id: str, ttft: float, tpot: float, at: float):
        return release(version, gate=passed(_gate_report(ttft, tpot)), release_id=release_id, deployed_at=at)

    skipped = gate.record(override=_skip())
    return [gated(9, B_ID, 0.1935, 0.0075, 1768210200.0),
            release(8, gate=skipped, release_id=SKIPPED_ID, deployed_at=1767873600.0),
            gated(7, A_ID, 0.154, 0.006, 1767608100.0)]


def ledger_table() -> str:
    from infra.perf import ledger
    from tests.test_ledger import TABLE

    return ledger.render_table([(r, ledger.priced(r, TABLE)) for r in _history()])


def ledger_comparison() -> str:
    from infra.perf import ledger

    history = _history()
    a, b = (ledger.find_release(history, rid, "prod manifest") for rid in (A_ID, B_ID))
    return ledger.render_comparison(ledger.compare_reports(ledger.labelled(a), ledger.labelled(b)))


def gate_setting_errors() -> str:
    """What a mistyped gate in environments/prod.toml gets, through the settings loader."""
    import shutil
    import tempfile

    from infra.control.settings import load_settings
    from infra.runtime.errors import ConfigError
    from tests.test_objectives import WITHOUT_GATE, toml

    cases = [{"objectives": [{"metric": "ttft_p95_ms", "level": 1, "max": 500}]},
             {"objectives": [{"metric": "ttft_p90_ms", "level": 1, "min": 500}]},
             {"objectives": [{"metric": "ttft_p90_ms", "level": 1, "max": 500},
                             {"metric": "tpot_p50_ms", "level": 1, "max": 12},
                             {"metric": "ttft_p90_ms", "level": 1, "max": 400}]},
             {"regression_budget": 1.5}]
    messages, here = [], os.getcwd()
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        shutil.copytree(REPO / "environments", Path(folder) / "environments")
        patch.setenv("INFRA_CONFIG_DIR", str(Path(folder) / "environments"))
        os.chdir(folder)  # sources are named relative to here: environments/prod.toml
        try:
            for gate in cases:
                text = WITHOUT_GATE + "\n[gate]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in gate.items())
                (Path(folder) / "environments" / "prod.toml").write_text(text)
                with pytest.raises(ConfigError) as caught:
                    load_settings("prod")
                messages.append(str(caught.value))
        finally:
            os.chdir(here)
    return "\n".join(messages)


# The bake's examples (docs/bake.md): the verdicts of tests/test_bake.py's two promotions, as recorded, rendered by
# the code that prints them: prod slowed to a 1.5 s first token against a 250 ms objective, and prod left alone.
BAKE_ID, BAKED_ID = "r20261207-192727-b08ef7", "r20261207-192723-7e86b7"


def _bake(ttfts: list[float], **fields):
    from infra.control.bake_policy import Bake, BakeObjective, BakeWindow

    objs = [BakeObjective(metric="ttft_p90_ms", direction="max", limit=250.0),
            BakeObjective(metric="error_rate", direction="max", limit=0.0)]
    windows = [BakeWindow(start_s=60 * i, end_s=60 * (i + 1), sent=2, ok=2, failed=0,
                          values={"ttft_p90_ms": t, "error_rate": 0.0},
                          breaches=[f"ttft_p90_ms {t:.1f} ms > 250.0 ms"] if t > 250 else [])
               for i, t in enumerate(ttfts)]
    return Bake(minutes=3, interval_s=30, objectives=objs, windows=windows, **fields)


def bake_rolled_back() -> str:
    from infra.perf import bake

    verdict = _bake([1505.6, 1525.5, 1525.0], verdict="rolled back", cold_start_s=0.004, rolled_back_to=1,
                    reason="ttft_p90_ms 1505.6 ms > 250.0 ms over 3 windows")
    return bake.render_text(verdict, f"{RECIPE} {BAKE_ID} v2 in prod")


def bake_kept() -> str:
    from infra.perf import bake

    return bake.render_text(_bake([45.2, 46.4, 47.1], verdict="kept", cold_start_s=0.067),
                            f"{RECIPE} {BAKED_ID} v1 in prod")


def bake_interrupted() -> str:
    from infra.perf.releases import Release
    from stages import promote
    from tests.conftest import deployment

    d = deployment("prod", RECIPE)
    promoted = Release.model_construct(version=2, tag="git-ce3a97409062")
    verdict = _bake([47.0], verdict="interrupted", reason="Ctrl-C after 1 window(s)")
    return f"error: promote failed: {promote.interrupted(verdict, d, promoted, 1)}"


# name -> (the page that shows it, what prints it)
EXAMPLES: dict[str, tuple[str, Callable[[], str]]] = {
    "bench-runs": ("docs/bench.md", bench_runs),
    "bench-comparison": ("docs/bench.md", bench_comparison),
    "bench-bad-concurrency": ("docs/bench.md", bench_bad_concurrency),
    "costs-bill": ("docs/costs.md", costs_bill),
    "gate-refused": ("docs/gate.md", gate_refused),
    "gate-skipped": ("docs/gate.md", gate_skipped),
    "gate-setting-errors": ("docs/gate.md", gate_setting_errors),
    "ledger-table": ("docs/gate.md", ledger_table),
    "ledger-comparison": ("docs/gate.md", ledger_comparison),
    "bake-rolled-back": ("docs/bake.md", bake_rolled_back),
    "bake-kept": ("docs/bake.md", bake_kept),
    "bake-interrupted": ("docs/bake.md", bake_interrupted),
}


def blocks(path: Path) -> list[tuple[int, str, str | None, list[str]]]:
    """(line, language, mark, lines) of every fenced block of a page."""
    out, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            language = lines[i].strip().strip("`")
            previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            mark, elsewhere = MARK.search(previous), ELSEWHERE.search(previous)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```"))
            name = (mark.group(1) if mark else
                    f"{elsewhere.group(2)}: {elsewhere.group(3) or elsewhere.group(1)}" if elsewhere else None)
            out.append((i + 1, language, name, lines[i + 1:end]))
            i = end
        i += 1
    return out


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "errors.md")]


def test_every_block_of_output_is_marked_with_what_produces_it():
    unmarked = [f"{path.relative_to(REPO)}:{line} ({language or 'no language'})" for path in pages()
                for line, language, mark, _ in blocks(path) if language not in INPUT and mark is None]
    assert unmarked == [], "mark each with <!-- output: NAME --> and produce NAME in tests/test_doc_examples.py"
    marks = {mark: path.relative_to(REPO).as_posix() for path in pages() for _, _, mark, _ in blocks(path) if mark}
    here = {m: page for m, page in marks.items() if ":" not in m}
    assert {m: page for m, page in here.items() if m not in EXAMPLES or EXAMPLES[m][0] != page} == {}
    readers = {p.name: p.read_text() for p in (REPO / "tests").glob("test_*.py")}
    for mark, page in marks.items():  # produced by the page's own tests: the test exists, and a test reads the page
        if ":" in mark:
            test = REPO / mark.split(":")[0]
            assert test.exists(), f"{page}: {mark} names no test"
            assert any(page in text for text in readers.values()), f"{page}: no test reads it"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_documented_example_is_what_the_code_prints(name):
    page, produce = EXAMPLES[name]
    path = REPO / page
    printed = produce()
    ((line, _, _, shown),) = [b for b in blocks(path) if b[2] == name]
    if WRITE_DOCS:
        text = path.read_text().splitlines()
        text[line:line + len(shown)] = printed.splitlines()
        path.write_text("\n".join(text) + "\n")
        return
    assert shown, f"{page}:{line}: the block is empty"
    assert shows_in_order(shown, printed) == [], (
        f"{page}:{line} drifted from what the code prints: INFRA_WRITE_DOCS=1 python -m pytest "
        "tests/test_doc_examples.py")
