"""The Modal app: one recipe's SGLang server in one environment.

Deploy it with `invoke deploy --env ENV --recipe R`, or with Modal's own CLI:

    INFRA_ENV=prod INFRA_RECIPE=qwen3-8b-low-latency modal deploy -m infra.control.modal_entry --env prod

Modal imports this module on the deploying machine and again in every container; both read the same `Deployment`
(infra/runtime/current.py), so a container finds the definition that was deployed (tests/test_app.py simulates it).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import modal

from infra.runtime import (
    compile_cache,
    current,
    lifecycle,
    modal_objects,
    remote,
    schedule,
    sglang_args,
    spec,
    startup,
    timeline,
    weights,
)
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH

IMPORTED_AT = time.monotonic()  # the container's start, near enough: startup_timeout runs from about here
ENTER_SAFETY_SECONDS = 10  # kept from startup_timeout for failing loudly before Modal kills us

deployment = current.deployment()
current.check_modal_environment(deployment, dict(os.environ), modal.is_local())
recipe = deployment.recipe

app = modal.App(name=deployment.app_name, tags=spec.tags(deployment, "server", current.commit_tag()))

BASE_URL = f"http://127.0.0.1:{deployment.server.port}"


def _readiness() -> lifecycle.Readiness:
    # startup_timeout bounds the whole @modal.enter: the first warm-up request (which may compile) gets what is left.
    left = recipe.startup_timeout - ENTER_SAFETY_SECONDS - (time.monotonic() - IMPORTED_AT)
    return lifecycle.Readiness(timeout=recipe.readiness_timeout, poll_interval=recipe.health_poll_interval,
                               warmup=recipe.warmup, model=recipe.model, startup_budget=left)


def _record_start(record: dict) -> int:
    """One start's timeline into this Modal Environment's `sglang-starts` Dict (infra/runtime/remote.py)."""
    bucket = remote.starts_bucket(deployment.app_name, timeline.deployment_digest(deployment.to_dict()))
    return remote.ModalRemote().record_start(deployment.modal.environment, bucket, record)


def _start(snapshot: bool) -> lifecycle.ServerProcess:
    """Weights verified, compile caches restored, SGLang started and warmed, misses checked, the start recorded."""
    weights.require_downloaded(HF_CACHE_PATH, deployment)
    started = startup.start(deployment, sglang_args.launch_command(deployment), BASE_URL, _readiness(),
                            volume_root=KERNELS_PATH, local_root=compile_cache.LOCAL_ROOT, write=_record_start,
                            container_started=IMPORTED_AT, snapshot=snapshot)
    return started.server


@app.server(**modal_objects.options(spec.server(deployment)))
class SGLangServer:
    """Starts SGLang in @modal.enter; Modal routes traffic only once it is healthy and warm."""

    if deployment.startup.gpu_snapshot:

        @modal.enter(snap=True)
        def start_for_snapshot(self):
            """Boot, warm up, then hand GPU memory back so Modal snapshots a ready server."""
            self.server = _start(snapshot=True)

        @modal.enter(snap=False)
        def restore(self):
            """After a restore: take the GPU memory back and prove it with one short generation."""
            startup.restore_snapshot(deployment, BASE_URL, _readiness(), write=_record_start)

    else:

        @modal.enter()
        def start(self):
            self.server = _start(snapshot=False)

    @modal.exit()
    def stop(self):
        """Let in-flight requests finish within the grace Modal gives (exit_grace_period), then stop everything."""
        if server := getattr(self, "server", None):
            server.stop(lifecycle.drain_budget(recipe.exit_grace_period))


def apply_floor() -> dict:
    """Set the warm floor the schedule says holds now (infra/runtime/schedule.py), and log what and why."""
    modal_api = remote.ModalRemote()
    floor = schedule.apply(datetime.now(UTC), deployment.scaling.schedule, deployment.scaling,
                           lambda **settings: modal_api.update_autoscaler(deployment, **settings),
                           target=f"{deployment.app_name}/{spec.SERVER_NAME}")
    return floor.autoscaler_settings()


def _trigger(name: str):
    """A module-level function of its own per cron trigger: Modal finds a Function in the container by its name."""

    def trigger() -> dict:
        return apply_floor()

    trigger.__name__ = trigger.__qualname__ = name
    return trigger


for _name, _options in spec.scheduler(deployment).items():
    globals()[_name] = app.function(**modal_objects.options(_options))(_trigger(_name))
