"""The promotion gate: measure a release with its recipe's fixed workload, and decide whether it may go on.

`check` is what a promotion calls: measure the release on the source environment's endpoint (`measure_release`: the
recipe's GateWorkload through infra/perf/bench.py), hold it to the target's objectives (infra/control/objectives.py)
and regression budget against the release the target runs now (`evaluate`), print the table, add it to the GitHub
job summary, and return the record the manifest keeps. The verdicts, the baseline's choice and `--skip-gate
--reason` are described in docs/gate.md; stages/promote.py decides what to do with the verdict.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.control import objectives
from infra.control.bake_policy import BakeOff
from infra.control.objectives import Target
from infra.perf import bench, smoketest
from infra.runtime import lifecycle
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.model import Stored
from infra.runtime.recipes.base import GateWorkload
from infra.runtime.secrets import scrub

if TYPE_CHECKING:
    from infra.perf.releases import Release

PASS, MISS, REGRESSED, NO_BASELINE = "pass", "miss objective", "beyond regression budget", "no baseline"
PASSED, REFUSED, SKIPPED = "passed", "refused", "skipped"
MAX_REASON = 500  # characters of a --reason kept in the manifest


# ---------------------------------------------------------------- the workload


def bench_inputs(
    workload: GateWorkload, *, model: str | None, target_concurrency: int, targets: Sequence[Target] = (),
    cold_start_deadline: float = bench.DEFAULT_COLD_START_DEADLINE,
) -> tuple[bench.Workload, bench.Plan]:
    """The recipe's gate workload as bench's Workload and Plan: levels 1, the target and any an objective names."""
    concurrency = objectives.levels(tuple(targets), target_concurrency)
    # Every level gets at least `requests` (stable p90) and at least REQUESTS_PER_STREAM per stream.
    return workload_of(workload, model), bench.Plan(
        concurrency=concurrency, requests=max(workload.requests, bench.REQUESTS_PER_STREAM * max(concurrency)),
        warmup=workload.warmup_rounds, timeout=workload.timeout, cold_start_deadline=cold_start_deadline)


def workload_of(workload: GateWorkload, model: str | None) -> bench.Workload:
    """What each request of the gate workload sends (the bake sends the same, one at a time)."""
    return bench.Workload(prompt_tokens=workload.prompt_tokens, max_tokens=workload.max_tokens, model=model,
                          sampling={"temperature": workload.temperature},
                          image=lifecycle.warmup_image_data_url() if workload.with_image else None)


def measure(
    url: str, workload: GateWorkload, *, model: str | None, target_concurrency: int, targets: Sequence[Target] = (),
    cold_start_deadline: float = bench.DEFAULT_COLD_START_DEADLINE, label: str | None = None,
    target: bench.BenchTarget | None = None, headers: dict[str, str] | None = None, say=None,
    progress: bench.Progress = bench.no_progress,
) -> bench.BenchReport:
    """Run the gate workload against `url`; the compact report (what the manifest keeps)."""
    w, plan = bench_inputs(workload, model=model, target_concurrency=target_concurrency, targets=targets,
                           cold_start_deadline=cold_start_deadline)
    return bench.run(url, w, plan, label=label, target=target, headers=headers, say=say, progress=progress,
                     objectives=tuple(targets)).compact()


# ---------------------------------------------------------------- the verdict


class GateRow(Stored):
    """One objective's row of the gate's table, as the manifest keeps it (`GateEvaluation.rows`)."""

    metric: str
    level: int | str | None = None  # as the objective was written: a concurrency or "target"
    concurrency: int
    limit: float
    direction: str  # "max" or "min"
    unit: str
    implicit: bool = False
    measured: float | None
    baseline: float | None
    change: float | None  # measured / baseline - 1 (budgeted metrics only)
    verdict: str
    note: str = ""

    @classmethod
    def of(cls, t: Target, measured: float | None, baseline: float | None, change: float | None, verdict: str,
           note: str = "") -> GateRow:
        return cls(metric=t.metric, level=t.written_level, concurrency=t.concurrency, limit=t.limit,
                   direction=t.spec.limit_key, unit=t.spec.unit, implicit=t.implicit, measured=measured,
                   baseline=baseline, change=None if change is None else round(change, 4), verdict=verdict, note=note)

    @property
    def target(self) -> Target:
        return Target(self.metric, self.concurrency, self.limit, self.level, self.implicit)

    def cells(self) -> list[str]:
        t = self.target
        # From the figures, not the stored `change` (rounded to 4 digits, it could round the percentage once more).
        change = "-" if self.change is None else f"{(self.measured / self.baseline - 1) * 100:+.1f}%"
        return [t.metric + (" (implicit)" if t.implicit else ""), t.level_label, t.limit_text(),
                t.spec.format(self.measured), t.spec.format(self.baseline), change,
                self.verdict + (f" ({self.note})" if self.note else "")]


class GateEvaluation(Stored):
    """The gate's table as data: the verdict, each objective's row, why it was refused, what else to know."""

    verdict: str
    regression_budget: float
    measured: str
    baseline: str | None  # None: no baseline was available
    rows: list[GateRow]
    reasons: tuple[str, ...] = ()  # why it is refused, one per failing row
    notes: tuple[str, ...] = ()  # what a reader should know that did not decide the verdict

    @property
    def passed(self) -> bool:
        return not self.reasons


def evaluate(
    targets: Sequence[Target], measurement: bench.BenchReport, baseline: bench.BenchReport | None = None, *,
    regression_budget: float,
    measured_label: str | None = None, baseline_label: str | None = None,
) -> GateEvaluation:
    """Hold a bench report to the objectives and, where a baseline report is given, to the regression budget."""
    notes: list[str] = []
    if baseline is not None:
        if diff := baseline.workload.differences(measurement.workload, "->"):
            notes.append(f"baseline{' ' + baseline_label if baseline_label else ''} was measured with another workload "
                         f"({diff}): not compared, objectives only")
            baseline = None
    measured_levels = {lv.concurrency: lv for lv in measurement.levels}
    baseline_levels = {lv.concurrency: lv for lv in baseline.levels} if baseline else {}

    checks = list(targets)
    explicit = {t.concurrency for t in checks if t.metric == "error_rate"}
    checks += [Target("error_rate", c, 0.0, c, implicit=True) for c in sorted(measured_levels) if c not in explicit]

    rows, reasons = [], []
    for t in checks:
        spec = t.spec
        level = measured_levels.get(t.concurrency)
        value = spec.read(level) if level else None
        base_level = baseline_levels.get(t.concurrency)
        base = spec.read(base_level) if base_level else None
        change = value / base - 1 if spec.budgeted and value is not None and base else None
        where = f"{t.metric} at concurrency {t.concurrency}"
        if level is None:
            verdict, note = MISS, "level not measured"
            reasons.append(f"{where}: not measured (the measurement has levels "
                           f"{', '.join(map(str, sorted(measured_levels)))})")
        elif value is None:
            verdict, note = MISS, "no successful request"
            reasons.append(f"{where}: nothing to measure, every request failed ({_errors(level)})")
        elif not t.met_by(value):
            verdict, note = MISS, ""
            reasons.append(f"{where}: {spec.format(value)} misses the objective {t.limit_text()}"
                           + (f" ({_errors(level)})" if t.metric == "error_rate" else ""))
        elif change is not None and _worse_beyond(change, spec.higher_is_better, regression_budget):
            verdict, note = REGRESSED, ""
            reasons.append(f"{where}: {spec.format(value)} is {abs(change) * 100:.1f}% "
                           f"{'lower' if spec.higher_is_better else 'higher'} than the baseline's {spec.format(base)} "
                           f"(regression budget {regression_budget * 100:g}%)")
        elif spec.budgeted and base is None:
            verdict, note = NO_BASELINE, ""
        else:
            verdict, note = PASS, ""
        rows.append(GateRow.of(t, value, base, change, verdict, note))

    if baseline is None and not notes:
        notes.append("no baseline: the target's current release has no measurement of this workload; "
                     "objectives only, the regression budget was not applied")
    for c, lv in sorted(measured_levels.items()):
        if lv.client.busy:
            notes.append(f"concurrency {c}: the measuring client was busy; its latencies may be inflated")
    if measurement.cold_start.errors:
        notes.append(f"waited {measurement.cold_start.waited_s or 0:g} s for the endpoint before measuring "
                     "(cold start; not counted)")
    return GateEvaluation(verdict=REFUSED if reasons else PASSED, regression_budget=regression_budget,
                          measured=measured_label or measurement.target.where(),
                          baseline=baseline_label if baseline is not None else None, rows=rows, reasons=tuple(reasons),
                          notes=tuple(notes))


def _worse_beyond(change: float, higher_is_better: bool, budget: float) -> bool:
    # A tiny epsilon keeps "exactly the budget" inside it despite float rounding.
    return (-change if higher_is_better else change) > budget + 1e-9


def _errors(level: bench.Level) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in level.errors.items())
    return f"{level.requests.failed} of {level.requests.sent} failed" + (f": {kinds}" if kinds else "")


def baseline_from(release: Release | None) -> tuple[bench.BenchReport, str] | None:
    """The baseline a candidate is compared with: the target's current release's gate measurement, else its own."""
    if release is None:
        return None
    name = f"{release.release_id} (v{release.version})" if release.version else release.release_id
    if release.gate and (gated := release.gate.measurement):
        return gated, f"{name}, measured by its own gate on {gated.target.where()}"
    if own := release.measurement:
        return own, f"{name}, measured on {own.target.where()} while serving (not like for like)"
    return None


# ---------------------------------------------------------------- rendering


HEADER = ["objective", "level", "limit", "measured", "baseline", "change", "verdict"]


def _summary_line(ev: GateEvaluation) -> str:
    return (f"measured: {ev.measured}; baseline: {ev.baseline or 'none'}; "
            f"regression budget {ev.regression_budget * 100:g}%")


def render_text(ev: GateEvaluation, title: str | None = None) -> str:
    """The table `invoke promote` prints, then why it was refused and what else to know."""
    head = f"gate {ev.verdict.upper()}" + (f": {title}" if title else "")
    lines = [head, _summary_line(ev), bench._table(HEADER, [r.cells() for r in ev.rows], right={2, 3, 4, 5})]
    lines += [f"refused: {r}" for r in ev.reasons]
    lines += [f"note: {n}" for n in ev.notes]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(ev: GateEvaluation, title: str | None = None) -> str:
    """GitHub-flavoured Markdown for a job summary ($GITHUB_STEP_SUMMARY)."""
    icon = {PASS: "✅", NO_BASELINE: "➖", MISS: "❌", REGRESSED: "❌"}
    head = f"### {'✅' if ev.passed else '❌'} Promotion gate {ev.verdict}" + (f": {_md(title)}" if title else "")
    lines = [head, "", _md(_summary_line(ev)), "", "| " + " | ".join(HEADER) + " |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in ev.rows:
        cells = [_md(c) for c in r.cells()]
        cells[0] = f"`{cells[0]}`" if not r.target.implicit else f"`{r.target.metric}` (implicit)"
        cells[-1] = f"{icon[r.verdict]} {cells[-1]}"
        lines.append("| " + " | ".join(cells) + " |")
    if ev.reasons:
        lines += ["", "**Refused:**", *(f"- {_md(r)}" for r in ev.reasons)]
    if ev.notes:
        lines += ["", *(f"> {_md(n)}  " for n in ev.notes)]
    return "\n".join(lines) + "\n"


class CiRun(BaseModel):
    """The GitHub Actions run this process is part of, from its variables (all None outside Actions)."""

    model_config = ConfigDict(extra="ignore")

    actor: str | None = Field(default=None, alias="GITHUB_ACTOR")
    workflow: str | None = Field(default=None, alias="GITHUB_WORKFLOW")
    run_id: str | None = Field(default=None, alias="GITHUB_RUN_ID")
    run_attempt: str | None = Field(default=None, alias="GITHUB_RUN_ATTEMPT")
    repository: str | None = Field(default=None, alias="GITHUB_REPOSITORY")
    server_url: str | None = Field(default=None, alias="GITHUB_SERVER_URL")
    step_summary: str | None = Field(default=None, alias="GITHUB_STEP_SUMMARY")

    @field_validator("*", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: str | None) -> str | None:
        return value or None

    @classmethod
    def of(cls, environ: Mapping[str, str] | None = None) -> CiRun:
        return cls.model_validate(dict(os.environ if environ is None else environ))

    @property
    def run_url(self) -> str | None:
        if not (self.run_id and self.repository):
            return None
        attempt = f"/attempts/{self.run_attempt}" if self.run_attempt not in (None, "1") else ""
        return f"{self.server_url or 'https://github.com'}/{self.repository}/actions/runs/{self.run_id}{attempt}"


def write_job_summary(markdown: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to the GitHub Actions job summary when running in Actions; None elsewhere."""
    if not (path := CiRun.of(environ).step_summary):
        return None
    with open(path, "a", encoding="utf-8") as f:
        f.write(scrub(markdown) + "\n")
    return Path(path)


# ---------------------------------------------------------------- --skip-gate


class Override(Stored, BakeOff):
    """Who skipped the gate (user@host), from where, when (epoch seconds) and why: recorded in the promoted release's
    manifest, as the same fields say who turned a bake off."""

    def line(self) -> str:
        ci = ""
        if self.github_actor or self.github_run_url:
            parts = [p for p in (f"GitHub actor {self.github_actor}" if self.github_actor else "",
                                 self.github_workflow and f"workflow {self.github_workflow!r}",
                                 self.github_run_url or (self.github_run_id and f"run {self.github_run_id}")) if p]
            ci = f" ({', '.join(parts)})"
        return (f"gate skipped by {self.by}{ci} at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.at))}Z: "
                f"{self.reason}")


def skip_override(reason: object, *, environ: Mapping[str, str] | None = None, now: float | None = None) -> Override:
    """The record of `--skip-gate --reason "..."`; a missing or empty reason is refused before anything happens."""
    if reason is None or reason is True:
        raise ConfigError('--skip-gate needs --reason "<why>": the reason is recorded in the release manifest with who '
                          'skipped the gate')
    if not isinstance(reason, str) or not " ".join(reason.split()):
        raise ConfigError('--reason must say why the gate is skipped (recorded in the release manifest); got '
                          f'{reason!r}')
    text = scrub(" ".join(reason.split()))
    if len(text) > MAX_REASON:
        raise ConfigError(f"--reason is {len(text)} characters; allowed: up to {MAX_REASON} (link to an issue for "
                          "more)")
    ci = CiRun.of(environ)
    return Override(reason=text, by=f"{local_user()}@{socket.gethostname()}", at=time.time() if now is None else now,
                    github_actor=ci.actor, github_workflow=ci.workflow, github_run_id=ci.run_id,
                    github_run_url=ci.run_url)


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry and no USER in some CI containers
        return "unknown"


# ---------------------------------------------------------------- the manifest record


class GateRecord(Stored):
    """The promoted release's `gate` field: the verdict, the (compact) measurement, the table as data, or the
    override that skipped it. A rollback entry keeps the one of the release it returns to."""

    verdict: str  # passed | refused | skipped
    override: Override | None = None
    measurement: bench.BenchReport | None = None
    evaluation: GateEvaluation | None = None

    @property
    def skipped(self) -> bool:
        return self.verdict == SKIPPED


def record(*, evaluation: GateEvaluation | None = None, measurement: bench.BenchReport | None = None,
           override: Override | None = None) -> GateRecord:
    """The promoted release's `gate` field (GateRecord)."""
    if override is None and (evaluation is None or measurement is None):
        raise ValueError("a gate record needs an evaluation and its measurement, or an override")
    return GateRecord(verdict=evaluation.verdict if override is None else SKIPPED, override=override,
                      measurement=measurement.compact() if measurement else None, evaluation=evaluation)


# ---------------------------------------------------------------- one promotion


def measure_release(d: Deployment, url: str, *, headers: dict[str, str], where: bench.BenchTarget,
                    targets: Sequence[Target] = (), say=None,
                    progress: bench.Progress = bench.no_progress) -> bench.BenchReport:
    """The recipe's gate workload against `url`, an endpoint serving `d`'s recipe (cold-start wait: a full start)."""
    r = d.recipe
    return measure(url, r.gate_workload, model=r.model, target_concurrency=r.target_concurrency, targets=targets,
                   cold_start_deadline=float(smoketest.deadline_for(d)), label=where.release_id, target=where,
                   headers=headers, say=say, progress=progress)


def check(settings: objectives.Gate, d: Deployment, url: str, current: Release | None, *, headers: dict[str, str],
          where: bench.BenchTarget, title: str, say,
          progress: bench.Progress = bench.no_progress) -> tuple[GateEvaluation, GateRecord]:
    """A promotion's gate: measure the candidate at `url` (the source environment's endpoint, with `headers`, the
    credentials that belong there), hold it to the objectives and to the regression budget against `current` (the
    target's current release, or None), print the table, add it to the job summary; the evaluation and the record."""
    targets = objectives.resolve(settings, d.recipe.target_concurrency)
    measurement = measure_release(d, url, headers=headers, where=where, targets=targets, say=say, progress=progress)
    found = baseline_from(current)
    ev = evaluate(targets, measurement, found[0] if found else None, regression_budget=settings.regression_budget,
                  measured_label=f"{where.release_id} on {measurement.target.where()}",
                  baseline_label=found[1] if found else None)
    say(render_text(ev, title))
    write_job_summary(render_markdown(ev, title))
    return ev, record(evaluation=ev, measurement=measurement)


def skip(override: Override, title: str, *, say) -> GateRecord:
    """`--skip-gate`: say who skipped it and why, add that to the job summary; the record."""
    say(f"{title}: {override.line()}")
    write_job_summary(f"### ⚠️ Promotion gate skipped: {_md(title)}\n\n{_md(override.line())}\n")
    return record(override=override)
