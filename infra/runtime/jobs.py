"""Modal Functions for the stages that run remotely: weight download (CPU) and kernel compile (GPU).

They live in their own app (`<app>-jobs`), run ephemerally by `invoke download` and
`invoke compile`, so that running them never starts the server's warm replicas.
Their options come from infra/runtime/spec.py (what `plan` prints); their bodies are plain
functions in infra/runtime/weights.py and infra/runtime/kernels.py.
"""

from __future__ import annotations

import os

import modal

from infra.runtime import current, kernels, modal_objects, spec, weights
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH

deployment = current.deployment()
current.check_modal_environment(deployment, dict(os.environ), modal.is_local())

specs = spec.modal_spec(deployment)
app = modal.App(**specs["jobs_app"])
download_options = modal_objects.options(specs["jobs"]["download_weights"])
compile_options = modal_objects.options(specs["jobs"]["compile_kernels"])


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
    """DeepGEMM, then a real server warmed with the deployment's arguments; every JIT cache published keyed
    (`force`: again, replacing what was published for this key)."""
    return kernels.compile_kernels(deployment, KERNELS_PATH,
                                   commit_volume=compile_options["volumes"][KERNELS_PATH].commit,
                                   force=force)
