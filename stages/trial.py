"""`invoke try`: what `modal run` does in the reference documents.

Starts the app ephemerally (nothing is deployed), streams the smoke request until a replica answers, prints the reply,
and stops the app on the way out, whether the request succeeded, failed, or the user pressed Ctrl-C.
"""

from __future__ import annotations

from infra.perf import smoketest
from infra.runtime.deployment import Deployment
from infra.runtime.errors import Refused
from stages.common import Context, StageResult, dry_run, result

STAGE = "try"


def run(ctx: Context, d: Deployment) -> StageResult[smoketest.SmokeResult]:
    if ctx.settings.release.guarded and not ctx.force:
        raise Refused(f"try runs an ephemeral copy in guarded environment '{d.env}' (its Modal Environment, Volumes "
                      "and Secrets); allowed: another environment (default dev), or --force; nothing changed")
    if not ctx.dry_run:
        ctx.remote.require_credentials()
    d = ctx.pinned(d)
    if done := dry_run(ctx, STAGE, d, f"run {d.app_name} ephemerally and query it"):
        return done
    ctx.say(f"starting {d.app_name} ephemerally in Modal environment {d.modal.environment} (stopped when this ends)...")
    with ctx.remote.ephemeral(d) as url:
        ctx.say(f"querying {url} (a cold start can take minutes)...")
        outcome = smoketest.check(d, url, echo=True, say=ctx.say)
    return result(STAGE, d, "ran", f"replied after {outcome.ttft:.2f} s to first token, {outcome.total:.2f} s total; "
                                   "app stopped", outcome)
