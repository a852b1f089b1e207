"""`invoke status`: the current release, the ones before it, drift between what runs and what `plan` would deploy,
and the release ledger: per release, where it came from and what it measured and costs (infra/ledger.py)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass

from infra import gate, ledger, revisions
from infra.deployment import Deployment
from infra.plan import gpu_price
from infra.recipes.base import COMMIT_RE
from infra.releases import ReleaseStore
from stages.common import Context, StageResult, result

STAGE = "status"
SHOWN_HISTORY = 5


@dataclass(frozen=True)
class Status:
    current: dict | None
    history: list[dict]
    drift: list[str]
    ledger: list[dict] = dataclasses.field(default_factory=list)  # ledger.entry per release, newest first


def flatten(data: object, prefix: str = "") -> dict[str, object]:
    """{"recipe": {"tp_size": 2}} -> {"recipe.tp_size": 2}: drift is reported per setting, by its dotted name."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, object] = {}
    for key, value in data.items():
        out |= flatten(value, f"{prefix}.{key}" if prefix else key)
    return out


def drift(deployed: dict, planned: Deployment) -> list[str]:
    """Settings whose deployed value differs from what would be deployed now: 'name: deployed -> planned'."""
    have, want = flatten(deployed), flatten(json.loads(planned.to_json()))  # the manifest's form: tuples became lists
    return [f"{key}: {have.get(key)!r} -> {want.get(key)!r}" for key in sorted(set(have) | set(want)) if have.get(key) != want.get(key)]


def planned_now(ctx: Context, d: Deployment, current) -> Deployment:
    """What `plan` would deploy now. Unpinned revisions follow the last download here, else what runs: not drift."""
    known, r = revisions.recorded(ctx.state(d)), d.recipe
    model = None if COMMIT_RE.match(r.model_revision) else known.get(r.model) or current.model_revision
    draft = None
    if r.draft_model and not COMMIT_RE.match(r.draft_revision or ""):
        draft = known.get(r.draft_model) or current.draft_revision
    return d.with_recipe(r.with_revisions(model_revision=model, draft_revision=draft))


def run(ctx: Context, d: Deployment) -> StageResult[Status]:
    ctx.remote.require_credentials()
    manifest = ReleaseStore(ctx.remote).read(d)
    current = manifest.current
    if current is None:
        return result(STAGE, d, "ran", f"{d.env}/{d.recipe.name}: nothing deployed yet", Status(None, [], []))
    changes = drift(current.deployment, planned_now(ctx, d, current))
    earlier = manifest.history[1 : 1 + SHOWN_HISTORY]
    lines = [f"{d.env}/{d.recipe.name}: current {current.summary()}", f"  url: {current.url}"]
    lines += [f"  before: {release.summary()}" for release in earlier]
    lines.append("  drift: none (plan matches what runs)" if not changes else f"  drift: {len(changes)} setting(s) differ")
    lines += [f"    {c}" for c in changes]
    rows = [(r, ledger.priced(r, lambda gpu: gpu_price(ctx.settings, gpu))) for r in [current, *earlier]]
    lines += ["  ledger (newest first):", *(f"    {line}" for line in ledger.render_table(rows).splitlines())]
    lines += [f"    {r.release_id}: {gate.Override.from_dict(r.gate['override']).line()}"
              for r, _ in rows if r.gate and r.gate.get("override")]
    return result(STAGE, d, "ran", "\n".join(lines), Status(asdict(current), [asdict(r) for r in earlier], changes,
                                                             [ledger.entry(r, perf) for r, perf in rows]))
