"""The Modal app: one recipe's SGLang server in one environment.

Deploy it with `invoke deploy --env ENV --recipe R`, or with Modal's own CLI:

    INFRA_ENV=prod INFRA_RECIPE=qwen3-8b-low-latency modal deploy -m infra.app --env prod

Modal imports this module twice: on the deploying machine, and again inside every
container, without the repository and with the container's own environment. Both
imports read the same `Deployment`: locally it is resolved from settings and
written into the server's environment (`INFRA_DEPLOYMENT`); in the container it is
read back from there. The definition Modal finds in the container is therefore the
one that was deployed, by construction (tests/test_app.py simulates that import).
"""

from __future__ import annotations

import os
import time

import modal

from infra import deployment as deployments
from infra import compile_cache, kernels, lifecycle, sglang_args, weights
from infra.deployment import SERVER_NAME
from infra.images import server_image
from infra.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from infra.volumes import cache_mounts

IMPORTED_AT = time.monotonic()  # the container's start, near enough: startup_timeout runs from about here
ENTER_SAFETY_SECONDS = 10  # kept from startup_timeout for failing loudly before Modal kills us
deployment = deployments.current()

deployments.check_modal_environment(deployment, dict(os.environ), modal.is_local())

app = modal.App(deployment.app_name, tags={"env": deployment.env, "recipe": deployment.recipe})

# Snapshots of GPU memory are alpha on Modal: only where the environment asks for them.
snapshot_options = (
    {"enable_memory_snapshot": True, "experimental_options": {"enable_gpu_snapshot": True}}
    if deployment.gpu_snapshot
    else {}
)
hf_secrets = [modal.Secret.from_name(deployment.hf_token_secret, environment_name=deployment.modal_environment)] if (
    deployment.hf_token_secret and not deployment.hf_hub_offline
) else []

# Options for Modal's Servers primitive (the successor of the reference documents'
# @app.cls + @modal.experimental.http_server + @modal.concurrent stack).
server_options = dict(
    name=SERVER_NAME,
    image=server_image(deployment),
    gpu=deployment.gpu,
    volumes=cache_mounts(deployment),
    env=deployment.server_env,
    secrets=hf_secrets,
    port=deployment.port,
    routing_region=deployment.routing_region,  # the documents' proxy region
    compute_region=deployment.compute_region,  # the documents' `region`
    target_concurrency=deployment.target_concurrency,  # the documents' `target_inputs`
    min_containers=deployment.min_containers,
    max_containers=deployment.max_containers,
    buffer_containers=deployment.buffer_containers,
    scaledown_window=deployment.scaledown_window,
    exit_grace_period=deployment.exit_grace_period,
    startup_timeout=deployment.startup_timeout,  # bounds the whole @modal.enter
    unauthenticated=not deployment.proxy_auth,
    include_source=False,  # the image mounts this package itself, assets included
    **snapshot_options,
)

BASE_URL = f"http://127.0.0.1:{deployment.port}"


def _readiness() -> lifecycle.Readiness:
    return lifecycle.Readiness(
        timeout=deployment.readiness_timeout,
        poll_interval=deployment.health_poll_interval,
        warmup=deployment.warmup,
        model=deployment.model,
        # startup_timeout bounds the whole @modal.enter: the first warm-up request (which may
        # compile) gets what is left of it.
        startup_budget=deployment.startup_timeout - ENTER_SAFETY_SECONDS - (time.monotonic() - IMPORTED_AT),
    )


def _restore_compile_cache() -> None:
    """This key's compiled caches, from the read-only Volume to local disk at the fixed path."""
    result = compile_cache.restore(KERNELS_PATH, kernels.kernel_fingerprint(deployment), compile_cache.LOCAL_ROOT)
    if result["restored"]:
        print(f"compile cache {result['fingerprint']}: {result['files']} files, {result['bytes'] / 1e6:.0f} MB "
              f"restored in {result['seconds']:.1f} s", flush=True)
    else:
        print(f"compile cache {result['fingerprint']}: {result['reason']}; SGLang compiles as it starts "
              f"(run `invoke compile --env {deployment.env} --recipe {deployment.recipe}`)", flush=True)


@app.server(**server_options)
class SGLangServer:
    """Starts SGLang in @modal.enter; Modal routes traffic only once it is healthy and warm."""

    if deployment.gpu_snapshot:

        @modal.enter(snap=True)
        def start_for_snapshot(self):
            """Boot, warm up, then hand GPU memory back so Modal snapshots a ready server."""
            weights.require_downloaded(HF_CACHE_PATH, deployment)
            _restore_compile_cache()
            self.server = lifecycle.start_for_snapshot(sglang_args.launch_command(deployment), BASE_URL, _readiness())

        @modal.enter(snap=False)
        def restore(self):
            """After a restore: take the GPU memory back and prove it with one short generation."""
            lifecycle.restore_from_snapshot(BASE_URL, _readiness())

    else:

        @modal.enter()
        def start(self):
            weights.require_downloaded(HF_CACHE_PATH, deployment)
            _restore_compile_cache()
            self.server = lifecycle.start_and_warm(sglang_args.launch_command(deployment), BASE_URL, _readiness())

    @modal.exit()
    def stop(self):
        if server := getattr(self, "server", None):
            server.stop()

