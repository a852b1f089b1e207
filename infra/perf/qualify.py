"""The qualification a reviewer approves: a promotion's candidate beside the target's current release, figure by figure.

The gate decides (its objectives and regression budget: infra/perf/gate.py). An upgrade (`invoke upgrade`) moves
more than latency, so this puts beside the gate's verdict every other figure the project records of both
releases, in one table for the terminal and the CI job summary: each objective at each level (the gate's own
rows), goodput per level, tokens per second, $/M output tokens at that throughput (infra/perf/ledger.py), the
cold start phase by phase (medians of the recorded starts, infra/control/coldstarts.py), and the GPU acceptance
suite where `invoke gpu-test` ran. Nothing here decides; a figure that is missing says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from infra.control import costs
from infra.perf import ledger
from infra.perf.bench import BenchReport
from infra.perf.gate import GateRecord, baseline_from
from infra.perf.releases import Release
from infra.runtime.timeline import StartRecord

MISSING = "-"


class QualificationRow(BaseModel):
    """One figure of the table: what prod runs now, what would replace it, and how it moved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    figure: str
    current: str
    candidate: str
    change: str = ""
    note: str = ""  # the gate's verdict for its rows; where a figure came from, or why it is missing


class Qualification(BaseModel):
    """`promote`'s qualification table: recorded on nothing, printed and written to the job summary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    candidate: str
    current: str | None
    gate: str
    rows: list[QualificationRow]


def _change(current: float | None, candidate: float | None) -> str:
    if current is None or candidate is None or current == 0:
        return ""
    return f"{(candidate / current - 1) * 100:+.1f}%"


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return MISSING if value is None else f"{value:.{digits}f}{unit}"


def phase_medians(records: Iterable[StartRecord]) -> dict[str, float]:
    """Median seconds of each phase over the starts that became ready, and of the whole start (`total`)."""
    ready = [r for r in records if r.outcome == "ready" and r.total_s is not None]
    phases: dict[str, list[float]] = {}
    for record in ready:
        for phase, seconds in record.phase_seconds().items():
            phases.setdefault(phase, []).append(seconds)
    medians = {phase: statistics.median(values) for phase, values in phases.items()}
    if ready:
        medians["total"] = statistics.median(r.total_s for r in ready)
    return medians


def _latency_rows(gate: GateRecord | None) -> list[QualificationRow]:
    if gate is None or gate.evaluation is None:
        why = "gate skipped" if gate is not None and gate.skipped else "no gate in this environment"
        return [QualificationRow(figure="objectives", current=MISSING, candidate=MISSING, note=why)]
    rows = []
    for r in gate.evaluation.rows:
        unit = f" {r.unit}" if r.unit and r.unit != "%" else r.unit
        rows.append(QualificationRow(figure=f"{r.metric} @ c={r.concurrency}", current=_number(r.baseline, unit),
                        candidate=_number(r.measured, unit), change=_change(r.baseline, r.measured),
                        note=f"gate: {r.verdict}" + (f" ({r.note})" if r.note else "")))
    return rows


def _measured_rows(current: BenchReport | None, candidate: BenchReport | None, target_concurrency: int,
                   hourly_current: costs.Price | None, hourly_candidate: costs.Price) -> list[QualificationRow]:
    """Goodput and output tokens/s per level, and $/M output tokens at the target concurrency."""
    levels = sorted({lv.concurrency for report in (current, candidate) if report for lv in report.levels})
    rows = []
    for c in levels:
        now = current.level(c) if current else None
        new = candidate.level(c) if candidate else None
        good = [lv.goodput.requests_per_s if lv and lv.goodput else None for lv in (now, new)]
        if any(v is not None for v in good):
            rows.append(QualificationRow(figure=f"goodput @ c={c}", current=_number(good[0], " req/s", 2),
                            candidate=_number(good[1], " req/s", 2), change=_change(*good),
                            note="requests/s within every objective at this level"))
        tokens = [lv.throughput.output_tokens_per_s if lv else None for lv in (now, new)]
        rows.append(QualificationRow(figure=f"output tok/s @ c={c}", current=_number(tokens[0], "", 0),
                        candidate=_number(tokens[1], "", 0), change=_change(*tokens)))
    priced = [ledger.performance(report, target_concurrency=target_concurrency,
                                 hourly=hourly).usd_per_million_output_tokens if report and hourly else None
              for report, hourly in ((current, hourly_current), (candidate, hourly_candidate))]
    rows.append(QualificationRow(figure="$/M output tokens", current=_number(priced[0], "", 2),
                                 candidate=_number(priced[1], "", 2), change=_change(*priced),
                                 note=f"one replica's hourly cost at c={target_concurrency}'s throughput"))
    return rows


def _start_rows(current: list[StartRecord], candidate: list[StartRecord]) -> list[QualificationRow]:
    now, new = phase_medians(current), phase_medians(candidate)
    if not now and not new:
        return [QualificationRow(figure="cold start", current=MISSING, candidate=MISSING,
                                 note="no recorded start on either side")]
    starts = (f"{sum(r.outcome == 'ready' for r in current)} and {sum(r.outcome == 'ready' for r in candidate)} "
              "recorded starts")
    return [QualificationRow(figure="cold start (median)" if phase == "total" else f"  {phase}",
                             current=_number(now.get(phase), " s"), candidate=_number(new.get(phase), " s"),
                             change=_change(now.get(phase), new.get(phase)), note=starts if phase == "total" else "")
            for phase in dict.fromkeys(("total", *new, *now))]


def _acceptance_row(current: Release | None, candidate: Release) -> list[QualificationRow]:
    def verdicts(release: Release | None) -> str:
        runs = getattr(release, "acceptance", None) or {}
        return ", ".join(f"{shape} {run.verdict}" for shape, run in sorted(runs.items())) or "not run"

    return [QualificationRow(figure="GPU acceptance", current=verdicts(current), candidate=verdicts(candidate),
                note="`invoke gpu-test` in the recipe's own image")]


def qualify(candidate: Release, current: Release | None, gate: GateRecord | None, *, target_concurrency: int,
            hourly_candidate: costs.Price, hourly_current: costs.Price | None,
            candidate_starts: list[StartRecord], current_starts: list[StartRecord], title: str) -> Qualification:
    """Every recorded figure of `candidate` (measured by `gate` where it ran) beside `current`'s."""
    baseline = baseline_from(current)
    measured = gate.measurement if gate else None
    if measured is None and candidate.gate:
        measured = candidate.gate.measurement
    rows = [*_latency_rows(gate),
            *_measured_rows(baseline[0] if baseline else None, measured, target_concurrency, hourly_current,
                            hourly_candidate),
            *_start_rows(current_starts, candidate_starts), *_acceptance_row(current, candidate)]

    def name(r: Release) -> str:
        version = f" v{r.version}" if r.version else ""
        return f"{r.release_id} ({r.deployment.env}{version}, {r.deployment.recipe.sglang_image.rsplit(':', 1)[-1]})"

    return Qualification(title=title, candidate=name(candidate), current=name(current) if current else None,
                         gate=gate.verdict if gate else "none", rows=rows)


HEADER = ("figure", "current", "candidate", "change", "note")


def render_text(q: Qualification) -> str:
    cells = [HEADER] + [(r.figure, r.current, r.candidate, r.change, r.note) for r in q.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = [f"qualification: {q.title}", f"  current:   {q.current or 'none (first release here)'}",
             f"  candidate: {q.candidate}; gate {q.gate}"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + f"  {row[4]}".rstrip()
              for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(q: Qualification) -> str:
    def md(text: str) -> str:
        return text.replace("|", "\\|").strip() or " "

    lines = [f"### Qualification: {md(q.title)}", "",
             f"Current: {md(q.current or 'none (first release here)')}. Candidate: {md(q.candidate)}; "
             f"gate {q.gate}.", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(md(c) for c in (r.figure, r.current, r.candidate, r.change, r.note)) + " |"
              for r in q.rows]
    return "\n".join(lines) + "\n"
