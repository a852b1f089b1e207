"""`invoke check`: fail (exit 1) when prod is not doing what it promised over the last `[sentinel] check_minutes`.

One line per problem, all said before it fails: per recipe, the share of the sentinel's probes within each objective
that applies to a probe (infra/control/attainment.py) against `[sentinel] min_attainment`, the error rate against its
objective, and no record at all (a sentinel not running is a breach of watching, not a pass); and cost drift, what
Modal billed per hour for the current release against the estimate beyond `[costs] mismatch_margin`
(infra/perf/ledger.py `Bill.warnings`). .github/workflows/prod-check.yml runs it on a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from infra.control import attainment, costs
from infra.perf.releases import ReleaseStore
from infra.runtime.deployment import Deployment
from infra.runtime.errors import StageError
from stages.common import Context, StageResult, dry_run, result
from stages.status import billed_in, watch

STAGE = "check"


@dataclass(frozen=True)
class Outcome:
    watched: dict
    breaches: list[str] = field(default_factory=list)
    cost_drift: list[str] = field(default_factory=list)


def run(ctx: Context, d: Deployment) -> StageResult[Outcome]:
    s = ctx.settings.sentinel
    now = ctx.clock()
    start = now - timedelta(minutes=s.check_minutes)
    if done := dry_run(ctx, STAGE, d, f"judge the sentinel's probes of the last {s.check_minutes} min against "
                                      f"min_attainment {s.min_attainment:g} and the bill's drift against the estimate"):
        return done
    ctx.remote.require_credentials()
    w = watch(ctx, d, start, now)
    found = attainment.breaches(w, s.min_attainment)
    drift: list[str] = []
    manifest = ReleaseStore(ctx.remote).read(d)
    hours = max(1, s.check_minutes // 60)
    if manifest.current is not None:
        period = costs.period(f"{hours}h", None, now)
        bill = billed_in(ctx, d, manifest.history, period, costs.rates_for(ctx.settings.costs))
        # Only releases live through at least one whole hour: Modal bills whole hours, and a release deployed minutes
        # before the period ends has a bill and an estimate too small to compare.
        judged = {b.release_id for b in bill.releases if b.live_hours >= 1}
        drift = [f"{d.recipe.name}: cost drift {w_}" for w_ in bill.warnings() if w_.split(":")[0] in judged]
    lines = [f"{d.env}/{d.recipe.name}: check over the last {s.check_minutes} min", *attainment.lines(w)]
    lines += [f"  BREACH {b}" for b in found] + [f"  DRIFT {x}" for x in drift]
    outcome = Outcome(w.to_dict(), found, drift)
    if found or drift:
        ctx.say("\n".join(lines))
        raise StageError(STAGE, f"{d.env}/{d.recipe.name}: {len(found)} breach(es), {len(drift)} cost drift(s): "
                                + "; ".join(found + drift))
    return result(STAGE, d, "ran", "\n".join(lines + ["  ok: every objective attained, the bill within its margin"]),
                  outcome)
