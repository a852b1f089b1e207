"""Latency and throughput objectives: the settings a promotion gate holds a release to.

An environment that receives promotions (prod) turns its gate on and lists objectives in its `[gate]` table; a
recipe may change them under `[recipes."<name>".gate]`. Each objective names a metric of `invoke bench` (`METRICS`),
a concurrency level (a number, or "target": the deployment's `target_concurrency`) and one limit on the metric's own
side (`max` where lower is better, `min` where higher is), so a limit on the wrong side is an error, not a silently
inverted check.

    [gate]
    enabled = true
    regression_budget = 0.10    # no budgeted metric more than 10% worse than the target's current release
    objectives = [
      { metric = "ttft_p90_ms", level = 1, max = 500 },
      { metric = "output_tokens_per_s", level = "target", min = 800 },
    ]

The regression budget applies to every metric but `error_rate` (a relative change of a rate that is normally zero
means nothing; its limit is absolute). `Gate` is the environment's section, `GateOverrides` a recipe's; `effective()`
merges them and `resolve()` turns "target" into a number. The settings loader turns the ValueErrors below into one
line naming the source and the key.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infra.runtime.errors import ConfigError
from infra.runtime.model import Stored

TARGET = "target"  # the level word for the deployment's target_concurrency
DEFAULT_REGRESSION_BUDGET = 0.10


# ---------------------------------------------------------------- what can be objected to


@dataclass(frozen=True)
class Metric:
    """One figure of a bench level, in the unit its name ends with."""

    name: str
    description: str
    unit: str  # shown after values: "ms", "s", "tok/s", "req/s", "" for a fraction
    higher_is_better: bool
    read: Callable[[Any], float | None]  # from one level of a bench report (infra/perf/bench.py `Level`)
    digits: int
    budgeted: bool = True  # the regression budget applies (relative change against the baseline)

    @property
    def limit_key(self) -> str:
        return "min" if self.higher_is_better else "max"

    def format(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.name == "error_rate":
            return f"{value * 100:.{self.digits}f}%"
        return f"{value:.{self.digits}f}{' ' + self.unit if self.unit else ''}"


# A level is infra/perf/bench.py's `Level` (this layer does not import measurement): read by attribute.
def _pct(key: str, q: int, scale: float) -> Callable[[Any], float | None]:
    def read(level: Any) -> float | None:
        value = getattr(level, key).at(q)
        return None if value is None else value * scale

    return read


def _ok_throughput(key: str) -> Callable[[Any], float | None]:
    # With no successful request there is no throughput to speak of: None, which no objective meets.
    def read(level: Any) -> float | None:
        return getattr(level.throughput, key) if level.requests.ok else None

    return read


def _catalogue() -> dict[str, Metric]:
    metrics = []
    for key, label, scale, unit, digits in (
        ("ttft_s", "time to first token", 1000, "ms", 1),
        ("itl_s", "inter-token latency (gap between streamed chunks)", 1000, "ms", 2),
        ("tpot_s", "time per output token", 1000, "ms", 2),
        ("e2e_s", "end-to-end latency", 1, "s", 3),
    ):
        for q in (50, 90, 99):
            metrics.append(Metric(f"{key[:-2]}_p{q}_{unit}", f"{label}, p{q}", unit, False, _pct(key, q, scale),
                                  digits))
    metrics += [
        Metric("output_tokens_per_s", "output tokens/s of all streams together", "tok/s", True,
               _ok_throughput("output_tokens_per_s"), 1),
        Metric("output_tokens_per_s_per_user_p50", "output tokens/s of one stream, p50", "tok/s", True,
               lambda lv: lv.throughput.output_tokens_per_s_per_user.p50, 1),
        Metric("requests_per_s", "successful requests/s", "req/s", True, _ok_throughput("requests_per_s"), 2),
        # Reports written before goodput (or by `bench --url`, which knows no objectives) have none to hold.
        Metric("goodput_rps", "requests/s that met every per-request objective at their level (goodput)", "req/s",
               True, lambda lv: lv.goodput.requests_per_s if lv.goodput and lv.requests.ok else None, 2),
        Metric("error_rate", "failed requests / measured requests (0..1)", "", False,
               lambda lv: lv.requests.failed / lv.requests.sent if lv.requests.sent else None, 1, budgeted=False),
    ]
    return {m.name: m for m in metrics}


METRICS: dict[str, Metric] = _catalogue()


# ---------------------------------------------------------------- settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_budget(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"regression budget {value!r} is not a fraction between 0 and 1; allowed: 0..1, e.g. 0.10 for "
                         "10% worse")
    return value


def _level_text(level: int | str) -> str:
    return f"level {level!r}" if isinstance(level, str) else f"level {level}"


class Objective(_Strict):
    metric: str = Field(description=f"one of: {', '.join(METRICS)}")
    level: int | str = Field(description=f"concurrent streams: a positive whole number, or '{TARGET}' (the recipe's "
                                         "target_concurrency)")
    max: float | None = Field(default=None, description="upper limit (metrics where lower is better)")
    min: float | None = Field(default=None, description="lower limit (metrics where higher is better)")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            close = difflib.get_close_matches(v, METRICS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown metric {v!r}{hint}; allowed: {', '.join(METRICS)}")
        return v

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> int | str:
        if v == TARGET and isinstance(v, str):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        raise ValueError(f"level {v!r} is not a concurrency; allowed: a positive whole number, or '{TARGET}' "
                         "(the recipe's target_concurrency)")

    @model_validator(mode="after")
    def _one_limit(self) -> Objective:
        m = METRICS[self.metric]
        want, other = m.limit_key, "max" if m.higher_is_better else "min"
        if getattr(self, other) is not None:
            side = "higher" if m.higher_is_better else "lower"
            raise ValueError(f"{self.metric} is {side}-is-better: give its limit as '{want}', not '{other}' "
                             f"({other} = {getattr(self, other)!r})")
        limit = getattr(self, want)
        if limit is None:
            raise ValueError(f"objective {self.metric} at {_level_text(self.level)} has no limit; allowed: "
                             f"{want} = <{m.unit or 'fraction'}> ({m.description})")
        if not math.isfinite(limit) or limit < 0 or (not m.higher_is_better and m.budgeted and limit == 0):
            floor = ">= 0" if m.higher_is_better or not m.budgeted else "> 0"
            raise ValueError(f"{self.metric} {want} = {limit!r} is not a usable limit; allowed: a finite number "
                             f"{floor}")
        if self.metric == "error_rate" and limit > 1:
            raise ValueError(f"error_rate max = {limit!r} is a fraction of requests; allowed: 0..1 (0.01 is 1%)")
        return self

    @property
    def key(self) -> tuple[str, int | str]:
        return (self.metric, self.level)

    @property
    def limit(self) -> float:
        return getattr(self, METRICS[self.metric].limit_key)


def _no_duplicates(objectives: list[Objective]) -> list[Objective]:
    seen: dict[tuple, int] = {}
    for i, o in enumerate(objectives):
        if o.key in seen:
            raise ValueError(f"objective {o.metric} at {_level_text(o.level)} is given twice "
                             f"(objectives[{seen[o.key]}] and objectives[{i}]); allowed: one limit per metric and "
                             "level")
        seen[o.key] = i
    return objectives


class Gate(_Strict):
    """An environment's `[gate]`: whether promotions into it are measured first, and against what."""

    enabled: bool = Field(default=False, description="promotions into this environment are benchmarked and gated")
    regression_budget: float = Field(default=DEFAULT_REGRESSION_BUDGET, description="how much worse than the "
                                     "target's current release a budgeted metric may be (0.10: 10%)")
    record_baseline: bool = Field(default=False, description="after a promotion, measure the target itself with the "
                                  "gate workload and record it")
    objectives: list[Objective] = Field(default_factory=list, description="limits the promoted release must meet")

    _budget = field_validator("regression_budget")(_check_budget)
    _unique = field_validator("objectives")(_no_duplicates)


class GateOverrides(Gate):
    """A recipe's `[recipes."<name>".gate]`: unset keys keep the environment's value (see `effective`)."""

    enabled: bool | None = None
    regression_budget: float | None = None
    record_baseline: bool | None = None


def effective(env: Gate, recipe: GateOverrides | None) -> Gate:
    """The environment's gate with one recipe's overrides: its scalars where it sets them; its objectives replace
    the environment's of the same (metric, level as written) in place, new ones come after. A recipe relaxes a limit
    by restating it and cannot delete one (`enabled = false` turns the gate off, visibly in review)."""
    if recipe is None:
        return env
    mine = {o.key: o for o in recipe.objectives}
    merged = [mine.pop(o.key, o) for o in env.objectives] + [o for o in recipe.objectives if o.key in mine]
    return env.model_copy(update=recipe.model_dump(exclude_none=True, exclude={"objectives"})
                          | {"objectives": merged})


# ---------------------------------------------------------------- resolved against a deployment


@dataclass(frozen=True)
class Target:
    """One objective at a concrete concurrency: what the gate checks."""

    metric: str
    concurrency: int
    limit: float
    written_level: int | str  # as in the settings: a number or "target"
    implicit: bool = False  # added by the gate (error_rate <= 0 where no objective names one)

    @property
    def spec(self) -> Metric:
        return METRICS[self.metric]

    @property
    def level_label(self) -> str:
        return f"{self.concurrency} ({TARGET})" if self.written_level == TARGET else str(self.concurrency)

    def met_by(self, value: float) -> bool:
        return value >= self.limit if self.spec.higher_is_better else value <= self.limit

    def limit_text(self) -> str:
        return f"{'≥' if self.spec.higher_is_better else '≤'} {self.spec.format(self.limit)}"


def resolve(gate: Gate, target_concurrency: int, where: str = "gate") -> tuple[Target, ...]:
    """Objectives at concrete levels for a deployment with this target_concurrency. Two of one metric that land on
    one level (10 and "target" where target_concurrency is 10) are an error: which holds would depend on order."""
    out: dict[tuple[str, int], Target] = {}
    for o in gate.objectives:
        c = target_concurrency if o.level == TARGET else int(o.level)
        if (o.metric, c) in out:
            first = out[(o.metric, c)].written_level
            raise ConfigError(f"{where}.objectives: {o.metric} at level {first!r} and at level {o.level!r} are both "
                              f"concurrency {c} (target_concurrency = {target_concurrency}); allowed: one limit per "
                              "metric and level: keep one")
        out[(o.metric, c)] = Target(o.metric, c, o.limit, o.level)
    return tuple(out.values())


def levels(targets: tuple[Target, ...], target_concurrency: int) -> tuple[int, ...]:
    """The levels a gate measures: 1, the target concurrency, and any level an objective names."""
    return tuple(sorted({1, target_concurrency, *(t.concurrency for t in targets)}))


class PlannedObjective(Stored):
    """One objective as `plan --json` shows it: as written (`level`), resolved (`concurrency`), and its limit under
    the metric's own side (`max` or `min`; the other is left unset, so absent from the JSON)."""

    metric: str
    level: int | str
    concurrency: int
    max: float | None = None
    min: float | None = None

    @property
    def target(self) -> Target:
        return Target(self.metric, self.concurrency, self.max if self.min is None else self.min, self.level)


class GatePlan(Stored):
    """The effective gate of one recipe as `plan --json` shows it, levels resolved."""

    enabled: bool
    regression_budget: float
    record_baseline: bool
    objectives: list[PlannedObjective]
    levels: list[int]


def to_plan(gate: Gate, target_concurrency: int) -> GatePlan:
    """What `plan` shows: the effective gate of one recipe, levels resolved."""
    targets = resolve(gate, target_concurrency)
    return GatePlan(enabled=gate.enabled, regression_budget=gate.regression_budget,
                    record_baseline=gate.record_baseline, levels=list(levels(targets, target_concurrency)),
                    objectives=[PlannedObjective(metric=t.metric, level=t.written_level, concurrency=t.concurrency,
                                                 **{t.spec.limit_key: t.limit}) for t in targets])


def describe(plan: GatePlan) -> list[str]:
    """What `plan` prints of `to_plan`'s record: one line for the gate, one per objective."""
    if not plan.enabled:
        return ["gate: off (promotions into this environment are not measured)"]
    lines = [f"gate: on; regression budget {plan.regression_budget * 100:g}% against the target's current release"
             + ("; the target is measured after promotion" if plan.record_baseline else "")]
    targets = [o.target for o in plan.objectives]
    lines += [f"  {t.metric} {t.limit_text()} at concurrency {t.level_label}" for t in targets]
    if not any(t.metric == "error_rate" for t in targets):
        lines.append("  error_rate ≤ 0.0% at every measured level (no error_rate objective given)")
    lines.append(f"  measured at concurrency {', '.join(map(str, plan.levels))}")
    return lines
