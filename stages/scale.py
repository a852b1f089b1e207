"""`invoke scale --min N`: change warm replicas at run time, without a redeploy (Modal's autoscaler update).

The next deploy resets min_containers to the settings value; we say so.
"""

from __future__ import annotations

from infra.deployment import Deployment
from infra.errors import ConfigError
from stages.common import Context, StageResult

STAGE = "scale"


def run(ctx: Context, d: Deployment, min_containers: int) -> StageResult:
    scaling = ctx.settings.scaling
    if min_containers < 0:
        raise ConfigError(f"--min {min_containers}: allowed: 0 or more warm replicas")
    if min_containers > 0 and not scaling.allow_warm_replicas:
        raise ConfigError(f"--min {min_containers}: environment '{d.env}' forbids warm replicas (allow_warm_replicas = false); allowed: 0")
    if scaling.max_containers is not None and min_containers > scaling.max_containers:
        raise ConfigError(f"--min {min_containers}: exceeds max_containers = {scaling.max_containers}")
    if ctx.dry_run:
        return StageResult(STAGE, d.env, d.recipe, "dry-run", f"scale (dry run): would set min_containers to {min_containers}")
    ctx.remote.require_credentials()
    result = ctx.remote.update_autoscaler(d, min_containers)
    return StageResult(
        STAGE, d.env, d.recipe, "ran",
        f"{d.env}/{d.recipe}: min_containers now {result['min_containers']} (was {d.min_containers} at deploy). "
        f"warning: the next deploy resets it to the settings value ({d.min_containers}); change scaling.min_containers "
        f"in environments/{d.env}.toml to keep it",
        result,
    )
