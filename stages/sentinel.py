"""`invoke sentinel`: deploy the environment's sentinel, its own Modal app that probes every served recipe on a
schedule (infra/runtime/sentinel.py says what a run does, infra/control/watching.py what it costs).

Local checks first, in order: `[sentinel] enabled`, then (unless --dry-run) credentials, the proxy-auth Secret the
probes need where an endpoint is behind proxy auth, and a guarded environment's confirmation. One deploy for the
environment, whatever `--recipe` says: the sentinel watches every recipe the environment serves.
"""

from __future__ import annotations

import os

from infra.control import costs, watching
from infra.runtime import sentinel
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError, Refused
from stages.common import Context, StageResult, confirm_or_refuse

STAGE = "sentinel"


def once(ctx: Context, deployments: list[Deployment]) -> StageResult[dict]:
    """`--once`: what one scheduled run does, from here and now: probe each recipe (never waking one with no replica
    up unless `wake = true`) and record it in the ring. Proxy-auth credentials from MODAL_KEY / MODAL_SECRET."""
    settings = ctx.settings
    s = watching.spec_for(settings, deployments)
    if ctx.dry_run:
        return StageResult(STAGE, settings.env, "", "dry-run", f"sentinel (dry run): would probe "
                           f"{', '.join(t.recipe for t in s.targets)} once and record it in {sentinel.RING_DICT}", None)
    ctx.remote.require_credentials()
    headers = {h: os.environ[v] for h, v in (("Modal-Key", "MODAL_KEY"), ("Modal-Secret", "MODAL_SECRET"))
               if os.environ.get(v)}
    lines: list[str] = []
    done = sentinel.run(s, ctx.remote, headers, now=lambda: ctx.clock().timestamp(), log=lines.append)
    return StageResult(STAGE, settings.env, "", "ran", "\n".join(lines),
                       {"probes": [p.model_dump(mode="json") for p in done]})


def run(ctx: Context, deployments: list[Deployment]) -> StageResult[dict]:
    settings = ctx.settings
    if not settings.sentinel.enabled:
        raise ConfigError(f"environments/{settings.env}.toml: sentinel.enabled = false: this environment is not "
                          "watched; allowed: set `enabled = true` under [sentinel] to deploy its sentinel")
    s = watching.spec_for(settings, deployments)
    price = watching.cost(s, costs.rates_for(settings.costs))
    summary = "\n".join([f"{s.app_name}: probes {', '.join(t.recipe for t in s.targets)} every "
                         f"{s.settings.interval_seconds} s in Modal environment {s.modal_environment}, "
                         f"kept {s.settings.retention_days} days", *watching.describe_cost(price)])
    detail = {"app_name": s.app_name, "spec": s.model_dump(mode="json"), "cost": price.model_dump(mode="json")}
    if ctx.dry_run:
        return StageResult(STAGE, settings.env, "", "dry-run", f"sentinel (dry run): would deploy {summary}", detail)
    ctx.remote.require_credentials()
    secret = s.settings.proxy_auth_secret
    if any(t.proxy_auth for t in s.targets) and not ctx.remote.secret_exists(s.modal_environment, secret):
        raise Refused(f"sentinel: Modal Secret '{secret}' (sentinel.proxy_auth_secret) does not exist in Modal "
                      f"environment {s.modal_environment}, and its endpoints require proxy auth; create it with "
                      f"`modal secret create --env {s.modal_environment} {secret} MODAL_KEY=... MODAL_SECRET=...` "
                      "(a proxy auth token); nothing was deployed")
    if settings.release.guarded:
        confirm_or_refuse(ctx, f"deploying {s.app_name}", f"Deploy {s.app_name} to {settings.env}? [y/N] ")
    done = ctx.remote.deploy_sentinel(s)
    return StageResult(STAGE, settings.env, "", "ran", f"sentinel deployed: {summary}", detail | done)
