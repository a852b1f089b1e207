"""`invoke scale --min N`: change warm replicas at run time, without a redeploy (Modal's autoscaler update).

The next deploy resets min_containers to the settings value; we say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.deployment import Deployment
from infra.errors import ConfigError
from stages.common import Context, StageResult, result

STAGE = "scale"


@dataclass(frozen=True)
class Options:
    min_containers: int


@dataclass(frozen=True)
class Scaled:
    min_containers: int


def run(ctx: Context, d: Deployment, options: Options) -> StageResult[Scaled]:
    scaling, wanted = ctx.settings.scaling, options.min_containers
    if wanted < 0:
        raise ConfigError(f"--min {wanted}: allowed: 0 or more warm replicas")
    if wanted > 0 and not scaling.allow_warm_replicas:
        raise ConfigError(f"--min {wanted}: environment '{d.env}' forbids warm replicas (allow_warm_replicas = false); allowed: 0")
    if scaling.max_containers is not None and wanted > scaling.max_containers:
        raise ConfigError(f"--min {wanted}: exceeds max_containers = {scaling.max_containers}")
    if ctx.dry_run:
        return result(STAGE, d, "dry-run", f"scale (dry run, {d.env}/{d.recipe.name}): would set min_containers to {wanted}")
    ctx.remote.require_credentials()
    in_force = ctx.remote.update_autoscaler(d, min_containers=wanted)
    return result(
        STAGE, d, "ran",
        f"{d.env}/{d.recipe.name}: min_containers now {in_force['min_containers']} (was {d.scaling.min_containers} at deploy). "
        f"warning: the next deploy resets it to the settings value ({d.scaling.min_containers}); change scaling.min_containers "
        f"in environments/{d.env}.toml to keep it",
        Scaled(in_force["min_containers"]),
    )
