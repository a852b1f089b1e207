"""`invoke scale --min N`: change warm replicas at run time, without a redeploy (Modal's autoscaler update).

Two things undo it, and we say when: the next deploy (Modal resets run-time overrides to the deployed values) and, where
the environment has a schedule, its next window boundary (the scheduled function sets the floor the schedule says).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.runtime import schedule
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from stages.common import Context, StageResult, dry_run, result

STAGE = "scale"


@dataclass(frozen=True)
class Options:
    min_containers: int


@dataclass(frozen=True)
class Scaled:
    min_containers: int
    max_containers: int | None
    buffer_containers: int
    overridden_at: str | None  # when the schedule next sets the floor (ISO 8601, UTC), if it has windows


def run(ctx: Context, d: Deployment, options: Options) -> StageResult[Scaled]:
    scaling, wanted = ctx.settings.scaling, options.min_containers
    now = ctx.clock()
    cap = schedule.floor_at(now, d.scaling.schedule, d.scaling).max_containers
    if wanted < 0:
        raise ConfigError(f"--min {wanted}: allowed: 0 or more warm replicas")
    if wanted > 0 and not scaling.allow_warm_replicas and not ctx.force:
        raise ConfigError(f"--min {wanted}: environment '{d.env}' forbids warm replicas (allow_warm_replicas = false); "
                          "allowed: 0, or --force for a run-time exception until the next deploy")
    if cap is not None and wanted > cap:
        raise ConfigError(f"--min {wanted}: exceeds max_containers = {cap} in force now; allowed: at most {cap}")
    upcoming = schedule.next_boundary(now, d.scaling.schedule, d.scaling)
    until = (f"until {upcoming.describe()}" if upcoming else
             f"until the next deploy resets it to the settings value ({d.scaling.min_containers})")
    if done := dry_run(ctx, STAGE, d, f"set min_containers to {wanted}, {until}"):
        return done
    ctx.remote.require_credentials()
    # The settings in force afterwards, as Modal reports them (min_containers, max_containers, buffer_containers).
    scaled = Scaled(**ctx.remote.update_autoscaler(d, min_containers=wanted),
                    overridden_at=upcoming.when.isoformat() if upcoming else None)
    message = f"{d.env}/{d.recipe.name}: min_containers now {scaled.min_containers}, {until}"
    if upcoming:
        message += "; a deploy before then resets it to the schedule's floor"
    else:
        message += f"; change scaling.min_containers in environments/{d.env}.toml to keep it"
    return result(STAGE, d, "ran", message, scaled)
