"""`invoke promote --from staging --to prod`: the release that passed staging, and nothing else, goes to prod.

Refuses, changing nothing, when staging has no release, when its smoke test did
not pass, when it was deployed from a dirty tree, or when this checkout is not the
commit staging runs (`--from-manifest` instead re-runs the promotion from a git
worktree of that commit). Deploys the same release (commit, image, model and draft
revisions) with the target's own scaling, region and auth, smoke-tests it, and if
that fails rolls the target back to its previous version (Modal keeps app versions),
records it, and exits non-zero. The whole promotion holds the target's release lock:
a concurrent promotion is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from infra import gitinfo, smoketest
from infra.deployment import DecodeError, Deployment
from infra.errors import ConfigError, Refused, StageError
from infra.gitinfo import GitInfo
from infra.releases import Release, ReleaseStore, rollback_entry
from infra.resolve import resolve
from infra.settings import Settings
from stages.common import (
    Context,
    StageResult,
    apply_schedule,
    confirm_or_refuse,
    result,
    running,
)
from stages.deploy import deploy_and_record

STAGE = "promote"


@dataclass(frozen=True)
class Options:
    recipe: str
    from_manifest: bool = False  # re-run from a git worktree of the commit the source runs


@dataclass(frozen=True)
class Promoted:
    release_id: str
    version: int | None
    url: str | None
    promoted_from: dict


def same_release(target: Deployment, release: Release) -> Deployment:
    """The target environment's deployment serving the release's recipe, whole: what staging ran is what prod runs."""
    try:
        return target.with_recipe(Deployment.from_dict(release.deployment).recipe)
    except DecodeError as err:
        raise Refused(f"release {release.release_id} was recorded by an older version of this package ({err}); "
                      f"redeploy {release.env} to record it again; nothing changed") from None


def check_direction(source: Settings, target: Settings) -> None:
    """Releases move one way: each environment names the one it takes them from (release.promote_from)."""
    if source.env == target.env:
        raise ConfigError(f"promote --from {source.env} --to {target.env}: source and target are the same environment; "
                          "promote moves a release between two environments (e.g. --from staging --to prod)")
    allowed = target.release.promote_from
    if allowed != source.env:
        path = f"--from {allowed} --to {target.env}" if allowed else f"none: {target.env} is deployed by `invoke pipeline`"
        raise Refused(f"promote --from {source.env} --to {target.env}: {target.env} takes releases only from "
                      f"{allowed or 'no environment'} (release.promote_from in environments/{target.env}.toml); "
                      f"allowed: {path}; nothing changed")


def check_source(source_env: str, target_env: str, release: Release | None, recipe: str) -> Release:
    if release is None:
        raise Refused(f"{source_env} has no release of {recipe}: run `invoke pipeline --env {source_env}` first; nothing changed")
    if not release.smoke_passed:
        why = f"its smoke test failed ({release.smoke.get('error')})" if release.smoke else "it has not been smoke-tested"
        raise Refused(
            f"{source_env}'s current release of {recipe} ({release.release_id}, {release.tag}) is not validated: {why}; "
            f"run `invoke smoke --env {source_env}`; nothing changed"
        )
    if release.dirty:
        raise Refused(f"{source_env}'s release {release.release_id} was deployed from a dirty tree ({release.tag}); "
                      f"{target_env} takes only committed releases; nothing changed")
    return release


def run(source: Context, target: Context, options: Options, *, confirm=input) -> StageResult[Promoted]:
    src_env, dst_env, recipe = source.settings.env, target.settings.env, options.recipe
    check_direction(source.settings, target.settings)
    if target.settings.release.guarded:  # asked before anything remote, like every local precondition
        confirm_or_refuse(target, f"promoting to guarded environment '{dst_env}'",
                          f"Promote {recipe} from {src_env} to {dst_env}? [y/N] ", confirm)
    target.remote.require_credentials()
    store = ReleaseStore(target.remote)
    d_src = resolve(source.settings, recipe)
    release = check_source(src_env, dst_env, store.read(d_src).current, recipe)
    git = gitinfo.read(target.repo)
    if git.commit != release.commit or git.dirty:
        if options.from_manifest:
            return _from_worktree(target, src_env, dst_env, recipe, release)
        here = f"{git.commit[:12]}{' with uncommitted changes' if git.dirty else ''}"
        raise Refused(
            f"this checkout is at {here} but {src_env} runs {release.commit[:12]}: `git checkout {release.commit}` "
            "or pass --from-manifest to promote from a worktree of that commit; nothing changed"
        )
    d = same_release(resolve(target.settings, recipe), release)
    if target.dry_run:
        return result(STAGE, d, "dry-run", f"promote (dry run, {dst_env}/{recipe}): would deploy {release.tag} from {src_env}")

    origin = {"env": src_env, "release_id": release.release_id, "commit": release.commit, "version": release.version}
    with store.locked(d, "promote"):
        manifest = store.read(d)
        previous = manifest.current
        manifest, promoted = deploy_and_record(target, d, store, manifest, GitInfo(release.commit, False, None),
                                               kind="promote", promoted_from=origin)
        if promoted is None:
            version = f"v{previous.version}" if previous and previous.version else "its current version"
            return result(STAGE, d, "unchanged", f"promote: no change, {dst_env}/{recipe} already runs {release.tag} ({version})")
        apply_schedule(target, d)
        try:
            outcome = smoketest.check(d, promoted.url, say=target.say)
        except StageError as err:
            manifest = store.update_current(d, manifest, smoke={"passed": False, "error": str(err), "at": time.time()})
            rolled = _roll_back(target, d, store, manifest, previous, reason=f"automatic rollback: {err}")
            raise StageError(STAGE, f"{dst_env} smoke test failed ({err}); {rolled}") from None
        store.update_current(d, manifest, smoke=outcome)
    return result(
        STAGE, d, "ran",
        f"promoted {release.tag} from {src_env} to {dst_env} as v{promoted.version}: {promoted.url} "
        f"(smoke passed, first token {outcome['ttft']:.2f} s)",
        Promoted(promoted.release_id, promoted.version, promoted.url, origin),
    )


def _roll_back(ctx: Context, d: Deployment, store: ReleaseStore, manifest, previous: Release | None, reason: str) -> str:
    """Return the target to the version it ran before; record that. Returns a sentence for the error."""
    if previous is None or previous.version is None:
        return "no previous version to roll back to: the failed release stays deployed (roll forward or stop the app)"
    ctx.remote.rollback(d, previous.version)
    latest = ctx.remote.history(d)[:1]
    rollback = rollback_entry(previous, latest[0]["version"] if latest else None, note=reason)
    store.record(d, manifest, rollback)
    apply_schedule(ctx, running(d, previous))
    return f"rolled back to v{previous.version} ({previous.tag}) as v{rollback.version}"


def _from_worktree(ctx: Context, src_env: str, dst_env: str, recipe: str, release: Release) -> StageResult:
    """Re-run this promotion from a git worktree of the release's commit: its code, its pinned values."""
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        tree = os.path.join(tmp, "tree")
        added = subprocess.run(["git", "worktree", "add", "--detach", tree, release.commit], cwd=ctx.repo,
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise Refused(f"cannot check out {release.commit[:12]} (the commit {src_env} runs): {added.stderr.strip()}")
        try:
            ctx.say(f"promoting from a worktree of {release.commit[:12]} (the commit {src_env} runs)...")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")]))
            done = subprocess.run(
                [sys.executable, "-m", "invoke", "promote", "--from", src_env, "--to", dst_env, "--recipe", recipe, "--yes"]
                + (["--dry-run"] if ctx.dry_run else []),
                cwd=tree, env=env, text=True,
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ctx.repo, capture_output=True)
    if done.returncode != 0:
        raise StageError(STAGE, f"promotion from the worktree of {release.commit[:12]} failed (exit {done.returncode})")
    return StageResult(STAGE, dst_env, recipe, "ran", f"promoted {release.tag} from {src_env} to {dst_env} (from its own commit)")
