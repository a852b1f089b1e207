"""Stage 4: deploy the recipe's app into the environment's Modal Environment and record the release.

Tagged with the git commit (`git-<sha>`, `-dirty` for a dirty tree) and recorded in the release manifest under the
release lock. A deploy that raises leaves the manifest as it was; one Modal skipped (nothing changed) records no
release and says which version still runs. Guarded environments (prod) refuse a dirty tree or a commit off the main
branch unless --force, and ask on a terminal unless --yes (refused without either). All of that and the credentials
are checked before the first remote call (`preflight`), also as the fourth stage of a pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.control import gitinfo, revisions
from infra.control.gitinfo import GitInfo
from infra.perf.gate import GateRecord
from infra.perf.releases import Manifest, Origin, Release, ReleaseStore, new_release_id
from infra.runtime.deployment import Deployment
from infra.runtime.errors import Refused
from stages.common import (
    Context,
    StageResult,
    apply_schedule,
    confirm_or_refuse,
    dry_run,
    fingerprint,
    record,
    result,
    up_to_date,
)

STAGE = "deploy"


@dataclass(frozen=True)
class Options:
    git: GitInfo | None = None  # the checkout's state, read by preflight (None: read it now)
    confirmed: bool = False  # preflight already ran (a pipeline checks everything before its first stage)
    after_download: bool = False  # a flow's download stage ran first: in a dry run, it would have pinned revisions


@dataclass(frozen=True)
class Deployed:
    release_id: str
    version: int | None
    url: str | None
    tag: str
    changed: bool = True  # False: Modal found the definition unchanged and kept the running version


def guard(ctx: Context, d: Deployment, git: GitInfo) -> None:
    """The prod guard's git half: a clean tree, on main (unless --force). Raises Refused; changes nothing."""
    release = ctx.settings.release
    if not release.guarded or ctx.force:
        return
    if git.dirty:
        raise Refused(f"refusing to deploy to guarded environment '{d.env}' from a dirty working tree "
                      "(commit or stash your changes, or pass --force)")
    if not gitinfo.is_on_branch(git.commit, release.main_branch, cwd=ctx.repo):
        raise Refused(f"refusing to deploy commit {git.commit[:12]} to guarded environment '{d.env}': it is not on "
                      f"branch '{release.main_branch}' (merge it first, or pass --force)")


def preflight(ctx: Context, d: Deployment, *, confirm=input) -> Options:
    """Every local precondition of a deploy, in the order a user can fix them without being asked twice: git state
    and branch, (settings: already loaded), credentials, then the guarded environment's confirmation, so that a
    "yes" is never followed by "credentials missing"."""
    git = gitinfo.read(ctx.repo)
    guard(ctx, d, git)
    if not ctx.dry_run:
        ctx.remote.require_credentials()
    if ctx.settings.release.guarded:
        confirm_or_refuse(ctx, f"deploying to guarded environment '{d.env}'", f"Deploy {d.recipe.name} at {git.tag} "
                          f"to {d.env} (Modal environment {d.modal.environment})? [y/N] ", confirm)
    return Options(git=git, confirmed=True)


def refuse_unpinned(ctx: Context, d: Deployment) -> None:
    """A dry run where revisions must be pinned: what this machine knows must pin them, or it says no, as the real
    deploy does when the Volume has no record either (a dry run cannot read it)."""
    if not ctx.settings.release.require_pinned_revisions:
        return
    known = revisions.pin(d, ctx.state(d), None, required=False, say=lambda _: None)  # what this machine recorded
    if not (problems := known.recipe.unpinned()):
        return
    knob = "draft_revision" if d.recipe.draft_model and "draft model" in problems[0] else "model_revision"
    raise Refused(f"environment '{d.env}' requires pinned revisions (release.require_pinned_revisions): "
                  f"{problems[0]}, and no download on this machine resolved it (a dry run reads no Volume); allowed: a "
                  f"40-hex commit in recipes.\"{d.recipe.name}\".{knob}, or run `invoke download --env {d.env} "
                  f"--recipe {d.recipe.name}` first")


def deploy_and_record(ctx: Context, d: Deployment, store: ReleaseStore, manifest: Manifest, git: GitInfo, *,
                      kind: str = "deploy", promoted_from: Origin | None = None,
                      gate: GateRecord | None = None) -> tuple[Manifest, Release | None]:
    """Deploy, then record. Call with the release lock held. A failed deploy records nothing;
    an unchanged one (Modal skipped it) records nothing and returns None."""
    with ctx.working(f"deploying {d.app_name} ({git.tag}) to Modal environment {d.modal.environment}"):
        info = ctx.remote.deploy(d, git.tag)
    current = manifest.current
    if not info.changed and current is not None and current.version == info.version:
        return manifest, None  # the manifest is true as it is; a skip it does not know of is recorded below
    release = Release(release_id=new_release_id(), kind=kind, commit=git.commit, dirty=git.dirty, tag=git.tag,
                      deployment=d, version=info.version, url=info.url, app_id=info.app_id,
                      promoted_from=promoted_from, gate=gate)
    return store.record(d, manifest, release), release


def run(ctx: Context, d: Deployment, options: Options = Options(), *, confirm=input) -> StageResult[Deployed]:
    if not options.confirmed:
        options = preflight(ctx, d, confirm=confirm)
    git = options.git or gitinfo.read(ctx.repo)
    if ctx.dry_run and not options.after_download:
        refuse_unpinned(ctx, d)
    d = ctx.pinned(d)
    fp = fingerprint(d.to_dict(), git.tag)
    if done := up_to_date(ctx, STAGE, d, fp, Deployed):
        return done
    if done := dry_run(ctx, STAGE, d, f"deploy {d.app_name} at {git.tag} to Modal environment {d.modal.environment}"):
        return done
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "deploy"):
        manifest = store.read(d)
        _, release = deploy_and_record(ctx, d, store, manifest, git)
        apply_schedule(ctx, d)
    if release is None:
        current = manifest.current  # Modal skipped the deploy, and the manifest already says what runs
        still = Deployed(current.release_id, current.version, current.url, current.tag, changed=False)
        return result(STAGE, d, "unchanged",
                      f"no change: {d.app_name} is still v{current.version} ({current.tag}): {current.url}", still)
    outcome = Deployed(release.release_id, release.version, release.url, git.tag)
    record(ctx, STAGE, d, fp, outcome)
    return result(STAGE, d, "ran", f"deployed {d.app_name} v{release.version} ({git.tag}): {release.url}", outcome)
