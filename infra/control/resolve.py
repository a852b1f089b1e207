"""Settings + recipe -> Deployment, and the checks that need both.

The recipe is resolved by applying the environment's `[recipes."<name>"]` knobs
to it with `dataclasses.replace`; every other part of the Deployment comes from
the environment's sections, field by field of the same name. Precedence for the
knobs both have (regions): the recipe's value, then the environment's
`[placement]`, then its `[recipes."<name>"]` table. Every check raises one
`ConfigError` line naming the setting, its value and what is allowed; rules that
concern one value live with that value (settings validators); only the rules that
need the whole deployment live here.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from infra.runtime import deployment as parts
from infra.control import sglang_flags
from infra.control import objectives
from infra.runtime import sglang_args
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import COMMIT_RE, Recipe
from infra.control.settings import RecipeOverrides, Settings

# Time Modal needs around the health wait: process launch, Volume mounts, GPU init.
STARTUP_MARGIN_SECONDS = 60
# Endpoints and flags the GPU-snapshot start-up needs from SGLang.
SNAPSHOT_ENDPOINTS = ("/release_memory_occupation", "/resume_memory_occupation")
SNAPSHOT_FLAGS = ("--enable-memory-saver", "--enable-weights-cpu-backup")
REVISIONS = ("model_revision", "draft_revision")


def resolve(settings: Settings, recipe_name: str) -> Deployment:
    knobs = settings.recipes.get(recipe_name, RecipeOverrides()).given()
    recipe = resolve_recipe(RECIPES[recipe_name], knobs)
    placement = {**_section(parts.Placement, settings.placement), **_pick(parts.Placement, knobs)}
    d = Deployment(
        env=settings.env,
        recipe=recipe,
        modal=parts.ModalTarget(
            environment=settings.modal_environment,
            cache_environment=settings.cache_environment,
            app_name=f"{settings.modal.app_prefix}-{recipe.name.replace('.', '-')}",
        ),
        scaling=parts.Scaling(**_section(parts.Scaling, settings.scaling)
                              | {"schedule": tuple(w.window() for w in settings.scaling.schedule)}),
        placement=parts.Placement(
            compute_region=_first(placement["compute_region"], recipe.compute_region),
            routing_region=_first(placement["routing_region"], recipe.routing_region),
        ),
        server=parts.Server(port=_first(settings.server.port, recipe.port), hf_hub_offline=settings.server.hf_hub_offline),
        auth=parts.Auth(**_section(parts.Auth, settings.auth)),
        secrets=parts.Secrets(**_section(parts.Secrets, settings.secrets)),
        caches=parts.Caches(**_section(parts.Caches, settings.caches)),
        gpu_snapshot=_first(knobs.get("gpu_snapshot"), settings.cold_start.gpu_snapshot),
    )
    validate(d, settings, f'recipes."{recipe_name}"')
    return d


def gate_for(settings: Settings, recipe_name: str) -> objectives.Gate:
    """The promotion gate into this environment for one recipe: `[gate]` with `[recipes."<name>".gate]` applied.

    Not a part of the Deployment: objectives decide whether a release may arrive,
    not what runs, so changing them must neither redeploy nor show as drift, and the
    container never needs them.
    """
    return objectives.effective(settings.gate, settings.recipes.get(recipe_name, RecipeOverrides()).gate)


def resolve_recipe(recipe: Recipe, knobs: dict[str, Any]) -> Recipe:
    """The recipe with an environment's knobs applied: those named like a recipe field, and the revisions.

    Knobs named like an environment part's field (compute_region is both a recipe
    default and a placement field) belong to the environment: a promotion must not
    carry them in the recipe.
    """
    own = {k: v for k, v in knobs.items() if k not in _environment_names() and k not in REVISIONS}
    recipe = dataclasses.replace(recipe, **_pick(Recipe, own))
    return recipe.with_revisions(knobs.get("model_revision"), knobs.get("draft_revision"))


@functools.cache
def _environment_names() -> frozenset[str]:
    """Every field of the Deployment that is the environment's: its parts' fields and its own, but the recipe."""
    names: set[str] = set()
    for name, tp in typing.get_type_hints(Deployment).items():
        if name == "recipe":
            continue
        names |= _names(tp) if dataclasses.is_dataclass(tp) else {name}
    return frozenset(names)


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _pick(cls, values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in _names(cls)}


def _section(cls, section) -> dict[str, Any]:
    """A settings section's values for the deployment part of the same shape."""
    return {name: getattr(section, name) for name in _names(cls)}


def _first(*values):
    return next((v for v in values if v is not None), None)


def validate(d: Deployment, settings: Settings, where: str) -> None:
    r = d.recipe
    if r.tp_size != r.gpu_count:
        raise ConfigError(
            f"{where}.tp_size = {r.tp_size} does not match gpu_count = {r.gpu_count}: "
            "tensor parallelism puts one shard on each GPU, so set tp_size equal to gpu_count"
        )
    if settings.release.require_pinned_revisions:
        for label, value in (("model_revision", r.model_revision), ("draft_revision", r.draft_revision)):
            if value is not None and not COMMIT_RE.match(value):
                raise ConfigError(
                    f"{where}.{label} = {value!r}: environment '{d.env}' requires pinned revisions "
                    "(release.require_pinned_revisions); allowed: a 40-hex commit id"
                )
    if d.gpu_snapshot and r.gpu_count > 1:
        raise ConfigError(
            f"{where}.gpu_snapshot = true with {r.gpu_count} GPUs: Modal's multi-GPU SGLang example dropped memory "
            "snapshots because restores failed with tensor parallelism, and nothing here has shown otherwise; allowed: "
            "false for recipes on more than one GPU (turn snapshots on per recipe, recipes.\"<name>\".gpu_snapshot = true)"
        )
    if d.gpu_snapshot:
        missing = [e for e in SNAPSHOT_ENDPOINTS if not sglang_flags.has_endpoint(r.sglang_version, e)]
        missing += [f for f in SNAPSHOT_FLAGS if f not in sglang_flags.known_flags(r.sglang_version)]
        if missing:
            raise ConfigError(
                f"{where}.gpu_snapshot = true: SGLang {r.sglang_version} lacks {', '.join(missing)}; "
                "allowed: false for this recipe"
            )
    budget = r.readiness_timeout + r.warmup_budget + STARTUP_MARGIN_SECONDS
    if r.startup_timeout < budget:
        raise ConfigError(
            f"{where}.startup_timeout = {r.startup_timeout}: Modal kills a container whose start-up exceeds it, "
            f"and start-up may take readiness_timeout {r.readiness_timeout} s + warm-up {r.warmup_budget:g} s "
            f"+ {STARTUP_MARGIN_SECONDS} s margin; allowed: >= {budget:g}"
        )
    sglang_flags.check_flags(d)
    own = settings.recipes.get(r.name, RecipeOverrides()).gate.objectives
    objectives.resolve(gate_for(settings, r.name), r.target_concurrency, where=f"{where}.gate" if own else "gate")
