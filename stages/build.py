"""Stage 1: build the recipe's container image on Modal, deploying nothing."""

from __future__ import annotations

from infra.deployment import Deployment
from stages.common import Context, StageResult, dry_run, fingerprint, up_to_date

STAGE = "build"


def image_fingerprint(d: Deployment) -> str:
    return fingerprint(d.sglang_image, d.pip_installs, d.image_env, d.modal_environment)


def run(ctx: Context, d: Deployment) -> StageResult:
    fp = image_fingerprint(d)
    if done := up_to_date(ctx, STAGE, d, fp) or dry_run(ctx, STAGE, d, f"build image {d.sglang_image} in Modal environment {d.modal_environment}"):
        return done
    ctx.remote.require_credentials()
    ctx.say(f"building image {d.sglang_image} (+{len(d.pip_installs)} installs, {len(d.image_env)} env vars) on Modal...")
    image_id = ctx.remote.build_image(d)
    ctx.state(d).record(STAGE, fp, {"image_id": image_id})
    return StageResult(STAGE, d.env, d.recipe, "ran", f"built image {image_id}", {"image_id": image_id})
