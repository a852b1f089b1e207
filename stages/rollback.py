"""`invoke rollback`: return an environment to its previous (or a named) version and record it.

Modal keeps every deployed version of an app; a rollback redeploys an old one as a
new version. The manifest gains a `rollback` release copying what that version ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.perf.releases import Manifest, Release, ReleaseStore, rollback_entry
from infra.runtime.deployment import Deployment
from infra.runtime.errors import Refused
from stages.common import Context, StageResult, apply_schedule, confirm_or_refuse, result

STAGE = "rollback"


@dataclass(frozen=True)
class Options:
    to: int | None = None  # the app version to return to; None: the previous release


@dataclass(frozen=True)
class RolledBack:
    rolled_back_to: int | None
    version: int | None
    tag: str


def run(ctx: Context, d: Deployment, options: Options = Options(), *, confirm=input) -> StageResult[RolledBack]:
    version = options.to
    to = f"v{version}" if version else "its previous release"
    if ctx.dry_run:  # offline: no credentials, no manifest read, no lock
        return result(STAGE, d, "dry-run", f"rollback (dry run, {d.env}/{d.recipe.name}): would return {d.app_name} "
                                           f"(Modal environment {d.modal.environment}) to {to} and record it")
    ctx.remote.require_credentials()  # before the question: a "yes" is never followed by "credentials missing"
    if ctx.settings.release.guarded:  # asked before anything remote, like every local precondition
        confirm_or_refuse(ctx, f"rolling back guarded environment '{d.env}'",
                          f"Roll {d.recipe.name} in {d.env} back to {to}? [y/N] ", confirm)
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "rollback"):
        manifest = store.read(d)
        target, current = choose(d, manifest, version, force=ctx.force), manifest.current
        entry = roll_back_to(ctx, d, store, manifest, target,
                             note=f"manual rollback from v{current.version if current else '?'}")
    return result(STAGE, d, "ran", f"rolled {d.env}/{d.recipe.name} back to v{target.version} ({target.tag}); now "
                                   f"v{entry.version}",
                  RolledBack(target.version, entry.version, target.tag))


def roll_back_to(ctx: Context, d: Deployment, store: ReleaseStore, manifest: Manifest, target: Release,
                 note: str) -> Release:
    """Redeploy the version `target` recorded as a new version, record that as a rollback release, and put the
    schedule it ran with back. Call with the release lock held. The one rollback: by hand, and a promotion's own."""
    ctx.remote.rollback(d, target.version)
    latest = ctx.remote.history(d)[:1]
    entry = rollback_entry(target, latest[0]["version"] if latest else None, note=note)
    store.record(d, manifest, entry)
    apply_schedule(ctx, target.deployment)
    return entry


def choose(d: Deployment, manifest: Manifest, version: int | None, *, force: bool = False) -> Release:
    """The recorded release to return to: `version`, or the one before the current. Refused if there is none, or
    (unless `force`) if its smoke test failed."""
    if version is None:
        target = manifest.previous()
        if target is None:
            raise Refused(f"{d.env}/{d.recipe.name} has no previous release to roll back to; nothing changed")
    else:
        target = next((r for r in manifest.history if r.version == version), None)
        if target is None:
            known = ", ".join(f"v{r.version}" for r in manifest.history if r.version) or "none"
            raise Refused(f"{d.env}/{d.recipe.name} has no recorded release v{version} (recorded: {known}); nothing "
                          "changed")
    if manifest.current is not None and target.release_id == manifest.current.release_id:
        raise Refused(f"{d.env}/{d.recipe.name} already runs v{target.version}; nothing changed")
    if target.smoke and not target.smoke_passed and not force:
        raise Refused(f"{d.env}/{d.recipe.name} v{target.version} ({target.tag}) failed its smoke test "
                      f"({target.smoke.error}); allowed: another version, or --force; nothing changed")
    return target
