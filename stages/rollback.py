"""`invoke rollback`: return an environment to its previous (or a named) version and record it.

Modal keeps every deployed version of an app; a rollback redeploys an old one as a
new version. The manifest gains a `rollback` release copying what that version ran.
"""

from __future__ import annotations

from infra.deployment import Deployment
from infra.errors import ConfigError, Refused
from infra.releases import ReleaseStore, rollback_entry
from stages.common import Context, StageResult, confirm_or_refuse

STAGE = "rollback"


def parse_version(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    digits = str(text).lstrip("v")
    if not digits.isdigit() or int(digits) < 1:
        raise ConfigError(f"--to {text!r}: expected an app version such as v3 or 3 (see `invoke status`)")
    return int(digits)


def run(ctx: Context, d: Deployment, to: str | None = None, *, confirm=input) -> StageResult:
    version = parse_version(to)
    ctx.remote.require_credentials()
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "rollback"):
        manifest = store.read(d)
        history = manifest.history
        current = manifest.current
        if version is None:
            target = manifest.previous()
            if target is None:
                raise Refused(f"{d.env}/{d.recipe} has no previous release to roll back to; nothing changed")
        else:
            target = next((r for r in history if r.version == version), None)
            if target is None:
                known = ", ".join(f"v{r.version}" for r in history if r.version) or "none"
                raise Refused(f"{d.env}/{d.recipe} has no recorded release v{version} (recorded: {known}); nothing changed")
        if current is not None and target.release_id == current.release_id:
            raise Refused(f"{d.env}/{d.recipe} already runs v{target.version}; nothing changed")
        if ctx.settings.release.guarded:
            confirm_or_refuse(ctx, f"rolling back guarded environment '{d.env}'",
                              f"Roll {d.recipe} in {d.env} back to v{target.version} ({target.tag})? [y/N] ", confirm)
        if ctx.dry_run:
            return StageResult(STAGE, d.env, d.recipe, "dry-run", f"rollback (dry run): would return to v{target.version} ({target.tag})")
        ctx.remote.rollback(d, target.version)
        latest = ctx.remote.history(d)[:1]
        entry = rollback_entry(target, latest[0]["version"] if latest else None,
                               note=f"manual rollback from v{current.version if current else '?'}")
        store.record(d, manifest, entry)
    return StageResult(STAGE, d.env, d.recipe, "ran",
                       f"rolled {d.env}/{d.recipe} back to v{target.version} ({target.tag}); now v{entry.version}",
                       {"rolled_back_to": target.version, "version": entry.version, "tag": target.tag})
