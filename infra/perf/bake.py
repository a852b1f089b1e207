"""The bake: after a promotion, probe the target with the gate workload and judge it window by window.

`run` waits for a first answer (a replica may still be starting: bounded by a full cold start, as the smoke test
is), then sends one request of the recipe's gate workload every `Pace.interval_s` for the bake's minutes, judges
each window of `Pace.window_s` against the objectives that apply to one stream (`objectives_for`), and stops at
the first sustained breach: `Pace.breach_windows` breaching windows in a row. It returns the verdict
(infra/control/bake_policy.py `Bake`); stages/promote.py rolls back on it and records it. Time is read through a
`Clock`, so tests run a ten-minute bake without waiting ten minutes; the requests themselves are real.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from infra.control import bake_policy, costs, objectives
from infra.control.bake_policy import Bake, BakeObjective, BakeWindow
from infra.perf import bench, client, gate
from infra.runtime.deployment import Deployment
from infra.runtime.recipes.base import GateWorkload

# Metrics of all streams together are not a one-stream figure (and goodput needs a level's load): not judged.
NOT_ONE_STREAM = {"output_tokens_per_s", "requests_per_s", "goodput_rps"}


class Clock(Protocol):
    """What the bake reads time from and waits with (tests inject one that moves only when asked)."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


@dataclass(frozen=True)
class Pace:
    """How often to probe and how to judge: the policy's numbers (infra/control/bake_policy.py) unless a test
    asks for fewer requests."""

    interval_s: float = bake_policy.PROBE_INTERVAL_S
    window_s: float = bake_policy.WINDOW_S
    breach_windows: int = bake_policy.BREACH_WINDOWS


def objectives_for(settings: objectives.Gate, target_concurrency: int) -> list[BakeObjective]:
    """The gate's objectives that one stream can be held to: those at level 1 (latencies, per-user speed), and the
    error rate at its strictest limit at any level (0 where none is given, as the gate's implicit one)."""
    targets = objectives.resolve(settings, target_concurrency)
    chosen = [BakeObjective(metric=t.metric, direction=t.spec.limit_key, limit=t.limit) for t in targets
              if t.concurrency == 1 and t.metric not in NOT_ONE_STREAM and t.metric != "error_rate"]
    errors = [t.limit for t in targets if t.metric == "error_rate"]
    chosen.append(BakeObjective(metric="error_rate", direction="max", limit=min(errors, default=0.0)))
    return chosen


def breach_text(o: BakeObjective, value: float) -> str:
    spec = objectives.METRICS[o.metric]
    return f"{o.metric} {spec.format(value)} {'<' if o.direction == 'min' else '>'} {spec.format(o.limit)}"


def misses(o: BakeObjective, value: float | None, judged: bool) -> bool:
    """Whether `value` misses `o` in a window: a thin window's (not `judged`) percentiles never do; errors always."""
    within = value is None or (value >= o.limit if o.direction == "min" else value <= o.limit)
    return not within and (judged or o.metric == "error_rate")


def judge(records: list[bench.Record], objs: Sequence[BakeObjective], start_s: float, end_s: float) -> BakeWindow:
    """One window: every objective read as the gate reads a level (infra/control/objectives.py METRICS). Under
    MIN_ANSWERS answers its figures are shown, not judged (a p90 of two answers is their maximum); errors count."""
    level = bench.aggregate(1, records, [], 0.0, 0.0, 0.0, [], mode="bake")
    ok = sum(r.ok for r in records)
    judged = ok >= bake_policy.MIN_ANSWERS
    values, missed = {}, []
    for o in objs:
        value = objectives.METRICS[o.metric].read(level) if records else None
        values[o.metric] = None if value is None else round(value, 4)
        if misses(o, value, judged):
            missed.append(breach_text(o, value))
    return BakeWindow(start_s=round(start_s, 3), end_s=round(end_s, 3), sent=len(records), ok=ok,
                      failed=len(records) - ok, values=values, breaches=missed, judged=judged)


def sustained(windows: list[BakeWindow], objs: Sequence[BakeObjective], n: int) -> str | None:
    """Why the last `n` windows breach, or None. Each objective missed in all of them is named with its least-bad
    value over those windows ("ttft_p90_ms 612.0 ms > 500.0 ms over 3 windows": every one of them was that bad)."""
    last = windows[-n:]
    if len(last) < n or not all(w.breaches for w in last):
        return None
    reasons = []
    for o in objs:
        values = [w.values.get(o.metric) for w in last]
        if all(misses(o, v, w.judged) for v, w in zip(values, last)):
            reasons.append(breach_text(o, max(values) if o.direction == "min" else min(values)))
    if not reasons:  # a different objective in each window: still a breach in each, named as the last one saw it
        reasons = ["; ".join(last[-1].breaches) + " (a different objective in each)"]
    return f"{', '.join(reasons)} over {n} windows"


def run(url: str, workload: GateWorkload, *, model: str | None, objs: Sequence[BakeObjective], minutes: float,
        cold_start_s: float, headers: Mapping[str, str] | None = None, clock: Clock | None = None,
        pace: Pace = Pace(), say: Callable[[str], None] = print) -> Bake:
    """Bake the endpoint at `url`; the verdict. Never rolls anything back itself. Ctrl-C ends it as `interrupted`."""
    clock = clock or RealClock()
    headers = dict(headers or {})
    w = gate.workload_of(workload, model)
    # A probe that outlasts half a window is an error (timeout), so every window ends with answers to judge.
    timeout = min(workload.timeout, pace.window_s / 2)
    record = Bake(verdict=bake_policy.KEPT, minutes=minutes, interval_s=pace.interval_s, window_s=pace.window_s,
                  breach_windows=pace.breach_windows, objectives=list(objs))
    say(f"bake: {minutes:g} min on {url}: one gate-workload request ({workload.prompt_tokens} prompt tokens, "
        f"{workload.max_tokens} out) every {pace.interval_s:g} s, judged per {pace.window_s:g} s window; "
        f"{pace.breach_windows} breaching windows in a row roll back")
    tags = bench.new_tags()
    try:
        record.cold_start_s = _first_answer(url, w, cold_start_s, headers, say)
    except client.EndpointError as err:
        record.verdict, record.reason = bake_policy.ROLLED_BACK, f"no answer within {cold_start_s:g} s ({err})"
        record.ended_at = time.time()
        return record
    except KeyboardInterrupt:
        return _interrupted(record, "Ctrl-C while waiting for the first answer")
    t0 = clock.now()
    end = t0 + minutes * 60
    start, probes = t0, []  # the open window: when it started, what its probes measured
    next_probe = t0
    try:
        while True:
            now = clock.now()
            if now >= start + pace.window_s or (now >= end and probes):
                closed = judge(probes, objs, start - t0, min(now, start + pace.window_s) - t0)
                record.windows.append(closed)
                say(f"bake: window {len(record.windows)} ({closed.start_s:g}-{closed.end_s:g} s): "
                    f"{closed.ok}/{closed.sent} answered" + (f"; {'; '.join(closed.breaches)}" if closed.breaches
                                                             else "; ok"))
                if reason := sustained(record.windows, objs, pace.breach_windows):
                    record.verdict, record.reason = bake_policy.ROLLED_BACK, reason
                    break
                start, probes = start + pace.window_s, []
                continue
            if now >= end:
                break
            if now >= next_probe:
                probes.append(bench.one_request(url, w, f"bake-{tags()}", timeout=timeout, headers=headers))
                next_probe += pace.interval_s
                continue
            clock.sleep(min(next_probe, start + pace.window_s, end) - now)
    except KeyboardInterrupt:
        return _interrupted(record, f"Ctrl-C after {len(record.windows)} window(s)")
    record.ended_at = time.time()
    return record


def _interrupted(record: Bake, why: str) -> Bake:
    record.verdict, record.reason, record.ended_at = bake_policy.INTERRUPTED, why, time.time()
    return record


def _first_answer(url: str, w: bench.Workload, deadline: float, headers: dict[str, str], say) -> float:
    """Seconds until the endpoint answered one request (503s and refused connections retried until `deadline`)."""
    def retrying(attempt: int, err: client.EndpointError) -> None:
        if attempt == 1 or attempt % 30 == 0:
            say(f"bake: waiting for a first answer from {url} ({err.kind}); up to {deadline:g} s...")

    started = time.monotonic()
    asyncio.run(client.probe(url, w.payload(f"bake-ready-{uuid.uuid4().hex[:8]}", max_tokens=min(w.max_tokens, 16)),
                             deadline_seconds=deadline, headers=headers, on_retry=retrying))
    return round(time.monotonic() - started, 3)


# ---------------------------------------------------------------- what it costs


@dataclass(frozen=True)
class Cost:
    """What a bake asks of the environment, one replica priced at its hourly cost (infra/control/costs.py): the
    requests and tokens it sends, and the replica time it spans, which a warm floor pays for anyway."""

    minutes: float
    requests: int
    output_tokens: int
    replica_usd_per_hour: float
    replica_usd_during: float
    paid_by_warm_floor: bool
    streams: int  # of the replica's target concurrency, the bake uses one

    def text(self) -> str:
        paid = ("already paid: min_containers keeps it warm" if self.paid_by_warm_floor
                else "NOT otherwise paid: this environment scales to zero, and the bake keeps a replica up")
        return (f"{self.requests} requests ({self.output_tokens:,} output tokens), one at a time, on a replica at "
                f"${self.replica_usd_per_hour:,.2f}/h: ${self.replica_usd_during:,.2f} of its time ({paid}), "
                f"1 of its {self.streams} streams at most")


def cost(d: Deployment, minutes: float, hourly: costs.Price, pace: Pace = Pace()) -> Cost:
    """What a bake of `minutes` on the environment of `d` costs, one replica priced at `hourly`."""
    requests = int(minutes * 60 // pace.interval_s)
    return Cost(minutes, requests, requests * d.recipe.gate_workload.max_tokens, round(hourly.usd, 4),
                round(hourly.usd * minutes / 60, 4), d.scaling.min_containers > 0, d.recipe.target_concurrency)


# ---------------------------------------------------------------- rendering


def _header(b: Bake) -> list[str]:
    return ["window", "s", "answered", *(o.metric for o in b.objectives), "verdict"]


def _rows(b: Bake) -> list[list[str]]:
    rows = []
    for i, w in enumerate(b.windows, 1):
        values = [objectives.METRICS[o.metric].format(w.values.get(o.metric)) for o in b.objectives]
        rows.append([str(i), f"{w.start_s:g}-{w.end_s:g}", f"{w.ok}/{w.sent}", *values,
                     "breach: " + "; ".join(w.breaches) if w.breaches else "ok"])
    return rows


def limits_text(b: Bake) -> str:
    return ", ".join(f"{o.metric} {'≥' if o.direction == 'min' else '≤'} {objectives.METRICS[o.metric].format(o.limit)}"
                     for o in b.objectives)


def render_text(b: Bake, title: str) -> str:
    head = {bake_policy.KEPT: "bake KEPT", bake_policy.ROLLED_BACK: "bake ROLLED BACK",
            bake_policy.INTERRUPTED: "bake INTERRUPTED", bake_policy.OFF: "bake OFF"}[b.verdict]
    lines = [f"{head}: {title}"]
    if b.verdict == bake_policy.OFF:
        return "\n".join(lines + [b.line()])
    lines.append(f"objectives (one stream): {limits_text(b)}; {b.breach_windows} breaching windows in a row roll back")
    if b.cold_start_s is not None:
        lines.append(f"first answer after {b.cold_start_s:g} s (not judged)")
    if b.windows:
        lines.append(bench._table(_header(b), _rows(b), right=set(range(len(b.objectives) + 3))))
    if b.reason:
        lines.append(b.line())
    return "\n".join(lines)


def render_markdown(b: Bake, title: str) -> str:
    icon = {bake_policy.KEPT: "✅", bake_policy.ROLLED_BACK: "❌", bake_policy.INTERRUPTED: "⚠️", bake_policy.OFF: "⚠️"}
    lines = [f"### {icon[b.verdict]} Bake {b.verdict}: {gate._md(title)}", ""]
    if b.verdict == bake_policy.OFF:
        return "\n".join(lines + [gate._md(b.line())]) + "\n"
    lines += [gate._md(f"objectives (one stream): {limits_text(b)}; {b.breach_windows} breaching windows in a row "
                       "roll back"), ""]
    if b.windows:
        lines += ["| " + " | ".join(_header(b)) + " |", "|" + "---:|" * (len(b.objectives) + 3) + "---|"]
        lines += ["| " + " | ".join(gate._md(c) for c in row) + " |" for row in _rows(b)]
    if b.reason:
        lines += ["", f"**{gate._md(b.line())}**"]
    return "\n".join(lines) + "\n"
