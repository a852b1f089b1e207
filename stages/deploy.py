"""Stage 4: deploy the recipe's app into the environment's Modal Environment and record the release.

The deployment is tagged with the git commit (`git-<sha>`, `-dirty` for a dirty
tree) and recorded in the environment's release manifest, under the release lock.
If the deploy raises, the manifest is left exactly as it was.

Guarded environments (prod) refuse a dirty tree or a commit that is not on the
main branch unless --force, and ask for confirmation on a terminal unless --yes;
without a terminal and without --yes they refuse (CI passes --yes).
"""

from __future__ import annotations

from infra import gitinfo
from infra.deployment import Deployment
from infra.errors import Refused
from infra.gitinfo import GitInfo
from infra.releases import Manifest, Release, ReleaseStore, new_release_id
from stages.common import (
    Context,
    StageResult,
    confirm_or_refuse,
    dry_run,
    fingerprint,
    up_to_date,
)
from stages.download import pin_revisions

STAGE = "deploy"


def guard(ctx: Context, d: Deployment, git: GitInfo, *, confirm=input) -> None:
    """The prod guard: clean tree, on main, confirmed. Raises Refused; changes nothing."""
    release = ctx.settings.release
    if not release.guarded:
        return
    if not ctx.force:
        if git.dirty:
            raise Refused(
                f"refusing to deploy to guarded environment '{d.env}' from a dirty working tree "
                "(commit or stash your changes, or pass --force)"
            )
        if not gitinfo.is_on_branch(git.commit, release.main_branch, cwd=ctx.repo):
            raise Refused(
                f"refusing to deploy commit {git.commit[:12]} to guarded environment '{d.env}': it is not on "
                f"branch '{release.main_branch}' (merge it first, or pass --force)"
            )
    confirm_or_refuse(
        ctx, f"deploying to guarded environment '{d.env}'",
        f"Deploy {d.recipe} at {git.tag} to {d.env} (Modal environment {d.modal_environment})? [y/N] ", confirm,
    )


def deploy_and_record(
    ctx: Context,
    d: Deployment,
    store: ReleaseStore,
    manifest: Manifest,
    git: GitInfo,
    *,
    kind: str = "deploy",
    promoted_from: dict | None = None,
) -> tuple[Manifest, Release]:
    """Deploy, then record. Call with the release lock held. A failed deploy records nothing, and neither does
    one Modal skipped because nothing changed: the current release is returned as it is."""
    ctx.say(f"deploying {d.app_name} ({git.tag}) to Modal environment {d.modal_environment}...")
    info = ctx.remote.deploy(d, git.tag)
    current = manifest.current
    if info.get("changed") is False and current is not None and current.version == info.get("version"):
        return manifest, current
    release = Release(
        release_id=new_release_id(),
        env=d.env,
        recipe=d.recipe,
        kind=kind,
        commit=git.commit,
        dirty=git.dirty,
        tag=git.tag,
        app_name=d.app_name,
        modal_environment=d.modal_environment,
        image=d.sglang_image,
        model=d.model,
        model_revision=d.model_revision,
        draft_model=d.draft_model,
        draft_revision=d.draft_revision,
        deployment=d.to_dict(),
        version=info.get("version"),
        url=info.get("url"),
        app_id=info.get("app_id"),
        promoted_from=promoted_from,
    )
    return store.record(d, manifest, release), release


def deploy_fingerprint(d: Deployment, git: GitInfo) -> str:
    return fingerprint(d.to_dict(), git.tag)


def run(ctx: Context, d: Deployment, *, git: GitInfo | None = None, confirm=input) -> StageResult:
    d = pin_revisions(ctx, d)
    git = git or gitinfo.read(ctx.repo)
    fp = deploy_fingerprint(d, git)
    if done := up_to_date(ctx, STAGE, d, fp):
        return done
    guard(ctx, d, git, confirm=confirm)
    if done := dry_run(ctx, STAGE, d, f"deploy {d.app_name} at {git.tag} to Modal environment {d.modal_environment}"):
        return done
    ctx.remote.require_credentials()
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "deploy"):
        manifest = store.read(d)
        _, release = deploy_and_record(ctx, d, store, manifest, git)
    ctx.state(d).record(STAGE, fp, {"release_id": release.release_id, "url": release.url, "version": release.version})
    if release is manifest.current:  # Modal skipped the deploy: nothing changed, nothing recorded
        return StageResult(
            STAGE, d.env, d.recipe, "ran", f"no change: {d.app_name} is still v{release.version} ({release.tag}): {release.url}",
            {"release": release.release_id, "url": release.url, "version": release.version, "tag": release.tag, "changed": False},
        )
    return StageResult(
        STAGE, d.env, d.recipe, "ran",
        f"deployed {d.app_name} v{release.version} ({git.tag}): {release.url}",
        {"release": release.release_id, "url": release.url, "version": release.version, "tag": git.tag},
    )
