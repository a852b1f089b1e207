"""Stage 2: download the model (and draft model) into the weights Volume, once, at pinned revisions.

The remote job (infra/runtime/jobs.py -> infra/runtime/weights.py) writes a completion marker only after every file is
on the Volume and committed; a second run finds it and returns. Unpinned revisions come back resolved to commits, which
later stages pin (infra/control/revisions.py). The Hugging Face token is optional for public models
(`with_token_if_any`).
"""

from __future__ import annotations

from pydantic import BaseModel

from infra.runtime import spec
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.weights import Downloaded
from stages.common import Context, StageResult, fingerprint, remote_stage

STAGE = "download"


class Downloads(BaseModel):
    downloads: list[Downloaded]  # from the job, or the stage state's JSON: plain dicts either way


def with_token_if_any(ctx: Context, d: Deployment) -> Deployment:
    """`d` as the download job must run it: with the HF token's Secret where it exists, without it (said) for a public
    model; a gated model without one is refused. Modal resolves named Secrets when an app starts, so a missing one
    fails the whole job: decided here, before any remote work."""
    name = d.secrets.hf_token_secret
    if d.recipe.gated and not name:
        raise ConfigError(f"{d.recipe.model} is gated: set secrets.hf_token_secret in environments/{d.env}.toml to a "
                          "Modal Secret holding HF_TOKEN")
    if not name or ctx.remote.secret_exists(d.modal.environment, name):
        return d
    create = f"`modal secret create {name} HF_TOKEN=... --env {d.modal.environment}`"
    if d.recipe.gated:
        raise ConfigError(f"secrets.hf_token_secret = {name!r}: no such Modal Secret in environment "
                          f"{d.modal.environment}, and {d.recipe.model} is gated; create it with {create}")
    ctx.say(f"note: Modal Secret {name!r} does not exist in environment {d.modal.environment}; {d.recipe.model} is "
            f"public, so downloading without a Hugging Face token (rate limits apply; create it with {create})")
    return d.model_copy(update={"secrets": d.secrets.model_copy(update={"hf_token_secret": None})})


def run(ctx: Context, d: Deployment) -> StageResult[Downloads]:
    repos = ", ".join(f"{repo}@{revision}" for repo, revision in d.recipe.repositories())

    def download() -> tuple[Downloads, str]:
        job = with_token_if_any(ctx, d)
        with ctx.working(f"downloading {repos} into Volume {d.caches.weights_volume} "
                         f"(Modal environment {d.modal.cache_environment})"):
            outcome = Downloads(downloads=ctx.remote.run_download(job))
        lines = [f"{r.repo}@{r.requested} -> {r.commit}: {len(r.files)} files, {r.size_bytes / 1e9:.2f} GB"
                 + (" (already complete)" if r.skipped else "") for r in outcome.downloads]
        return outcome, "downloaded: " + "; ".join(lines)

    # What the download job fetches, and where it puts it.
    return remote_stage(ctx, STAGE, d, fingerprint(d.recipe.repositories(), spec.weights_volume(d)), Downloads,
                        would=f"download {repos} into Volume {d.caches.weights_volume} ({d.modal.cache_environment})",
                        work=download)
