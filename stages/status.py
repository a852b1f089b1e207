"""`invoke status`: the current release, the ones before it, and drift between what runs and what `plan` would deploy."""

from __future__ import annotations

import json
from dataclasses import asdict

from infra.deployment import COMMIT_RE, Deployment
from infra.releases import ReleaseStore
from stages.common import Context, StageResult
from stages.download import resolved_revisions

STAGE = "status"
SHOWN_HISTORY = 5


def drift(deployed: dict, planned: Deployment) -> list[str]:
    """Settings whose deployed value differs from what would be deployed now: 'name: deployed -> planned'."""
    want = json.loads(planned.to_json())  # the manifest's form: tuples became lists
    lines = []
    for key in sorted(set(deployed) | set(want)):
        if deployed.get(key) != want.get(key):
            lines.append(f"{key}: {deployed.get(key)!r} -> {want.get(key)!r}")
    return lines


def planned_now(ctx: Context, d: Deployment, current) -> Deployment:
    """What `plan` would deploy now. Unpinned revisions follow the last download here, else what runs: not drift."""
    known = resolved_revisions(ctx, d)
    model = None if COMMIT_RE.match(d.model_revision) else known.get(d.model) or current.model_revision
    draft = None
    if d.draft_model and not COMMIT_RE.match(d.draft_revision or ""):
        draft = known.get(d.draft_model) or current.draft_revision
    return d.with_revisions(model_revision=model, draft_revision=draft)


def run(ctx: Context, d: Deployment) -> StageResult:
    ctx.remote.require_credentials()
    manifest = ReleaseStore(ctx.remote).read(d)
    current = manifest.current
    if current is None:
        return StageResult(STAGE, d.env, d.recipe, "ran", f"{d.env}/{d.recipe}: nothing deployed yet", {"current": None})
    changes = drift(current.deployment, planned_now(ctx, d, current))
    lines = [f"{d.env}/{d.recipe}: current {current.summary()}", f"  url: {current.url}"]
    for release in manifest.history[1 : 1 + SHOWN_HISTORY]:
        lines.append(f"  before: {release.summary()}")
    lines.append("  drift: none (plan matches what runs)" if not changes else f"  drift: {len(changes)} setting(s) differ")
    lines += [f"    {c}" for c in changes]
    return StageResult(
        STAGE, d.env, d.recipe, "ran", "\n".join(lines),
        {"current": asdict(current), "history": [asdict(r) for r in manifest.history[1 : 1 + SHOWN_HISTORY]], "drift": changes},
    )
