"""Modal Functions for the stages that run remotely: weight download (CPU), kernel compile and acceptance suite (GPU).

Their own app (`<app>-jobs`), run ephemerally, so a job never starts the server's warm replicas.
"""

from __future__ import annotations

import os

import modal

from infra.runtime import acceptance, current, kernels, modal_objects, spec, weights
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH

deployment = current.deployment()
current.check_modal_environment(deployment, dict(os.environ), modal.is_local())

app = modal.App(name=deployment.jobs_app_name, tags=spec.tags(deployment, "jobs"))  # modal_spec's "jobs_app"
jobs = spec.jobs(deployment)
download_options = modal_objects.options(jobs["download_weights"])
compile_options = modal_objects.options(jobs["compile_kernels"])
gpu_test_options = modal_objects.options(jobs["gpu_test"])


@app.function(**download_options)
def download_weights() -> list[dict]:
    """The model, and the speculative draft model where there is one, at their pinned revisions."""
    commit = download_options["volumes"][HF_CACHE_PATH].commit
    return [
        weights.as_dict(weights.download(repo, revision, HF_CACHE_PATH, commit_volume=commit))
        for repo, revision in deployment.recipe.repositories()
    ]


@app.function(**compile_options)
def compile_kernels(force: bool = False) -> dict:
    """Every JIT cache compiled and published keyed (`force`: again, replacing what was published for this key)."""
    return kernels.compile_kernels(deployment, KERNELS_PATH,
                                   commit_volume=compile_options["volumes"][KERNELS_PATH].commit,
                                   force=force)


@app.function(**gpu_test_options)
def gpu_test(shape: str) -> dict:
    """`python -m pytest tests/gpu` at `shape` on the recipe's GPUs (a failing test is reported, not raised)."""
    timeout = spec.gpu_test_timeout(deployment) - 60  # pytest stops first, so its report still comes back
    return acceptance.run_suite(shape, deployment.recipe.name, timeout=timeout).model_dump()
