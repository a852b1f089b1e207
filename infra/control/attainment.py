"""What the sentinel's probes say about a recipe over a window: SLO attainment per objective, errors, percentiles.

Attainment (what the LLM-serving literature calls goodput's share) is the share of probes within an objective: a
probe within `ttft_p90_ms <= 500` is one whose time to first token was at most 500 ms. The probes are one request at
a time, so the objectives that apply are the gate's latency objectives at level 1 (`ttft_*`, `tpot_*`), whatever
percentile they name: the percentile is the gate's way to say how often the limit must hold, which attainment
measures directly. A failed probe is within no latency objective. `error_rate` is the share of failed probes. A
skipped probe (no replica up and `[sentinel] wake = false`) says nothing about speed and counts in none of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime

from infra.control.costs import Shown, instant
from infra.control.objectives import Target
from infra.runtime.errors import ConfigError
from infra.runtime.sentinel import Probe

APPLIES = re.compile(r"(ttft|tpot)_p\d+_ms")
WINDOW_FORMS = "a duration back from now such as 30m, 1h or 7d, or a UTC time such as 2026-12-07T08:00"


class Attainment(Shown):
    """One objective over the window: how many probes were within it, of how many that count."""

    metric: str
    limit: float
    within: int
    of: int

    @property
    def share(self) -> float | None:
        return self.within / self.of if self.of else None


class Watched(Shown):
    """One recipe over one window, from the sentinel's probes."""

    recipe: str
    since: datetime
    until: datetime
    sent: int
    skipped: int
    errors: int
    cold_starts: int
    ttft_ms: dict[str, float | None]  # p50, p90
    tpot_ms: dict[str, float | None]
    objectives: tuple[Attainment, ...]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.sent if self.sent else None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json") | {
            "error_rate": self.error_rate,
            "objectives": [a.model_dump() | {"attainment": a.share} for a in self.objectives]}


def window(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """`--since` (and `--until`) as instants; a window in the future, backwards or empty is one line."""
    end = instant("--until", until, now, WINDOW_FORMS, "mhd") if until else now
    start = instant("--since", since, now, WINDOW_FORMS, "mhd")
    if start >= end:
        raise ConfigError(f"--since {since}: {start:%Y-%m-%d %H:%M} UTC is not before {end:%Y-%m-%d %H:%M} UTC; "
                          f"allowed: {WINDOW_FORMS}")
    return start, end


def applicable(targets: Sequence[Target]) -> list[Target]:
    """The objectives a probe can be held to: latency limits at concurrency 1, and the error rate: the strictest
    `error_rate` limit at any level (a failed request fails at any load), else 0, as the gate holds it."""
    latency = [t for t in targets if t.concurrency == 1 and APPLIES.fullmatch(t.metric)]
    rates = [t for t in targets if t.metric == "error_rate"]
    strictest = min(rates, key=lambda t: t.limit) if rates else Target("error_rate", 1, 0.0, 1, implicit=True)
    return [*latency, strictest]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)


def summarise(recipe: str, probes: Sequence[Probe], targets: Sequence[Target], since: datetime,
              until: datetime) -> Watched:
    sent = [p for p in probes if p.outcome != "skipped"]
    ok = [p for p in sent if p.outcome == "ok"]
    errors = len(sent) - len(ok)
    objectives = []
    for t in applicable(targets):
        if t.metric == "error_rate":
            within = len(ok)  # a probe within "no errors" is one that did not fail; the rate is judged below
            objectives.append(Attainment(metric=t.metric, limit=t.limit, within=within, of=len(sent)))
            continue
        field = "ttft_ms" if t.metric.startswith("ttft") else "tpot_ms"
        within = sum(1 for p in ok if getattr(p, field) is not None and getattr(p, field) <= t.limit)
        counted = sum(1 for p in sent if p.outcome != "ok" or getattr(p, field) is not None)
        objectives.append(Attainment(metric=t.metric, limit=t.limit, within=within, of=counted))
    ttft = [p.ttft_ms for p in ok if p.ttft_ms is not None]
    tpot = [p.tpot_ms for p in ok if p.tpot_ms is not None]
    return Watched(recipe=recipe, since=since, until=until, sent=len(sent), skipped=len(probes) - len(sent),
                   errors=errors, cold_starts=sum(p.cold_start for p in sent),
                   ttft_ms={"p50": percentile(ttft, 50), "p90": percentile(ttft, 90)},
                   tpot_ms={"p50": percentile(tpot, 50), "p90": percentile(tpot, 90)}, objectives=tuple(objectives))


def breaches(w: Watched, min_attainment: float) -> list[str]:
    """Why `invoke check` fails this recipe: each objective below `min_attainment`, the error rate above its limit,
    or no record at all (the sentinel is not running)."""
    if w.sent + w.skipped == 0:
        return [f"{w.recipe}: no sentinel probe recorded from {w.since:%Y-%m-%d %H:%M} to {w.until:%H:%M} UTC: is the "
                "sentinel deployed and running (`invoke sentinel --env ENV`)?"]
    out = []
    for a in w.objectives:
        if a.metric == "error_rate":
            rate = w.error_rate
            if rate is not None and rate > a.limit:
                out.append(f"{w.recipe}: error rate {rate * 100:.1f}% ({w.errors} of {w.sent} probes) > "
                           f"{a.limit * 100:g}%")
        elif a.share is not None and a.share < min_attainment:
            out.append(f"{w.recipe}: {a.metric} <= {a.limit:g} attained by {a.share * 100:.1f}% of probes "
                       f"({a.within} of {a.of}) < {min_attainment * 100:g}% (sentinel.min_attainment)")
    return out


def lines(w: Watched) -> list[str]:
    """`invoke status --since`'s section for one recipe."""
    head = (f"  sentinel {w.since:%Y-%m-%d %H:%M} to {w.until:%H:%M} UTC: {w.sent} probe(s)"
            + (f", {w.skipped} skipped (no replica up, not woken)" if w.skipped else ""))
    if not w.sent:
        return [head]

    def ms(d: dict[str, float | None]) -> str:
        return " / ".join("-" if d[k] is None else f"{d[k]:.1f}" for k in ("p50", "p90"))

    rate = w.error_rate or 0.0
    out = [head + f", error rate {rate * 100:.1f}%, cold starts met {w.cold_starts}",
           f"    TTFT p50/p90 {ms(w.ttft_ms)} ms, TPOT p50/p90 {ms(w.tpot_ms)} ms"]
    for a in w.objectives:
        if a.metric == "error_rate":
            out.append(f"    error_rate <= {a.limit * 100:g}%: {rate * 100:.1f}%")
        else:
            share = "-" if a.share is None else f"{a.share * 100:.1f}%"
            out.append(f"    {a.metric} <= {a.limit:g}: attained by {share} ({a.within} of {a.of})")
    return out
