"""Release records as the project writes them: a real `Release` of a real resolved deployment (no Modal involved).

For tests of what reads releases (the gate's baseline, the ledger, cold starts): the deployment is what `resolve`
gives for the environment, so every field a reader derives from it is the one a deploy records.
"""

from __future__ import annotations

from infra.control.resolve import resolve
from infra.control.settings import load_settings
from infra.perf.releases import Release
from infra.runtime.deployment import Deployment


def deployment(env: str = "prod", recipe: str = "qwen3-8b-low-latency", **recipe_changes) -> Deployment:
    d = resolve(load_settings(env), recipe)
    return d.with_recipe(d.recipe.model_copy(update=recipe_changes)) if recipe_changes else d


def release(version: int = 1, *, kind: str = "deploy", d: Deployment | None = None, **fields) -> Release:
    """Release v`version` of `d` (default: prod's qwen3-8b-low-latency), deployed an hour after the one before."""
    recorded = dict(release_id=f"r2026010{version % 10}-120000-abcde{version % 10}", commit=f"{version:x}" * 40,
                    dirty=False, tag=f"git-{version:x}", version=version, deployed_at=1767268800.0 + version * 3600,
                    deployed_by="ci@runner")
    return Release(kind=kind, deployment=d or deployment(), **(recorded | fields))
