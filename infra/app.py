"""The Modal app: one recipe's SGLang server in one environment.

Deploy it with `invoke deploy --env ENV --recipe R`, or with Modal's own CLI:

    INFRA_ENV=prod INFRA_RECIPE=qwen3-8b-low-latency modal deploy -m infra.app --env prod

Modal imports this module twice: on the deploying machine, and again inside every
container, without the repository and with the container's own environment. Both
imports read the same `Deployment` (infra/current.py) and pass the same options,
computed by infra/spec.py (which `plan` prints), so the definition Modal finds in
the container is the one that was deployed, by construction (tests/test_app.py
simulates that import).
"""

from __future__ import annotations

import os

import modal

from infra import current, lifecycle, modal_objects, sglang_args, spec, weights
from infra.recipes.base import HF_CACHE_PATH

deployment = current.deployment()
current.check_modal_environment(deployment, dict(os.environ), modal.is_local())
recipe = deployment.recipe

app = modal.App(**spec.modal_spec(deployment)["app"])

BASE_URL = f"http://127.0.0.1:{deployment.server.port}"


def _readiness() -> lifecycle.Readiness:
    return lifecycle.Readiness(
        timeout=recipe.readiness_timeout,
        poll_interval=recipe.health_poll_interval,
        warmup=recipe.warmup,
        model=recipe.model,
    )


@app.server(**modal_objects.options(spec.server(deployment)))
class SGLangServer:
    """Starts SGLang in @modal.enter; Modal routes traffic only once it is healthy and warm."""

    if deployment.gpu_snapshot:

        @modal.enter(snap=True)
        def start_for_snapshot(self):
            """Boot, warm up, then hand GPU memory back so Modal snapshots a ready server."""
            weights.require_downloaded(HF_CACHE_PATH, deployment)
            self.server = lifecycle.start_for_snapshot(sglang_args.launch_command(deployment), BASE_URL, _readiness())

        @modal.enter(snap=False)
        def restore(self):
            """After a restore: take the GPU memory back and prove it with one short generation."""
            lifecycle.restore_from_snapshot(BASE_URL, _readiness())

    else:

        @modal.enter()
        def start(self):
            weights.require_downloaded(HF_CACHE_PATH, deployment)
            self.server = lifecycle.start_and_warm(sglang_args.launch_command(deployment), BASE_URL, _readiness())

    @modal.exit()
    def stop(self):
        if server := getattr(self, "server", None):
            server.stop()
