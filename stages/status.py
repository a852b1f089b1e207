"""`invoke status`: the current release, the ones before it, drift between what runs and what `plan` would deploy, and
the release ledger: per release, where it came from and what it measured and costs (infra/perf/ledger.py); `Options`
adds the sentinel's window, the bill and schedule advice. It also keeps the live rates current: with credentials in
hand, it refreshes the cached rates when a day old, so `plan` (which never fetches) prices with them afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from infra.control import advice, attainment, coldstarts, costs, objectives, revisions
from infra.perf import ledger
from infra.perf.releases import Release, ReleaseStore
from infra.runtime import schedule, sentinel, spec
from infra.runtime.deployment import Deployment
from infra.runtime.recipes.base import COMMIT_RE
from infra.runtime.remote import BillingUnavailable
from stages.common import Context, StageResult, result

STAGE = "status"
SHOWN_HISTORY = 5


@dataclass(frozen=True)
class Options:
    cost: bool = False  # also what Modal billed in the period, per release
    since: str | None = None  # the period's start: 7d, 36h, 2026-11-01 (default: 7 days back)
    until: str | None = None  # its end (default: now)
    advise: bool = False  # propose [[scaling.schedule]] windows from the bill's hourly history
    weeks: int = advice.DEFAULT_WEEKS  # the history --advise reads, in whole weeks


@dataclass(frozen=True)
class Status:
    current: dict | None
    history: list[dict]
    drift: list[str]
    warm_floor: dict | None = None  # the autoscaler settings in force, who set them, the next scheduled change
    ledger: list[dict] = dataclasses.field(default_factory=list)  # ledger.entry per release, newest first
    rates: dict | None = None  # the rates the ledger priced with, and where they came from
    bill: dict | None = None  # --cost: ledger.Bill per release in the period
    # release_id -> its server containers' recorded starts (infra/runtime/timeline.py records), newest first
    cold_starts: dict = dataclasses.field(default_factory=dict)
    sentinel: dict | None = None  # --since: attainment.Watched of the window
    bake: dict | None = None  # the bake's verdict on the current release, when one is recorded
    advice: dict | None = None  # --advise: advice.Advice
    stopped: dict | None = None  # `invoke stop` took its apps down (releases.Stopped), until the next release


WHO = {
    "schedule": "set by the schedule",
    "deploy": "the deployed scaling (no schedule, or it was not applied after the last deploy)",
    "override": "a run-time override (`invoke scale` or Modal's dashboard)",
}


def warm_floor(ctx: Context, d: Deployment) -> tuple[list[str], dict | None]:
    """The warm floor in force on Modal now, who set it, and when the schedule next changes it."""
    in_force = ctx.remote.autoscaler(d)
    if in_force is None:
        return [], None
    now = ctx.clock()
    windows, base = d.scaling.schedule, d.scaling
    who = schedule.who_set(now, windows, base, **in_force)
    wanted = schedule.floor_at(now, windows, base)
    upcoming = schedule.next_change(now, windows, base)
    shown = schedule.Floor(**in_force).describe()
    lines = [f"  warm floor: {shown}: {WHO[who]}" + (f" ({wanted.cause})" if who == "schedule" else "")]
    if who != "schedule" and windows:
        lines.append(f"    the schedule wants {wanted.describe()} ({wanted.cause}) now")
    if upcoming:
        lines.append(f"    next scheduled change: {upcoming.describe()}")
    return lines, {**in_force, "set_by": who, "schedule_wants": wanted.autoscaler_settings() if windows else None,
                   "next_change": upcoming.when.isoformat() if upcoming else None}


def flatten(data: object, prefix: str = "") -> dict[str, object]:
    """{"recipe": {"tp_size": 2}} -> {"recipe.tp_size": 2}: drift is reported per setting, by its dotted name."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, object] = {}
    for key, value in data.items():
        out |= flatten(value, f"{prefix}.{key}" if prefix else key)
    return out


def drift(deployed: dict, planned: Deployment) -> list[str]:
    """Settings whose deployed value differs from what would be deployed now: 'name: deployed -> planned'."""
    have, want = flatten(deployed), flatten(json.loads(planned.to_json()))  # the manifest's form: tuples became lists
    return [f"{key}: {have.get(key)!r} -> {want.get(key)!r}" for key in sorted(set(have) | set(want))
            if have.get(key) != want.get(key)]


def planned_now(ctx: Context, d: Deployment, current) -> Deployment:
    """What `plan` would deploy now. Unpinned revisions follow the last download here, else what runs: not drift."""
    known, r = revisions.recorded(ctx.state(d)), d.recipe
    model = None if COMMIT_RE.match(r.model_revision) else known.get(r.model) or current.model_revision
    draft = None
    if r.draft_model and not COMMIT_RE.match(r.draft_revision or ""):
        draft = known.get(r.draft_model) or current.draft_revision
    return d.with_recipe(r.with_revisions(model_revision=model, draft_revision=draft))


def refresh_rates(ctx: Context, d: Deployment, *, strict: bool) -> str | None:
    """The live rates into the cache when it is a day old (credentials checked); a line when fetched or not.

    Modal refusing the call (a plan or role without billing access) is a warning: the ledger prices with the cache or
    the table and says which. An answer that lacks a rate this deployment needs (and the settings do not give), or
    that cannot be read, caches nothing: with `--cost` (`strict`) it is the error, naming the rate; without, a warning,
    so a plain `status` (the promotion workflow's) does not fail on billing data.
    """
    overridden = set(costs.rates_for(ctx.settings.costs).overrides)
    needed = [r for r in ("cpu", "memory", costs.gpu_resource(d.recipe.gpu_type)) if r not in overridden]
    try:
        return costs.refresh(ctx.remote.billing_rates, ctx.clock(), needed)
    except costs.CostError as err:
        if strict:
            raise
        problem = err
    except BillingUnavailable as err:
        problem = err
    return (f"warning: rates not refreshed ({problem}); pricing with the "
            f"{costs.rates_for(ctx.settings.costs).base_source}")


def run(ctx: Context, d: Deployment, options: Options = Options()) -> StageResult[Status]:
    period = costs.period(options.since, options.until, ctx.clock()) if options.cost else None
    if not options.cost and options.until and not options.since:
        raise costs.CostError("--until ends the window of --since (or the period of --cost): add --since, or leave it "
                              "out")
    window = attainment.window(options.since, options.until, ctx.clock()) if options.since else None
    ctx.remote.require_credentials()
    manifest = ReleaseStore(ctx.remote).read(d)
    # Advice first: a refusal (too little history) leaves nothing behind, not even a refreshed rates cache.
    advised = advise(ctx, d, manifest.history, costs.rates_for(ctx.settings.costs), options.weeks) \
        if options.advise else None
    if line := refresh_rates(ctx, d, strict=options.cost):
        ctx.say(line)
    rates = costs.rates_for(ctx.settings.costs)
    current = manifest.current
    if current is None:
        return result(STAGE, d, "ran", "\n".join([f"{d.env}/{d.recipe.name}: nothing deployed yet",
                                                  *(advised.lines() if advised else [])]),
                      Status(None, [], [], advice=advised.to_dict() if advised else None))
    changes = drift(current.deployment.to_dict(), planned_now(ctx, d, current))
    earlier = manifest.history[1 : 1 + SHOWN_HISTORY]
    lines = [f"{d.env}/{d.recipe.name}: current {current.summary()}", f"  url: {current.url}"]
    if stopped := manifest.stopped:
        lines.append(f"  STOPPED at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(stopped.at))}Z by {stopped.by} "
                     f"({', '.join(stopped.apps)}): the endpoint does not answer; "
                     f"`invoke deploy --env {d.env} --recipe {d.recipe.name}` starts it again")
    lines += [f"  before: {release.summary()}" for release in earlier]
    lines.append("  drift: none (plan matches what runs)" if not changes
                 else f"  drift: {len(changes)} setting(s) differ")
    lines += [f"    {c}" for c in changes]
    floor_lines, floor = warm_floor(ctx, current.deployment)
    lines += floor_lines
    shown = [current, *earlier]
    recorded, start_lines, start_warnings = cold_starts(ctx, d, shown)
    starts = coldstarts.summaries(recorded, shown)
    lines += start_lines
    rows = [(r, ledger.priced(r, rates)) for r in shown]
    lines += [f"  ledger (newest first; $/1M out at one busy replica's hourly cost, rates: {rates.base_source}):",
              *(f"    {line}" for line in ledger.render_table(rows, cold_starts=starts).splitlines())]
    lines += [f"    {r.release_id}: {r.gate.override.line()}" for r, _ in rows if r.gate and r.gate.override]
    lines += [f"    {r.release_id}: {r.bake.line()}" for r, _ in rows if r.bake]  # the bake's verdict, and why
    lines += start_warnings
    billed = None
    if period is not None:
        billed = billed_in(ctx, d, manifest.history, period, rates)
        lines += ["  " + billed.lines()[0], *(f"    {line}" for line in billed.lines()[1:])]
    watched = bake = None
    if window is not None:
        watched = watch(ctx, d, *window)
        bake = bake_verdict(current)
        lines += attainment.lines(watched)
        lines.append(f"  bake of {current.release_id}: " + (current.bake.line() if bake else "no bake recorded"))
    if advised:
        lines += advised.lines()
    return result(STAGE, d, "ran", "\n".join(lines), Status(
        current.model_dump(mode="json"), [r.model_dump(mode="json") for r in earlier], changes, floor,
        [ledger.entry(r, perf, cold_start=starts.get(r.release_id)) for r, perf in rows], rates.shown().to_data(),
        billed.to_dict() if billed else None, recorded, watched.to_dict() if watched else None, bake,
        advised.to_dict() if advised else None, stopped.model_dump(mode="json") if stopped else None))


def watch(ctx: Context, d: Deployment, start, end) -> attainment.Watched:
    """The recipe's sentinel probes in [start, end), summarised against its gate's objectives."""
    gate = objectives.effective(ctx.settings.gate, ctx.settings.knobs(d.recipe.name).gate)
    targets = objectives.resolve(gate, d.recipe.target_concurrency)
    probes = sentinel.read_probes(ctx.remote, d.modal.environment, d.recipe.name, start.timestamp(), end.timestamp(),
                                  ctx.settings.sentinel.slots, warn=ctx.say)
    return attainment.summarise(d.recipe.name, probes, targets, start, end)


def bake_verdict(release: Release) -> dict | None:
    """The bake's verdict on `release` as recorded in its manifest entry (stages/promote.py's bake), or None."""
    return release.bake.model_dump(mode="json") | {"line": release.bake.line()} if release.bake else None


def advise(ctx: Context, d: Deployment, history: list, rates: costs.Rates, weeks: int) -> advice.Advice:
    """Advice from the last `weeks` whole weeks of the server's hourly bill and its recorded starts."""
    since, until = advice.history_period(ctx.clock(), weeks)
    rows = costs.bill_rows(ctx.remote.billing_report(d.modal.environment, since, until, spec.TAG_NAMES))
    starts = coldstarts.read(ctx.remote, d.modal.environment, history)
    started = [r.started_at for records in starts.values() for r in records if r.started_at]
    replica = costs.price(costs.Container.of(spec.server(d)), rates)
    return advice.advise(rows, started, recipe=d.recipe.name, env=d.env, replica_usd=replica.usd, now=ctx.clock(),
                         weeks=weeks)


def billed_in(ctx: Context, d: Deployment, history: list, period: costs.Period, rates: costs.Rates) -> ledger.Bill:
    """Modal's billing report for the period, attributed to this recipe's releases by their apps' tags."""
    rows = costs.bill_rows(ctx.remote.billing_report(d.modal.environment, period.start, period.end, spec.TAG_NAMES))
    return ledger.bill(history, rows, period, env=d.env, recipe=d.recipe.name,
                       app_names=(d.app_name, d.jobs_app_name, d.builds_app_name), rates=rates,
                       margin=ctx.settings.costs.mismatch_margin, now=ctx.clock())


def cold_starts(ctx: Context, d: Deployment, releases: list) -> tuple[dict, list[str], list[str]]:
    """The releases' recorded starts, the status lines about them and the warnings; never fails the status."""
    try:
        recorded = coldstarts.read(ctx.remote, d.modal.environment, releases)
    except Exception as err:  # noqa: BLE001 - the rest of the status still holds
        return {}, [f"  cold starts: could not be read ({type(err).__name__}: {err})"], []
    lines, warnings = coldstarts.status_lines(releases, recorded, coldstarts.summaries(recorded, releases),
                                              d_env=d.env, recipe=d.recipe.name)
    return recorded, lines, warnings
