"""The sentinel of an environment as the laptop sees it: what to deploy (`SentinelSpec`) and what it costs.

The sentinel itself is infra/runtime/sentinel.py (what a run does) and infra/runtime/sentinel_app.py (its Modal app);
this module derives its spec from the settings, once, for `invoke sentinel` to deploy and `plan` to show and price.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.control import costs
from infra.control.settings import Settings
from infra.runtime import spec
from infra.runtime.deployment import Deployment
from infra.runtime.model import Stored
from infra.runtime.sentinel import MIN_INTERVAL_SECONDS, ProbeTarget, SentinelSpec

CONNECT_WAIT_SECONDS = 30.0  # a probe of a warm replica: its first byte within this, or it is an error


def spec_for(settings: Settings, deployments: Sequence[Deployment]) -> SentinelSpec:
    """The sentinel of `settings.env`, probing every recipe in `deployments` (the environment's served recipes)."""
    wake = settings.sentinel.wake
    # With wake, a probe may meet a cold start: it waits as long as the slowest recipe may take to start.
    wait = max((d.recipe.startup_timeout + 60 for d in deployments), default=0) if wake else CONNECT_WAIT_SECONDS
    return SentinelSpec(
        env=settings.env, modal_environment=settings.modal_environment, settings=settings.sentinel,
        app_name=f"{settings.modal.app_prefix}-sentinel-{settings.env}", wait_seconds=float(wait),
        targets=tuple(ProbeTarget(recipe=d.recipe.name, app_name=d.app_name, model=d.recipe.model,
                             proxy_auth=d.auth.proxy_auth) for d in deployments))


class SentinelCost(Stored):
    """What the sentinel costs (`cost`), as `plan --json` shows it; `container` is its container's price."""

    app: str
    interval_seconds: int
    probes_per_30_days: int
    container: costs.Price
    container_hours_per_hour: float
    usd_per_hour: float
    usd_per_30_days: float
    wake: bool
    wake_usd_per_30_days: float | None = None
    min_interval_seconds: int


def cost(s: SentinelSpec, rates: costs.Rates,
         replicas: Sequence[tuple[Deployment, costs.Price]] = ()) -> SentinelCost:
    """What the sentinel costs per hour and per 30 days, and what `wake` would add.

    Its own container: `spec.SENTINEL_CPU` cores and `SENTINEL_MEMORY_MIB`, kept up between runs by its
    scaledown_window (infra/runtime/spec.py), so billed around the clock: the same figure at any interval up to an
    hour. Its probes add nothing to a replica that is up anyway (a short request among the users'). With
    `wake = true`, a probe every interval keeps one replica of each recipe that scales to zero up whenever the
    interval is shorter than the server's scaledown_window: priced here as one replica around the clock per recipe,
    the worst case, since that is what `wake` buys.
    """
    options = spec.sentinel_app(s)["function"]
    hourly = costs.price(costs.Container.of(options), rates)
    kept_up = min(1.0, (options["scaledown_window"] + 0.0) / s.settings.interval_seconds)
    per_hour = hourly.usd * kept_up
    wake = [h.usd for d, h in replicas if d.scaling.min_containers == 0] if s.settings.wake else []
    return SentinelCost(
        app=s.app_name, interval_seconds=s.settings.interval_seconds, container=hourly,
        probes_per_30_days=int(costs.HOURS_PER_30_DAYS * s.settings.probes_per_hour) * len(s.targets),
        container_hours_per_hour=kept_up, usd_per_hour=round(per_hour, 4), wake=s.settings.wake,
        usd_per_30_days=round(per_hour * costs.HOURS_PER_30_DAYS, 2), min_interval_seconds=MIN_INTERVAL_SECONDS,
        wake_usd_per_30_days=round(sum(wake) * costs.HOURS_PER_30_DAYS, 2) if wake else None)


def describe_cost(c: SentinelCost) -> list[str]:
    """`plan`'s lines for the sentinel, from `cost`'s record."""
    lines = [f"{c.app}: a probe per recipe every {c.interval_seconds} s ({c.probes_per_30_days:,} per 30 days); its "
             f"container ({c.container.container.describe()}) at ${c.container.usd_per_hour:.4f}/h, up "
             f"{c.container_hours_per_hour * 100:.0f}% of each hour: ${c.usd_per_30_days:,.2f} per 30 days"]
    if c.wake_usd_per_30_days is not None:
        lines.append(f"  wake = true keeps a replica of each scale-to-zero recipe up: up to "
                     f"${c.wake_usd_per_30_days:,.2f} per 30 days more")
    elif not c.wake:
        lines.append("  wake = false: a recipe with no replica up is not probed (never woken), its probe recorded as "
                     "skipped")
    return lines
