"""What a deployment costs on Modal, priced the way Modal bills it: the one cost model of `plan`, the schedule's cost,
the release ledger and `invoke status --cost`.

Modal bills a container per second for its GPUs, its CPU cores and its memory, each at its rate, and multiplies all
of it by a region multiplier when the Function pins a container region (modal.com/docs/guide/region-selection, read
2026-12-01: 1.5x for a broad region such as `us`, 1.75x for a narrow one such as `us-west`; an older version of the
page said 1.25x). The guide's own example, 1 T4, 1 CPU core and 1 GB of memory in `us-west` for an hour:
((T4 hourly) + (CPU hourly for one core) + (memory hourly for one GB)) x 1.75 (tests/test_costs.py computes it). So

    USD per hour = (GPUs x GPU rate + cores x CPU rate + GiB x memory rate) x region multiplier.

CPU and memory are billed at whichever is higher, the request or the use (modal.com/docs/guide/resources): the model
prices the request (a recipe's `cpu` and `memory`, else Modal's default of 0.125 cores and 128 MiB), the floor of
what Modal bills; `invoke status --cost` shows the bill beside it.

A rate comes from, first to last: the environment's `[costs]` settings (`rates`, `gpu_hourly_usd`: negotiated
rates), the workspace's live rates (`Workspace.billing.rates()`, cached in the state directory by `invoke status`, at
most once a day), else the offline table below with its date. Every figure names its source. A rate that none of
them has is an error naming it, never a zero. `plan` never fetches: it reads the cache or the table and says which.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from infra.control.state import state_dir
from infra.runtime import catalog, schedule
from infra.runtime.deployment import Scaling, Window
from infra.runtime.errors import ConfigError, UserError
from infra.runtime.files import write_atomically
from infra.runtime.secrets import shown

SECONDS_PER_HOUR = 3600
HOURS_PER_WEEK = 7 * 24
HOURS_PER_30_DAYS = 30 * 24
MIB_PER_GIB = 1024

# Modal's published per-second prices (modal.com/pricing, as transcribed on 2026-07-01; an H100 is $0.001097/s,
# $3.95/h), per GPU, per physical CPU core and per GiB of memory. The table `plan` falls back on; live rates and
# settings win over it.
TABLE_DATE = "2026-07-01"
TABLE_SOURCE = f"offline table (modal.com/pricing, {TABLE_DATE})"
PER_SECOND: dict[str, float] = {
    "B200": 0.001736,
    "H200": 0.001261,
    "H100": 0.001097,
    "RTX-PRO-6000": 0.000842,
    "A100-80GB": 0.000694,
    "A100-40GB": 0.000583,
    "L40S": 0.000542,
    "A10": 0.000306,
    "L4": 0.000222,
    "T4": 0.000164,
    "cpu": 0.0000131,  # per physical core; Modal's minimum request is 0.125 cores
    "memory": 0.00000222,  # per GiB
}
TABLE: dict[str, float] = {resource: rate * SECONDS_PER_HOUR for resource, rate in PER_SECOND.items()}
UNITS = {"cpu": "core", "memory": "GiB"}  # every other resource is a GPU, priced per GPU

# The GPU types of `gpu=` that Modal bills under another name: "H100!" is an H100 that may not become an H200,
# "A100" the 40 GB one, "A10G" the A10's older name.
GPU_RESOURCE = {"H100!": "H100", "A100": "A100-40GB", "A10G": "A10"}

# What Modal reserves, and bills at least, for a container that requests nothing (modal.com/docs/guide/resources).
DEFAULT_CPU = 0.125
DEFAULT_MEMORY_MIB = 128

REGION_SOURCE = "modal.com/docs/guide/region-selection, read 2026-12-01"
REGION_MULTIPLIERS = {"none": 1.0, "broad": 1.5, "narrow": 1.75}

RATES_CACHE = "billing-rates.json"
RATES_MAX_AGE = timedelta(days=1)
# A live rate this far from the table's, per hour and per second alike, is refused: the unit Modal answers in is
# not documented, and a rate read in the wrong unit is 3,600 times off.
PLAUSIBLE_FACTOR = 10.0


class CostError(UserError):
    """A rate the model needs and does not have, or a bill it cannot read: one line naming it."""


class Shown(BaseModel):
    """A figure or result this layer builds for `--json` and the ledger: read by attribute, dumped with its keys as they
    are (a count stays an int in the JSON, a price a float)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True)

    def to_data(self) -> dict:
        """The JSON: keys that were set only, so an optional figure stays absent where it does not apply."""
        return self.model_dump(mode="json", exclude_unset=True)


Number = int | float


def gpu_resource(gpu_type: str) -> str:
    """The name Modal bills a GPU type under: "H100!" -> "H100"."""
    return GPU_RESOURCE.get(gpu_type, gpu_type)


def check_resource(name: str) -> str:
    """Settings' check of a `[costs] rates` key; returns the resource it prices."""
    if name in ("cpu", "memory"):
        return name
    if name in catalog.GPUS:
        return gpu_resource(name)
    raise ValueError(f"unknown resource {name!r}; allowed: {', '.join(['cpu', 'memory', *catalog.GPUS])}")


# ---------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rate:
    usd_per_hour: float
    source: str


@dataclass(frozen=True)
class Rates:
    """The rates in force: a base (the live cache or the table) under the settings' overrides."""

    base: Mapping[str, float]
    base_source: str
    overrides: Mapping[str, tuple[float, str]] = field(default_factory=dict)  # resource -> (rate, the setting)
    live: bool = False

    def rate(self, resource: str) -> Rate:
        if resource in self.overrides:
            usd, setting = self.overrides[resource]
            return Rate(usd, f"settings ({setting})")
        if resource in self.base:
            return Rate(self.base[resource], self.base_source)
        unit = UNITS.get(resource, "GPU")
        raise CostError(f"no rate for {resource} (USD per {unit}-hour) in the {self.base_source}: set "
                        f"`costs.rates.{resource}` in the environment file, or run `invoke status` for live rates")

    def shown(self) -> RatesShown:
        return RatesShown(source=self.base_source, live=self.live, overrides={
            r: RateOverride(usd_per_hour=v, setting=s) for r, (v, s) in sorted(self.overrides.items())})


def rates_for(section: Any, cache: Path | None = None) -> Rates:
    """The rates for an environment's `[costs]` settings: the live cache if there is one, else the table."""
    overrides: dict[str, tuple[float, str]] = {}
    for gpu, usd in section.gpu_hourly_usd.items():
        overrides[gpu_resource(gpu)] = (usd, f"costs.gpu_hourly_usd.{gpu}")
    for name, usd in section.rates.items():
        overrides[check_resource(name)] = (usd, f"costs.rates.{name}")
    cached = read_cache(cache)
    if cached is None:
        return Rates(TABLE, TABLE_SOURCE, overrides)
    return Rates(cached.rates, cached.source, overrides, live=True)


class RatesCache(BaseModel):
    """Modal's live rates as `invoke status` caches them in the state directory: USD per unit-hour by resource."""

    model_config = ConfigDict(extra="forbid")

    fetched_at: datetime
    workspace: str | None = None
    unit: str | None = None  # what Modal answered in: "second" or "hour"
    rates: dict[str, float]
    ignored: list[str] = []  # names that match no resource this package prices

    @property
    def source(self) -> str:
        workspace = f" of workspace {self.workspace}" if self.workspace else ""
        return f"live rates{workspace} fetched {self.fetched_at:%Y-%m-%d %H:%M UTC}"


def cache_path() -> Path:
    return state_dir() / RATES_CACHE


def read_cache(path: Path | None = None) -> RatesCache | None:
    """The cached live rates, or None when there are none; a cache that cannot be read is one line naming it."""
    path = path or cache_path()
    if not path.exists():
        return None
    try:
        cached = RatesCache.model_validate_json(path.read_text(), extra="ignore")
    except ValueError:
        raise CostError(f"{path}: not a rates cache this version wrote; delete it (`invoke status` fetches the rates "
                        "again; `plan` uses the offline table meanwhile)") from None
    if unknown := sorted(set(cached.rates) - set(TABLE)):
        raise CostError(f"{path}: unknown resource {unknown[0]!r} in the rates cache; allowed: "
                        f"{', '.join(TABLE)}; delete the file and run `invoke status` to fetch the rates again")
    return cached


def _norm(name: str) -> str:
    """'Nvidia A100, 80 GB' -> 'a10080gb', 'gpu.H100' -> 'h100': how a rate's name is matched to a resource."""
    text = re.sub(r"[^a-z0-9]", "", name.lower())
    for prefix in ("nvidia", "gpu"):
        text = text.removeprefix(prefix)
    return text


# Modal's rate names are not documented (the SDK calls them "subject to change"): they are read by what they name,
# ignoring case, spaces, punctuation and a "gpu"/"nvidia" prefix. A name that matches nothing (storage, sandboxes, a
# GPU this package does not offer) is kept aside in the cache, not guessed at.
ALIASES: dict[str, str] = {
    **{_norm(r): r for r in TABLE},
    **{_norm(t): gpu_resource(t) for t in catalog.GPUS if t not in ("A100",)},  # "A100" alone: 40 or 80 GB?
    "cpus": "cpu", "cpucore": "cpu", "cpucores": "cpu", "core": "cpu", "cores": "cpu", "physicalcore": "cpu",
    "mem": "memory", "memorygib": "memory", "ram": "memory",
}


def parse_live(answer: Mapping[str, Any], now: datetime, needed: Iterable[str] = ()) -> RatesCache:
    """Modal's answer to `billing.rates()` as the cache stores it: USD per unit-hour by resource.

    The answer's unit is read from its size against the table (per second and per hour differ 3,600 times); a rate
    within PLAUSIBLE_FACTOR of neither is refused, naming it. A resource in `needed` missing from the answer is an
    error naming it.
    """
    rates: dict[str, float] = {}
    ignored: list[str] = []
    units: set[str] = set()
    for name, text in (answer.get("rates") or {}).items():
        resource = ALIASES.get(_norm(name))
        if resource is None:
            ignored.append(name)
            continue
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise CostError(f"Modal's rate {name!r} = {text!r} is not a number") from None
        unit = _unit(name, value, TABLE[resource])
        units.add(unit)
        rates[resource] = value * SECONDS_PER_HOUR if unit == "second" else value
    if len(units) > 1:
        raise CostError("Modal's rates mix per-second and per-hour figures against the table; nothing cached")
    if missing := [r for r in dict.fromkeys(needed) if r not in rates]:
        known = ", ".join(sorted(answer.get("rates") or {})) or "none"
        raise CostError(f"Modal's rates have no rate for {missing[0]} (rates in the answer: {known}); nothing cached: "
                        f"set `costs.rates.{missing[0]}` to price it")
    return RatesCache(fetched_at=now.astimezone(UTC).replace(microsecond=0), workspace=answer.get("workspace"),
                      unit=units.pop() if units else None, rates=rates, ignored=sorted(ignored))


def _unit(name: str, value: float, table_hourly: float) -> str:
    for unit, hourly in (("hour", value), ("second", value * SECONDS_PER_HOUR)):
        if table_hourly / PLAUSIBLE_FACTOR <= hourly <= table_hourly * PLAUSIBLE_FACTOR:
            return unit
    raise CostError(f"Modal's rate {name!r} = {value:g} is neither per hour nor per second near the table's "
                    f"${table_hourly:.4g}/h ({TABLE_SOURCE}); nothing cached")


def needs_refresh(now: datetime, path: Path | None = None) -> bool:
    try:
        cached = read_cache(path)
    except CostError:
        return True  # a cache that cannot be read is replaced
    return cached is None or now - cached.fetched_at >= RATES_MAX_AGE


def refresh(fetch, now: datetime, needed: Iterable[str], path: Path | None = None) -> str | None:
    """Fetch the live rates into the cache when it is missing or a day old; the line saying so, or None if fresh.

    `fetch` is the Modal boundary's `billing_rates` (credentials already checked): only commands that talk to Modal
    call this (`invoke status`), never `plan`.
    """
    path = path or cache_path()
    if not needs_refresh(now, path):
        return None
    cached = parse_live(fetch(), now, needed)
    write_atomically(path, json.dumps(cached.model_dump(mode="json"), indent=1, sort_keys=True))
    aside = f"; not used: {', '.join(cached.ignored)}" if cached.ignored else ""
    return f"rates: {cached.source} ({len(cached.rates)} resources, per {cached.unit}{aside}), cached in {path}"


# ---------------------------------------------------------------------------- containers and what they cost


@dataclass(frozen=True)
class Container:
    """What Modal bills one container for: its GPUs, CPU and memory requests, and its region."""

    gpu_type: str | None
    gpu_count: int
    cpu: float
    memory_mib: int
    region: str | None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Container:
        """From one Function's options as infra/runtime/spec.py gives them to Modal (`gpu="H100!:2"`, `cpu`, ...)."""
        gpu = options.get("gpu")
        gpu_type, _, count = gpu.partition(":") if gpu else (None, "", "")
        return cls(gpu_type, int(count or 1) if gpu_type else 0, options.get("cpu") or DEFAULT_CPU,
                   options.get("memory") or DEFAULT_MEMORY_MIB, options.get("compute_region"))

    def describe(self) -> str:
        gpus = f"{self.gpu_count}×{self.gpu_type} + " if self.gpu_type else ""
        return f"{gpus}{self.cpu:g} cores + {self.memory_mib / MIB_PER_GIB:g} GiB"


class RateOverride(Shown):
    usd_per_hour: float
    setting: str


class RatesShown(Shown):
    source: str
    live: bool
    overrides: dict[str, RateOverride]


# A price's figures are kept exact, for the sums built on them; `plan --json` and the ledger show them rounded.
Usd4 = Annotated[float, PlainSerializer(lambda v: round(v, 4))]


class PricePart(Shown):
    resource: str
    quantity: Number
    unit: str
    usd_per_unit_hour: Annotated[float, PlainSerializer(lambda v: round(v, 6))]
    usd_per_hour: Usd4
    source: str

    def describe(self) -> str:
        amount = (f"{self.quantity:g}×{self.resource}" if self.unit == "GPU"
                  else f"{self.quantity:g} {'cores' if self.unit == 'core' else self.unit}")
        return f"{amount} ${round(self.usd_per_hour, 4):,.2f}"


class RegionPrice(Shown):
    compute_region: str | None
    kind: str  # none | broad | narrow
    multiplier: float
    source: str


class Price(Shown):
    """One container's price per hour: its parts, and the region multiplier over all of them (`plan`, the ledger)."""

    container: Annotated[Container, PlainSerializer(Container.describe)]
    parts: list[PricePart]
    usd_per_hour_before_region: Usd4
    region: RegionPrice
    usd_per_hour: Usd4
    sources: list[str]

    @property
    def usd(self) -> float:
        return self.usd_per_hour

    def describe(self) -> str:
        """'(2×H100 $7.90 + 4 cores $0.19 + 16 GiB $0.13) × 1.75 (narrow region us-east) = $14.38/h'."""
        parts = " + ".join(p.describe() for p in self.parts)
        total = f"${round(self.usd, 4):,.2f}/h"
        if self.region.kind == "none":
            return f"{parts} = {total} (no compute_region: no region multiplier)"
        region = self.region
        return f"({parts}) × {region.multiplier:g} ({region.kind} region {region.compute_region}) = {total}"


def price(container: Container, rates: Rates) -> Price:
    def part(resource: str, quantity: Number, unit: str) -> PricePart:
        rate = rates.rate(resource)
        return PricePart(resource=resource, quantity=quantity, unit=unit, usd_per_unit_hour=rate.usd_per_hour,
                         usd_per_hour=quantity * rate.usd_per_hour, source=rate.source)

    parts = [part(gpu_resource(container.gpu_type), container.gpu_count, "GPU")] if container.gpu_type else []
    parts += [part("cpu", container.cpu, "core"), part("memory", container.memory_mib / MIB_PER_GIB, "GiB")]
    kind = catalog.region_kind(container.region)
    base = sum(p.usd_per_hour for p in parts)
    return Price(container=container, parts=parts, usd_per_hour_before_region=base,
                 region=RegionPrice(compute_region=container.region, kind=kind, multiplier=REGION_MULTIPLIERS[kind],
                                    source=REGION_SOURCE),
                 usd_per_hour=base * REGION_MULTIPLIERS[kind], sources=list(dict.fromkeys(p.source for p in parts)))


# ---------------------------------------------------------------------------- what plan shows


class Standing(Shown):
    """What the warm replicas cost even when nobody calls them."""

    warm_replicas: int
    warm_gpus: int
    gpu_hours_per_30_days: int
    replica: Price
    usd_per_hour: float
    usd_per_30_days: float


def standing(replica: Price, min_containers: int) -> Standing:
    per_hour = replica.usd * min_containers
    gpus = replica.container.gpu_count * min_containers
    return Standing(warm_replicas=min_containers, warm_gpus=gpus, gpu_hours_per_30_days=gpus * HOURS_PER_30_DAYS,
                    replica=replica, usd_per_hour=round(per_hour, 2),
                    usd_per_30_days=round(per_hour * HOURS_PER_30_DAYS, 2))


class WarmFigures(Shown):
    replica_hours: float
    gpu_hours: float
    usd: float


class WarmPeriod(Shown):
    scheduled: WarmFigures
    always_warm: WarmFigures


class ScheduledCost(Shown):
    from_: str = Field(alias="from")
    usd_per_replica_hour: float
    peak_min_containers: int
    per_week: WarmPeriod
    per_30_days: WarmPeriod


def scheduled(replica: Price, windows: Sequence[Window], base: Scaling, start: datetime) -> ScheduledCost:
    """Warm replica-hours, GPU-hours and dollars for the 7 and the 30 days from `start`, on the schedule and always
    warm.

    Always-warm is the schedule's highest `min_containers` held around the clock: what the same warm capacity costs
    without a schedule. The hours are infra/runtime/schedule.warm_hours, exact across daylight-saving changes.
    """
    peak = max([base.min_containers, *(w.min_containers for w in windows)])

    def figures(replica_hours: float) -> WarmFigures:
        return WarmFigures(replica_hours=round(replica_hours, 4),
                           gpu_hours=round(replica_hours * replica.container.gpu_count, 4),
                           usd=round(replica_hours * replica.usd, 2))

    def period(hours: int) -> WarmPeriod:
        on_schedule = schedule.warm_hours(windows, base, start, start + timedelta(hours=hours))
        return WarmPeriod(scheduled=figures(on_schedule), always_warm=figures(float(peak * hours)))

    return ScheduledCost(from_=start.astimezone(UTC).isoformat(), usd_per_replica_hour=round(replica.usd, 4),
                         peak_min_containers=peak, per_week=period(HOURS_PER_WEEK),
                         per_30_days=period(HOURS_PER_30_DAYS))


class JobCost(Shown):
    """One run of a job (the compile job, the gate's measurement): its container's price for `seconds`."""

    seconds: Number | None
    basis: str
    usd: float | None
    usd_per_hour: float
    container: str
    region_multiplier: float

    def describe(self) -> str:
        shown = f"~{self.seconds:g} s ≈ ${self.usd:,.2f}" if self.usd is not None else "unknown"
        multiplier = f", × {self.region_multiplier:g}" if self.region_multiplier != 1 else ", no region multiplier"
        return f"{shown} at ${self.usd_per_hour:,.2f}/h ({self.container}{multiplier}): {self.basis}"


def job(hourly: Price, seconds: float | None, basis: str) -> JobCost:
    usd = None if seconds is None else round(hourly.usd * seconds / SECONDS_PER_HOUR, 2)
    return JobCost(seconds=seconds, basis=basis, usd=usd, usd_per_hour=round(hourly.usd, 4),
                   container=hourly.container.describe(), region_multiplier=hourly.region.multiplier)


def gate_seconds(targets: Sequence[Any], levels: Sequence[int], *, requests: int, warmup_rounds: int,
                 max_tokens: int) -> float | None:
    """How long the gate's measurement takes at the objectives' own limits (the slowest a passing release may be).

    Per level: (requests + a warm-up round of `c`) in rounds of `c` concurrent requests, each taking
    TTFT p90 + max_tokens x TPOT p50 at that level's limits. None when a level has no such limits.
    """
    limit = {(t.metric, t.concurrency): t.limit for t in targets}
    total = 0.0
    for c in levels:
        ttft, tpot = limit.get(("ttft_p90_ms", c)), limit.get(("tpot_p50_ms", c))
        if ttft is None or tpot is None:
            return None
        total += math.ceil((requests + warmup_rounds * c) / c) * (ttft + max_tokens * tpot) / 1000
    return round(total, 1)


# ---------------------------------------------------------------------------- the period of a bill


@dataclass(frozen=True)
class Period:
    """Whole UTC hours [start, end): Modal's hourly report leaves out a partial last hour, so the estimate does too."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / SECONDS_PER_HOUR

    def describe(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC ({self.hours:g} h)"


DEFAULT_SINCE = "7d"
PERIOD_FORMS = ("a duration back from now such as 7d or 36h, or a UTC date or time such as 2026-11-01 or "
                "2026-11-01T08:00")


def period(since: str | None, until: str | None, now: datetime) -> Period:
    """`--since`/`--until` as whole hours; a period in the future, backwards or under an hour is one line."""
    now = now.astimezone(UTC)
    since = since or DEFAULT_SINCE
    start = instant("--since", since, now)
    end = instant("--until", until, now) if until else now
    for flag, text, when in (("--since", since, start), ("--until", until, end)):
        if when > now:
            raise ConfigError(f"{flag} {text}: {when:%Y-%m-%d %H:%M} UTC is in the future, and Modal bills only "
                              f"what has run; allowed: {PERIOD_FORMS}, before now")
    start, end = _hour(start), _hour(end)
    if end <= start:
        raise ConfigError(f"--since {since}" + (f" --until {until}" if until else "") +
                          f": no whole hour between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC (Modal bills "
                          "by the hour and reports no partial hour); allowed: a period of at least one whole hour")
    return Period(start, end)


BACK = {"m": "minutes", "h": "hours", "d": "days"}


def instant(flag: str, text: str, now: datetime, forms: str = PERIOD_FORMS, units: str = "dh") -> datetime:
    """`text` as a UTC instant: a duration back from `now` in one of `units`, or an ISO date or time; else one line
    naming the `forms` allowed (the bill's `--since`/`--until` here, the sentinel's window in attainment.py)."""
    text = str(text).strip()
    if m := re.fullmatch(rf"(\d+)\s*([{units}])", text):
        unit = BACK[m.group(2)]
        try:
            return now - timedelta(**{unit: int(m.group(1))})
        except (OverflowError, ValueError):  # further back than a datetime reaches (year 1), or too many digits to read
            raise ConfigError(f"{flag} {shown(text)}: that many {unit} back from now is before year 1, the earliest "
                              f"date there is; allowed: {forms}") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: not a time; allowed: {forms}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _hour(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------- the bill's rows


@dataclass(frozen=True)
class BillRow:
    """One object's cost in one hour, as Modal's billing report gives it."""

    object_id: str
    description: str
    start: datetime
    usd: float
    by_resource: Mapping[str, float]
    tags: Mapping[str, str]


def bill_rows(rows: Iterable[Mapping[str, Any]]) -> list[BillRow]:
    """The Modal boundary's report rows, read: costs as numbers, hours as UTC datetimes; a bad row is one line."""
    out = []
    for row in rows:
        try:
            out.append(BillRow(row["object_id"], row.get("description") or "",
                               datetime.fromtimestamp(float(row["interval_start"]), UTC), float(row["cost"]),
                               {k: float(v) for k, v in (row.get("cost_by_resource") or {}).items()},
                               dict(row.get("tags") or {})))
        except (KeyError, TypeError, ValueError) as err:
            raise CostError(f"Modal's billing report has a row this version cannot read ({type(err).__name__}: {err}): "
                            f"{json.dumps(row, default=str)[:200]}") from None
    return out
