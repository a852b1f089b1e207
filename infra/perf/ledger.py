"""The release ledger: what each release measured, and what its output tokens cost.

A release (infra/perf/releases.py) carries up to two compact bench reports of its recipe's gate workload: its
gate's `measurement`, taken on the source environment before it was promoted, and its own `measurement`, taken on
its environment after it went live (`record_baseline`). `performance` summarises either and prices its output: a
replica costs `hourly_usd` (infra/control/costs.py, as Modal bills it) and at the recipe's target concurrency
(what Modal routes to one replica) produces the measured output tokens/s, so

    USD per million output tokens = hourly_usd / (tokens/s × 3600) × 10⁶,

the price of a busy replica (idle warm ones cost more per token: `plan` shows their standing cost). `bill` sets
what Modal billed for each release beside that estimate; `compare_reports` puts two recorded releases (`labelled`)
through `bench.compare`, as `invoke bench --compare` does two files.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from infra.control import bake_policy, costs
from infra.control.objectives import METRICS
from infra.perf import bench
from infra.perf.bench import BenchReport, Comparison
from infra.perf.releases import Release
from infra.runtime import schedule
from infra.runtime.errors import ConfigError
from infra.runtime.model import Stored
from infra.runtime.timeline import StartSummary

# infra/releases.new_release_id: r<UTC date>-<UTC time>-<6 hex> (tests/test_ledger.py keeps the two in step).
RELEASE_ID_RE = re.compile(r"r\d{8}-\d{6}-[0-9a-f]{6}")
FIGURES = ("ttft_p90_ms", "tpot_p50_ms", "output_tokens_per_s", "error_rate")  # what a ledger shows per level


def is_release_id(text: str) -> bool:
    return bool(RELEASE_ID_RE.fullmatch(text.strip()))


def measurement_of(release: Release) -> tuple[BenchReport, str] | None:
    """The release's measurement for the ledger, and where it was taken: its own environment's, else its gate's."""
    if own := release.measurement:
        return own, f"on {own.target.where()}"
    if release.gate and (gated := release.gate.measurement):
        return gated, f"gate on {gated.target.where()}"
    return None


def container_of(release: Release) -> costs.Container:
    """What Modal billed one of the release's server containers for: its GPUs, CPU and memory requests (Modal's
    defaults where the recipe made none, as in releases recorded before recipes did) and its region."""
    r, placement = release.deployment.recipe, release.deployment.placement
    return costs.Container.of({"gpu": r.gpu, "cpu": r.cpu, "memory": r.memory,
                               "compute_region": placement.compute_region})


# ---------------------------------------------------------------- cost and summary


def cost_per_million_output_tokens(output_tokens_per_s: float | None, *, hourly_usd: float) -> float | None:
    """USD per 10⁶ output tokens for a replica costing `hourly_usd` and producing this many tokens/s; None without
    throughput."""
    if not output_tokens_per_s or output_tokens_per_s <= 0:
        return None
    return hourly_usd / (output_tokens_per_s * costs.SECONDS_PER_HOUR) * 1e6


class LevelFigures(Stored):
    """What a ledger shows of one level: the gate's metrics (infra/control/objectives.py METRICS) of FIGURES."""

    concurrency: int
    sent: int
    ttft_p90_ms: float | None
    tpot_p50_ms: float | None
    output_tokens_per_s: float | None
    error_rate: float | None

    @property
    def failed(self) -> int:
        return round((self.error_rate or 0) * self.sent)


@dataclass(frozen=True)
class Performance:
    """One measurement of one release, summarised and priced."""

    measured_on: str  # "gate on staging", "on prod"
    created: str | None
    target_concurrency: int
    levels: tuple[LevelFigures, ...]
    hourly: costs.Price  # one replica per hour, as Modal bills it

    def value(self, metric: str, concurrency: int) -> float | None:
        lv = next((lv for lv in self.levels if lv.concurrency == concurrency), None)
        return getattr(lv, metric) if lv else None

    @property
    def output_tokens_per_s(self) -> float | None:
        return self.value("output_tokens_per_s", self.target_concurrency)

    @property
    def usd_per_million_output_tokens(self) -> float | None:
        return cost_per_million_output_tokens(self.output_tokens_per_s, hourly_usd=self.hourly.usd)

    def errors_text(self) -> str:
        return f"{sum(lv.failed for lv in self.levels)}/{sum(lv.sent for lv in self.levels)}"

    def cost_text(self) -> str:
        usd = self.usd_per_million_output_tokens
        hardware = f"{self.hourly.container.describe()} at ${self.hourly.usd:.2f}/h"
        if usd is None:
            return f"cost unknown ({hardware}, no throughput)"
        return f"${usd:.2f} per 1M output tokens ({hardware})"

    def line(self) -> str:
        """One line for `invoke status`: latency at 1 and at the target, throughput, errors, cost."""
        t = self.target_concurrency
        levels = sorted({1, t})

        def per_level(metric: str) -> str:
            return " / ".join(f"{METRICS[metric].format(self.value(metric, c))} @{c}" for c in levels)

        return (f"TTFT p90 {per_level('ttft_p90_ms')}; TPOT p50 {per_level('tpot_p50_ms')}; "
                f"{METRICS['output_tokens_per_s'].format(self.output_tokens_per_s)} @{t}; errors {self.errors_text()}; "
                f"{self.cost_text()} [{self.measured_on}]")

    def to_dict(self) -> dict:
        return {
            "measured_on": self.measured_on,
            "created": self.created,
            "target_concurrency": self.target_concurrency,
            "levels": [lv.to_data() for lv in self.levels],
            "gpu_type": self.hourly.container.gpu_type,
            "gpu_count": self.hourly.container.gpu_count,
            "replica": self.hourly.to_data(),
            "usd_per_replica_hour": round(self.hourly.usd, 4),
            "output_tokens_per_s": self.output_tokens_per_s,
            "usd_per_million_output_tokens": bench._round(self.usd_per_million_output_tokens, 4),
        }


def performance(measurement: BenchReport, *, target_concurrency: int, hourly: costs.Price,
                measured_on: str | None = None) -> Performance:
    """Summarise a bench report (full or compact), priced at `hourly`, one replica's cost (infra/control/costs.py)."""
    levels = tuple(LevelFigures(concurrency=lv.concurrency, sent=lv.requests.sent,
                                **{m: METRICS[m].read(lv) for m in FIGURES})
                   for lv in sorted(measurement.levels, key=lambda lv: lv.concurrency))
    return Performance(measured_on or f"on {measurement.target.where()}", measurement.created, target_concurrency,
                       levels, hourly)


def priced(release: Release, rates: costs.Rates) -> Performance | None:
    """The release's measurement summarised and priced at `rates` for the containers it ran, or None if unmeasured."""
    found = measurement_of(release)
    if found is None:
        return None
    return performance(found[0], target_concurrency=release.deployment.recipe.target_concurrency,
                       hourly=costs.price(container_of(release), rates), measured_on=found[1])


# ---------------------------------------------------------------- the ledger of an environment


def how(release: Release) -> str:
    """How a release got where it is: deploy, promote from staging (gate passed / skipped), rollback to vN."""
    kind = release.kind
    text = f"{kind} from {release.promoted_from.env}" if release.promoted_from else kind
    if kind == "rollback" and release.rolled_back_to:
        text += f" to v{release.rolled_back_to}"
    if release.gate and kind == "promote":
        text += ", gate skipped" if release.gate.skipped else f", gate {release.gate.verdict}"
    if (baked := release.bake) and baked.verdict != bake_policy.OFF:  # off: who and why are on their own line
        text += ", rolled back by bake" if baked.verdict == bake_policy.ROLLED_BACK else f", bake {baked.verdict}"
    return text


def entry(release: Release, perf: Performance | None, cold_start: StartSummary | None = None) -> dict:
    """One ledger row as data (`invoke status --json`); `cold_start` is its starts' summary
    (infra/control/coldstarts.py)."""
    gate = release.gate
    return {
        "release_id": release.release_id,
        "version": release.version,
        "how": how(release),
        "deployed_at": release.deployed_at,
        "deployed_by": release.deployed_by,
        "commit": release.commit,
        "dirty": release.dirty,
        "image": release.image,
        "model_revision": release.model_revision,
        "draft_revision": release.draft_revision,
        "smoke_passed": release.smoke.passed if release.smoke else None,
        "gate": gate.verdict if gate else None,
        "gate_override": gate.override.to_data() if gate and gate.override else None,
        "bake": release.bake.model_dump(mode="json") if release.bake else None,
        "performance": perf.to_dict() if perf else None,
        "cold_start": cold_start.to_data() if cold_start else None,
    }


def _short(text: str | None, n: int = 8) -> str:
    return "-" if not text else text[:n]


def cold_start_text(summary: StartSummary | None) -> str:
    """'94.7/127.5 (3)': median and worst seconds from container start to ready, and how many starts ready."""
    if not summary or summary.median_s is None:
        return "-"
    return f"{summary.median_s:.1f}/{summary.worst_s:.1f} ({summary.ready})"


def render_table(rows: Iterable[tuple[Release, Performance | None]],
                 cold_starts: Mapping[str, StartSummary] | None = None) -> str:
    """The ledger as a table, newest first: where each release came from, its cold starts (median/worst seconds
    from container start to ready, and how many), and what it measured and cost."""
    header = ["release", "v", "how", "when (UTC)", "commit", "image", "model", "draft", "smoke",
              "cold start s med/worst (n)",
              "TTFT p90 ms 1/T", "TPOT p50 ms 1/T", "tok/s @T", "errors", "$/1M out", "measured"]
    cold_starts = cold_starts or {}
    body = []
    for release, perf in rows:
        smoke, at = release.smoke, release.deployed_at
        cells = [
            release.release_id,
            f"v{release.version}" if release.version else "v?",
            how(release),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)) if at else "-",
            _short(release.commit, 12) + ("-dirty" if release.dirty else ""),
            release.image.rsplit(":", 1)[-1] if release.image else "-",  # its tag
            _short(release.model_revision),
            _short(release.draft_revision),
            "-" if not smoke else ("passed" if smoke.passed else "FAILED"),
            cold_start_text(cold_starts.get(release.release_id) or release.cold_starts),
        ]
        if perf is None:
            cells += ["-", "-", "-", "-", "-", "not measured"]
        else:
            t = perf.target_concurrency

            def pair(metric: str, digits: int) -> str:
                return "/".join(bench._num(perf.value(metric, c), 1, digits) for c in (1, t))

            usd = perf.usd_per_million_output_tokens
            cells += [pair("ttft_p90_ms", 1), pair("tpot_p50_ms", 2), bench._num(perf.output_tokens_per_s, 1, 1),
                      perf.errors_text(), "-" if usd is None else f"${usd:.2f}", perf.measured_on]
        body.append(cells)
    return bench._table(header, body, right={1, 9, 10, 11, 12, 13, 14})


# ---------------------------------------------------------------- what Modal billed, per release


@dataclass(frozen=True)
class Billed:
    """One release's share of a period's bill, beside what the cost model expected of it."""

    release_id: str
    version: int | None
    tag: str | None
    live_hours: float  # the hours of the period this release was the live one
    billed_usd: float
    by_resource: Mapping[str, float]
    replica: costs.Price  # one replica per hour at today's rates
    warm_replica_hours: float  # what its warm floor kept running meanwhile
    output_tokens_per_s: float | None  # measured at the target concurrency (its gate or its own measurement)

    @property
    def estimated_usd(self) -> float:
        """The standing cost of its warm floor over those hours: what it costs when nobody calls it."""
        return self.replica.usd * self.warm_replica_hours

    @property
    def billed_per_hour(self) -> float | None:
        return self.billed_usd / self.live_hours if self.live_hours else None

    @property
    def difference(self) -> float | None:
        """(billed - estimated) / estimated; None when nothing was estimated."""
        return (self.billed_usd - self.estimated_usd) / self.estimated_usd if self.estimated_usd else None

    @property
    def usd_per_million_billed(self) -> float | None:
        """$/1M output tokens at the measured throughput, with the billed hourly cost instead of the model's."""
        per_hour = self.billed_per_hour
        return cost_per_million_output_tokens(self.output_tokens_per_s, hourly_usd=per_hour) if per_hour else None

    def to_dict(self) -> dict:
        return {"release_id": self.release_id, "version": self.version, "tag": self.tag,
                "live_hours": round(self.live_hours, 4), "billed_usd": round(self.billed_usd, 4),
                "billed_by_resource": {k: round(v, 4) for k, v in sorted(self.by_resource.items())},
                "estimated_usd": round(self.estimated_usd, 4), "warm_replica_hours": round(self.warm_replica_hours, 4),
                "usd_per_replica_hour": round(self.replica.usd, 4),
                "billed_usd_per_hour": bench._round(self.billed_per_hour, 4),
                "difference": bench._round(self.difference, 4), "output_tokens_per_s": self.output_tokens_per_s,
                "usd_per_million_output_tokens_billed": bench._round(self.usd_per_million_billed, 4)}


@dataclass(frozen=True)
class Bill:
    """A period's bill for one recipe in one environment: per release, the jobs, and what no release explains."""

    period: costs.Period
    releases: tuple[Billed, ...]
    jobs_usd: float  # the download and compile jobs' app
    unattributed_usd: float  # server hours before the oldest recorded release
    margin: float
    notes: tuple[str, ...]
    builds_usd: float = 0.0  # the image builder's app (`invoke build`, <app>-builds)

    @property
    def billed_usd(self) -> float:
        return sum(b.billed_usd for b in self.releases) + self.jobs_usd + self.builds_usd + self.unattributed_usd

    def warnings(self) -> list[str]:
        """Each release whose bill and estimate differ by more than the margin, and why that may be."""
        out = []
        for b in self.releases:
            if b.difference is None:
                if b.billed_usd >= 0.01:
                    out.append(f"{b.release_id}: billed ${b.billed_usd:,.2f} where its warm floor was 0 (nothing "
                               "estimated): all of it is usage, replicas Modal started for traffic")
            elif abs(b.difference) > self.margin:
                why = ("replicas beyond the warm floor for traffic, use above the cpu/memory requests, or rates above "
                       "the model's" if b.difference > 0 else
                       "fewer warm replicas than the floor (an `invoke scale` override), or rates below the model's")
                out.append(f"{b.release_id}: billed ${b.billed_usd:,.2f} is {b.difference * 100:+.1f}% against the "
                           f"estimated ${b.estimated_usd:,.2f}, beyond the {self.margin * 100:g}% margin "
                           f"(costs.mismatch_margin): {why}")
        return out

    def lines(self) -> list[str]:
        header = ["release", "v", "commit", "live h", "billed", "estimated", "diff", "billed $/h", "replica $/h",
                  "tok/s @T", "$/1M out billed"]
        body = [[b.release_id, f"v{b.version}" if b.version else "v?", b.tag or "-", f"{b.live_hours:.1f}",
                 f"${b.billed_usd:,.2f}", f"${b.estimated_usd:,.2f}",
                 "-" if b.difference is None else f"{b.difference * 100:+.1f}%",
                 "-" if b.billed_per_hour is None else f"${b.billed_per_hour:,.2f}", f"${b.replica.usd:,.2f}",
                 bench._num(b.output_tokens_per_s, 1, 1),
                 "-" if b.usd_per_million_billed is None else f"${b.usd_per_million_billed:,.2f}"]
                for b in self.releases]
        out = [f"billed {self.period.describe()}: ${self.billed_usd:,.2f} (Modal's billing report, hourly, by the "
               f"apps' tags; estimated: the warm floor at the model's hourly cost, margin {self.margin * 100:g}%)",
               *bench._table(header, body, right={3, 4, 5, 6, 7, 8, 9, 10}).splitlines()]
        if self.jobs_usd:
            out.append(f"jobs app (download, compile): ${self.jobs_usd:,.2f}")
        if self.builds_usd:
            out.append(f"image builder app (build): ${self.builds_usd:,.2f}")
        if self.unattributed_usd:
            out.append(f"server hours before the oldest recorded release: ${self.unattributed_usd:,.2f}")
        out += list(self.notes)
        out += [f"WARNING: {w}" for w in self.warnings()]
        return out

    def to_dict(self) -> dict:
        return {"period": {"start": self.period.start.isoformat(), "end": self.period.end.isoformat()},
                "billed_usd": round(self.billed_usd, 4), "releases": [b.to_dict() for b in self.releases],
                "jobs_usd": round(self.jobs_usd, 4), "builds_usd": round(self.builds_usd, 4),
                "unattributed_usd": round(self.unattributed_usd, 4),
                "margin": self.margin, "notes": list(self.notes), "warnings": self.warnings()}


class AppTags(BaseModel):
    """The tags infra/runtime/spec.py `tags` puts on a recipe's apps, as Modal's billing rows carry them back."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    env: str | None = None
    recipe: str | None = None
    role: str | None = None  # "server", "jobs", "builds"
    commit: str | None = None

    @classmethod
    def of(cls, row: costs.BillRow) -> AppTags:
        return cls.model_validate(dict(row.tags))

    def names(self, env: str, recipe: str) -> bool:
        return self.env == env and self.recipe == recipe


def bill(history: Iterable[Release], rows: Iterable[costs.BillRow], period: costs.Period, *, env: str, recipe: str,
         app_names: Iterable[str], rates: costs.Rates, margin: float, now: datetime) -> Bill:
    """Modal's billing rows for one Modal Environment, attributed to one recipe's releases (newest first).

    A row is the recipe's when its App carries the recipe's tags (infra/runtime/spec.py `tags`): the server's rows go to
    the release that was live in that hour (each release runs from its deploy to the next one's; an hour that holds a
    deploy is split by time), the jobs' and the image builder's rows are summed apart. The commit tag checks the
    attribution: a row whose commit no release of its hour deployed is said. Rows of the recipe's apps without tags
    (deployed before tags were set) cannot be attributed: when there are only such rows, that is an error. Rows with a
    negative cost are left out and named (`_usage_only`)."""
    history = list(history)
    app_names = set(app_names)
    rows, notes = _usage_only(list(rows), env, recipe, app_names)
    ours = [r for r in rows if AppTags.of(r).names(env, recipe)]
    untagged = [r for r in rows if r.description in app_names and not AppTags.of(r).recipe]
    if untagged and not ours:
        raise costs.CostError(
            f"Modal's billing report for {period.describe()} has {len(untagged)} row(s) of {env}/{recipe}'s apps and "
            f"none carries its tags (env, recipe, role): they were deployed before the apps were tagged; deploy again "
            f"(`invoke deploy --env {env} --recipe {recipe}`) and bill a period after it")
    notes += [f"{len(untagged)} untagged row(s) of these apps (${sum(r.usd for r in untagged):,.2f}) left out: "
              "deployed before the apps were tagged"] if untagged else []
    windows = _live_windows(history, period, now)
    shares = dict.fromkeys(range(len(history)), 0.0)  # release index -> its usd
    resources: dict[int, dict[str, float]] = {i: {} for i in range(len(history))}
    jobs = builds = unattributed = 0.0
    foreign_commits = 0
    for row in ours:
        tags = AppTags.of(row)
        if tags.role == "jobs":
            jobs += row.usd
            continue
        if tags.role == "builds":
            builds += row.usd
            continue
        hour = (row.start, row.start + timedelta(hours=1))
        overlaps = {i: _overlap(hour, w) for i, w in windows.items()}
        overlaps = {i: o for i, o in overlaps.items() if o > 0}
        if not overlaps:
            unattributed += row.usd
            continue
        if tags.commit and tags.commit not in {history[i].tag for i in overlaps}:
            foreign_commits += 1
        total = sum(overlaps.values())
        for i, o in overlaps.items():
            shares[i] += row.usd * o / total
            for name, usd in row.by_resource.items():
                resources[i][name] = resources[i].get(name, 0.0) + usd * o / total
    if foreign_commits:
        notes.append(f"{foreign_commits} hour(s) billed under a commit tag no release of that hour recorded (a deploy "
                     "outside `invoke deploy`?): attributed by time")
    billed = []
    for i, window in windows.items():
        release = history[i]
        perf = priced(release, rates)  # priced at the same rates: its replica's hourly cost is the one to compare with
        billed.append(Billed(
            release.release_id, release.version, release.tag,
            (window[1] - window[0]).total_seconds() / costs.SECONDS_PER_HOUR, shares[i], resources[i],
            perf.hourly if perf else costs.price(container_of(release), rates), _warm_replica_hours(release, window),
            perf.output_tokens_per_s if perf else None))
    return Bill(period, tuple(billed), jobs, unattributed, margin, tuple(notes), builds)


def _usage_only(rows: list[costs.BillRow], env: str, recipe: str,
                app_names: set[str]) -> tuple[list[costs.BillRow], list[str]]:
    """The rows with a usable cost, and a note naming the others. Modal bills usage by the hour, which is never
    negative: a negative (or not finite) cost of this recipe's apps is a credit or a correction, so it is left out of
    the releases' figures and said, with its object, hour and amount, instead of being netted in without a word."""
    def usable(r: costs.BillRow) -> bool:
        return all(math.isfinite(v) and v >= 0 for v in (r.usd, *r.by_resource.values()))

    def concerns(r: costs.BillRow) -> bool:
        return AppTags.of(r).names(env, recipe) or r.description in app_names

    odd = [r for r in rows if concerns(r) and not usable(r)]
    if not odd:
        return rows, []
    first = odd[0]
    note = (f"{len(odd)} row(s) with a negative or unreadable cost left out (${sum(r.usd for r in odd):,.2f}; allowed: "
            f"a cost of 0 or more, as usage is; a credit or a correction?): first {first.object_id} "
            f"({first.description or '-'}) {first.start:%Y-%m-%d %H:%M} UTC ${first.usd:,.2f}")
    return [r for r in rows if not (concerns(r) and not usable(r))], [note]


def _live_windows(history: list[Release], period: costs.Period, now: datetime) -> dict[int, tuple[datetime, datetime]]:
    """Release index -> the part of the period it was live in (newest first: each ran until the next newer one)."""
    out = {}
    until = now
    for i, release in enumerate(history):
        since = datetime.fromtimestamp(release.deployed_at, UTC)
        start, end = max(since, period.start), min(until, period.end)
        if end > start:
            out[i] = (start, end)
        until = min(until, since)
    return out


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    return max(0.0, (min(a[1], b[1]) - max(a[0], b[0])).total_seconds())


def _warm_replica_hours(release: Release, window: tuple[datetime, datetime]) -> float:
    """Replica-hours its warm floor (min_containers, and its schedule's windows) kept up in `window`."""
    scaling = release.deployment.scaling
    return schedule.warm_hours(scaling.schedule, scaling, window[0], window[1])


# ---------------------------------------------------------------- bench --compare <release-id> <release-id>


def find_release(releases: Iterable[Release], release_id: str, where: str) -> Release:
    """The release with this id among `releases`, the histories read from `where` ('prod and staging manifests')."""
    seen = []
    for release in releases:
        if release.release_id == release_id:
            return release
        seen.append(release.release_id)
    known = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "") if seen else "none"
    raise ConfigError(f"--compare: no release {release_id!r} in the {where}; recorded there (newest first): {known}")


def labelled(release: Release) -> BenchReport:
    """The release's measurement as a bench report labelled with the release (for bench.compare and bench.plot)."""
    found = measurement_of(release)
    rid = release.release_id
    if found is None:
        raise ConfigError(f"--compare: release {rid} has no recorded measurement (it was not promoted through the gate "
                          "and not measured after going live); compare two measured releases, or two bench JSON files")
    report, where = found
    version = release.version
    return report.model_copy(update={"label": f"{rid} ({release.env} v{version if version else '?'}, {where})"})


def compare_reports(ra: BenchReport, rb: BenchReport) -> Comparison:
    """`bench.compare` with `warnings` where the two reports were not measured alike (a release's, or a file)."""
    warnings = []
    if diff := ra.workload.differences(rb.workload, "vs"):
        warnings.append(f"the two were measured with different workloads ({diff}): differences are not only the "
                        "releases'")
    if (where_a := ra.target.where()) != (where_b := rb.target.where()):
        warnings.append(f"A was measured on {where_a}, B on {where_b}: endpoints differ too")
    return bench.compare(ra, rb).model_copy(update={"warnings": warnings})


def render_comparison(comparison: Comparison) -> str:
    return "\n".join([bench.render_compare(comparison), *(f"warning: {w}" for w in comparison.warnings or [])])
