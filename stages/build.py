"""Stage 1: build the recipe's container image on Modal, deploying nothing."""

from __future__ import annotations

from dataclasses import dataclass

from infra.runtime import spec
from infra.runtime.deployment import Deployment
from stages.common import Context, StageResult, fingerprint, remote_stage

STAGE = "build"


@dataclass(frozen=True)
class Built:
    image_id: str


def run(ctx: Context, d: Deployment) -> StageResult[Built]:
    image = d.recipe.sglang_image

    def build() -> tuple[Built, str]:
        with ctx.working(f"building image {image} (+{len(d.recipe.pip_installs)} installs, "
                         f"{len(d.recipe.image_env)} env vars) on Modal"):
            built = Built(ctx.remote.build_image(d))
        return built, f"built image {built.image_id}"

    # The image's layers as the server's spec has them, and where it is built.
    return remote_stage(ctx, STAGE, d, fingerprint(spec.server_image(d), d.modal.environment), Built,
                        would=f"build image {image} in Modal environment {d.modal.environment}", work=build)
