"""`invoke stop`: stop a recipe's apps in an environment, as `modal app stop` does, and record it.

The server app (`<app>`) and a jobs app (`<app>-jobs`) still running are stopped through modal 1.6.4's public
`App.stop()` (the AppStop RPC): their containers end, the endpoint stops answering, and the name no longer
resolves until the next `invoke deploy` (or promotion, or rollback) starts it again. The Volumes (weights,
kernels, releases) are left as they are. The release manifest records who stopped what and when.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.perf.releases import ReleaseStore, Stopped
from infra.runtime.deployment import Deployment
from stages.common import Context, StageResult, confirm_or_refuse, result

STAGE = "stop"


@dataclass(frozen=True)
class Outcome:
    stopped: list[dict]  # [{"app_id", "name", "state"}]: what was running and is stopped now


def run(ctx: Context, d: Deployment, *, confirm=input) -> StageResult[Outcome]:
    names = (d.app_name, d.jobs_app_name)
    where = f"Modal environment {d.modal.environment}"
    if ctx.dry_run:  # offline: no credentials, nothing read
        return result(STAGE, d, "dry-run", f"stop (dry run, {d.env}/{d.recipe.name}): would stop {' and '.join(names)} "
                                           f"where running in {where} and record it in the release manifest")
    ctx.remote.require_credentials()  # before the question: a "yes" is never followed by "credentials missing"
    if ctx.settings.release.guarded:
        confirm_or_refuse(ctx, f"stopping guarded environment '{d.env}'",
                          f"Stop {d.app_name} in {d.env}? Its endpoint stops answering until the next deploy. [y/N] ",
                          confirm)
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "stop"):
        running = [a for a in ctx.remote.apps(d.modal.environment) if a.name in names and a.live]
        if not running:
            return result(STAGE, d, "unchanged", f"{d.env}/{d.recipe.name}: nothing to stop: no running "
                                                 f"{' or '.join(names)} in {where}", Outcome([]))
        for app in running:
            ctx.remote.stop_app(app.app_id)
        manifest = store.read(d)
        manifest.stopped = Stopped(apps=[f"{a.name} ({a.app_id})" for a in running],
                                   release_id=manifest.current.release_id if manifest.current else None)
        store.write(d, manifest, manifest.revision)
    listed = ", ".join(f"{a.name} ({a.app_id}, was {a.state})" for a in running)
    return result(STAGE, d, "ran", f"stopped {listed} in {where}; recorded in the release manifest; "
                                   f"`invoke deploy --env {d.env} --recipe {d.recipe.name}` starts it again",
                  Outcome([{"app_id": a.app_id, "name": a.name, "state": a.state} for a in running]))
