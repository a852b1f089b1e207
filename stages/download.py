"""Stage 2: download the model (and draft model) into the weights Volume, once, at pinned revisions.

The remote job (infra/jobs.py -> infra/weights.py) writes a completion marker only
after every file is on the Volume and committed; a second run finds it and returns.
Unpinned revisions come back resolved to commits, which the deploy stage pins.
"""

from __future__ import annotations

from infra import weights
from infra.deployment import COMMIT_RE, Deployment
from infra.errors import ConfigError, Refused
from stages.common import Context, StageResult, dry_run, fingerprint, up_to_date

STAGE = "download"


def download_fingerprint(d: Deployment) -> str:
    return fingerprint(d.model, d.model_revision, d.draft_model, d.draft_revision, d.weights_volume, d.cache_environment)


def check_token(ctx: Context, d: Deployment) -> None:
    """A gated model needs a Hugging Face token from a Modal Secret that exists."""
    if not d.gated:
        return
    if not d.hf_token_secret:
        raise ConfigError(
            f"{d.model} is gated: set secrets.hf_token_secret in environments/{d.env}.toml to a Modal Secret holding HF_TOKEN"
        )
    if not ctx.remote.secret_exists(d.modal_environment, d.hf_token_secret):
        raise ConfigError(
            f"secrets.hf_token_secret = {d.hf_token_secret!r}: no such Modal Secret in environment {d.modal_environment}; "
            f"create it with `modal secret create {d.hf_token_secret} HF_TOKEN=... --env {d.modal_environment}`"
        )


def run(ctx: Context, d: Deployment) -> StageResult:
    fp = download_fingerprint(d)
    repos = [f"{repo}@{revision}" for repo, revision in d.repositories()]
    if done := up_to_date(ctx, STAGE, d, fp) or dry_run(
        ctx, STAGE, d, f"download {', '.join(repos)} into Volume {d.weights_volume} ({d.cache_environment})"
    ):
        return done
    ctx.remote.require_credentials()
    check_token(ctx, d)
    ctx.say(f"downloading {', '.join(repos)} into Volume {d.weights_volume} (Modal environment {d.cache_environment})...")
    results = ctx.remote.run_download(d)
    ctx.state(d).record(STAGE, fp, results)
    lines = [
        f"{r['repo']}@{r['requested']} -> {r['commit']}: {len(r['files'])} files, {r['size_bytes'] / 1e9:.2f} GB"
        + (" (already complete)" if r["skipped"] else "")
        for r in results
    ]
    return StageResult(STAGE, d.env, d.recipe, "ran", "downloaded: " + "; ".join(lines), {"downloads": results})


def resolved_revisions(ctx: Context, d: Deployment) -> dict[str, str]:
    """repo -> commit, as the last successful download on this machine resolved them."""
    entry = ctx.state(d).get(STAGE)
    return {r["repo"]: r["commit"] for r in entry["result"]} if entry else {}


def pin_revisions(ctx: Context, d: Deployment) -> Deployment:
    """`d` with unpinned revisions replaced by the commits the download stage resolved them to.

    From this machine's stage state when it has them, else from the ref markers the
    download job left on the weights Volume. Environments that require pinned
    revisions refuse to go on without them; others warn and follow the branch.
    """
    unpinned = {repo: ref for repo, ref in d.repositories() if not COMMIT_RE.match(ref)}
    if not unpinned:
        return d
    known = resolved_revisions(ctx, d)
    for repo, ref in unpinned.items():
        if repo not in known:
            raw = ctx.remote.read_file(d.cache_environment, d.weights_volume, weights.ref_relpath(repo, ref))
            if raw:
                known[repo] = raw.decode().strip()
    pinned = d.with_revisions(
        model_revision=known.get(d.model) if d.model in unpinned else None,
        draft_revision=known.get(d.draft_model) if d.draft_model in unpinned else None,
    )
    if problems := pinned.unpinned():
        message = f"{'; '.join(problems)} and no download resolved it: run `invoke download --env {d.env} --recipe {d.recipe}`"
        if ctx.settings.release.require_pinned_revisions:
            raise Refused(f"environment '{d.env}' requires pinned revisions: {message}")
        ctx.say(f"warning: {message}")
    return pinned
