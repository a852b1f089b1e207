"""`invoke try`: what `modal run` does in the reference documents.

Starts the app ephemerally (nothing is deployed), streams the smoke request until a
replica answers, prints the reply, and stops the app on the way out, whether the
request succeeded, failed, or the user pressed Ctrl-C.
"""

from __future__ import annotations

from infra.deployment import Deployment
from stages import smoke
from stages.common import Context, StageResult
from stages.download import pin_revisions

STAGE = "try"


def run(ctx: Context, d: Deployment) -> StageResult:
    d = pin_revisions(ctx, d)
    if ctx.dry_run:
        return StageResult(STAGE, d.env, d.recipe, "dry-run", f"try (dry run): would run {d.app_name} ephemerally and query it")
    ctx.remote.require_credentials()
    ctx.say(f"starting {d.app_name} ephemerally in Modal environment {d.modal_environment} (stopped when this ends)...")
    with ctx.remote.ephemeral(d) as url:
        ctx.say(f"querying {url} (a cold start can take minutes)...")
        outcome = smoke.check(ctx, d, url, echo=True)
    return StageResult(
        STAGE, d.env, d.recipe, "ran",
        f"replied after {outcome['ttft']:.2f} s to first token, {outcome['total']:.2f} s total; app stopped",
        outcome,
    )
