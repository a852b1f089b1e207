"""Modal Functions for the stages that run remotely: weight download (CPU) and kernel compile (GPU).

They live in their own app (`<app>-jobs`), run ephemerally by `invoke download` and
`invoke compile`, so that running them never starts the server's warm replicas.
Their bodies are plain functions in infra/weights.py and infra/kernels.py.
"""

from __future__ import annotations

import os

import modal

from infra import deployment as deployments
from infra import compile_cache, kernels, weights
from infra.deployment import DEPLOYMENT_VARIABLE
from infra.images import download_image, server_image
from infra.recipes.base import KERNELS_PATH, HF_CACHE_PATH
from infra.sglang_args import COMPILE_TIMEOUT
from infra.volumes import kernels_volume, weights_volume

deployment = deployments.current()
deployments.check_modal_environment(deployment, dict(os.environ), modal.is_local())

app = modal.App(f"{deployment.app_name}-jobs", tags={"env": deployment.env, "recipe": deployment.recipe})
job_env = {DEPLOYMENT_VARIABLE: deployment.to_json()}
hf_secrets = (
    [modal.Secret.from_name(deployment.hf_token_secret, environment_name=deployment.modal_environment)]
    if deployment.hf_token_secret
    else []
)
weights_cache = weights_volume(deployment)


@app.function(
    image=download_image(deployment),
    volumes={HF_CACHE_PATH: weights_cache},
    secrets=hf_secrets,  # HF_TOKEN, if the environment names a secret; never printed
    env=job_env,
    cpu=4.0,
    memory=8192,
    timeout=3 * 60 * 60,
    include_source=False,
)
def download_weights() -> list[dict]:
    """The model, and the speculative draft model where there is one, at their pinned revisions."""
    return [
        weights.as_dict(weights.download(repo, revision, HF_CACHE_PATH, commit_volume=weights_cache.commit))
        for repo, revision in deployment.repositories()
    ]


kernel_cache = kernels_volume(deployment)


@app.function(
    image=server_image(deployment),
    gpu=deployment.gpu,  # kernels are compiled for the GPU that will run them
    volumes={HF_CACHE_PATH: weights_cache, KERNELS_PATH: kernel_cache},  # the one writer of the compile caches
    # The weights come from the download stage; every cache variable points at the fixed local root.
    env=job_env | {"HF_HUB_OFFLINE": "1"} | compile_cache.environment(),
    # DeepGEMM, then a whole server start with its warm-up, then the copy to the Volume.
    timeout=COMPILE_TIMEOUT + deployment.startup_timeout + 900,
    include_source=False,
)
def compile_kernels() -> dict:
    return kernels.compile_kernels(deployment, KERNELS_PATH, commit_volume=kernel_cache.commit)
