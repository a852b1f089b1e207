"""Settings + recipe -> Deployment, and the checks that need both.

The recipe is resolved by applying the environment's `[recipes."<name>"]` knobs to it; every other part of the
Deployment is the environment's section of the same name (the server's port, left unset, is the recipe's), and
`[startup]` takes the recipe table's own `gpu_snapshot` when it sets one. Regions are `[placement]`'s alone: the
environment's, never the recipe's (a promotion carries the recipe, not where it ran). Rules that concern one value live
with that value (the models' fields); only the rules that need the whole deployment live here.
"""

from __future__ import annotations

from infra.control import objectives, sglang_flags
from infra.control.settings import RECIPE_KNOBS, Settings, knobs_given
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import COMMIT_RE, Recipe

# Time Modal needs around the health wait: process launch, Volume mounts, GPU init.
STARTUP_MARGIN_SECONDS = 60
# Endpoints and flags the GPU-snapshot start-up needs from SGLang.
SNAPSHOT_ENDPOINTS = ("/release_memory_occupation", "/resume_memory_occupation")
SNAPSHOT_FLAGS = ("--enable-memory-saver", "--enable-weights-cpu-backup")


def resolve(settings: Settings, recipe_name: str, base: Recipe | None = None) -> Deployment:
    """The deployment of recipe `recipe_name` (or of `base`, another version of it: `invoke upgrade`) in `settings`."""
    knobs = settings.knobs(recipe_name)
    base = base or RECIPES[recipe_name]
    recipe = base.model_copy(update={k: v for k, v in knobs_given(knobs).items() if k in RECIPE_KNOBS})
    recipe = recipe.with_revisions(knobs.model_revision, knobs.draft_revision)
    startup = settings.startup
    if knobs.gpu_snapshot is not None:
        startup = startup.model_copy(update={"gpu_snapshot": knobs.gpu_snapshot})
    d = Deployment(env=settings.env, recipe=recipe, scaling=settings.scaling, placement=settings.placement,
                   modal=settings.modal.model_copy(update={"environment": settings.modal_environment,
                                                           "cache_environment": settings.cache_environment}),
                   server=settings.server.model_copy(update={"port": settings.server.port or recipe.port}),
                   auth=settings.auth, secrets=settings.secrets, caches=settings.caches, startup=startup)
    validate(d, settings, f'recipes."{recipe_name}"')
    return d


def gate_for(settings: Settings, recipe_name: str) -> objectives.Gate:
    """The promotion gate into this environment for one recipe: `[gate]` with `[recipes."<name>".gate]` applied. Not
    a part of the Deployment: objectives decide whether a release may arrive, not what runs, so changing them must
    neither redeploy nor show as drift."""
    return objectives.effective(settings.gate, settings.knobs(recipe_name).gate)


def validate(d: Deployment, settings: Settings, where: str) -> None:
    r = d.recipe
    if settings.release.require_pinned_revisions:
        for label, value in (("model_revision", r.model_revision), ("draft_revision", r.draft_revision)):
            if value is not None and not COMMIT_RE.match(value):
                raise ConfigError(f"{where}.{label} = {value!r}: environment '{d.env}' requires pinned revisions "
                                  "(release.require_pinned_revisions); allowed: a 40-hex commit id")
    if d.startup.gpu_snapshot and r.gpu_count > 1:
        raise ConfigError(f"{where}.gpu_snapshot = true with {r.gpu_count} GPUs: Modal's multi-GPU SGLang example "
                          "dropped memory snapshots because restores failed with tensor parallelism, and nothing here "
                          "has shown otherwise; allowed: false for recipes on more than one GPU (turn snapshots on per "
                          "recipe, recipes.\"<name>\".gpu_snapshot = true)")
    if d.startup.gpu_snapshot:
        missing = [e for e in SNAPSHOT_ENDPOINTS if not sglang_flags.has_endpoint(r.sglang_version, e)]
        missing += [f for f in SNAPSHOT_FLAGS if f not in sglang_flags.known_flags(r.sglang_version)]
        if missing:
            raise ConfigError(f"{where}.gpu_snapshot = true: SGLang {r.sglang_version} lacks {', '.join(missing)}; "
                              "allowed: false for this recipe")
    budget = r.readiness_timeout + r.warmup_budget + STARTUP_MARGIN_SECONDS
    if r.startup_timeout < budget:
        raise ConfigError(f"{where}.startup_timeout = {r.startup_timeout}: Modal kills a container whose start-up "
                          f"exceeds it, and start-up may take readiness_timeout {r.readiness_timeout} s + warm-up "
                          f"{r.warmup_budget:g} s + {STARTUP_MARGIN_SECONDS} s margin; allowed: >= {budget:g}")
    sglang_flags.check_flags(d)
    own = settings.knobs(r.name).gate.objectives
    objectives.resolve(gate_for(settings, r.name), r.target_concurrency, where=f"{where}.gate" if own else "gate")
