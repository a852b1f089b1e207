"""Settings + recipe -> Deployment, and the checks that need both.

Precedence for per-recipe knobs: the recipe's value, then the environment's
`[placement]`/`[scaling]` sections, then its `[recipes."<name>"]` table.
Every check raises one `ConfigError` line naming the setting, its value and
what is allowed.
"""

from __future__ import annotations

import dataclasses

from infra import catalog, sglang_args
from infra.deployment import COMMIT_RE, STARTUP_MARGIN_SECONDS, Deployment
from infra.errors import ConfigError
from infra.recipes import RECIPES
from infra.settings import RecipeOverrides, Settings

# Endpoints and flags the GPU-snapshot start-up needs from SGLang.
SNAPSHOT_ENDPOINTS = ("/release_memory_occupation", "/resume_memory_occupation")
SNAPSHOT_FLAGS = ("--enable-memory-saver", "--enable-weights-cpu-backup")


def resolve(settings: Settings, recipe_name: str) -> Deployment:
    recipe = RECIPES[recipe_name]
    o = settings.recipes.get(recipe_name, RecipeOverrides())
    where = f'recipes."{recipe_name}"'

    def pick(override, env_value, recipe_value):
        if override is not None:
            return override
        return env_value if env_value is not None else recipe_value

    speculative = recipe.speculative
    draft_revision = speculative.draft_revision if speculative else None
    if speculative and o.draft_revision is not None:
        draft_revision = o.draft_revision
        speculative = dataclasses.replace(speculative, draft_revision=draft_revision)

    d = Deployment(
        env=settings.env,
        recipe=recipe.name,
        app_name=f"{settings.modal.app_prefix}-{recipe.name.replace('.', '-')}",
        modal_environment=settings.modal_environment,
        cache_environment=settings.cache_environment,
        sglang_image=recipe.sglang_image,
        sglang_version=recipe.sglang_version,
        pip_installs=recipe.pip_installs,
        image_env=dict(recipe.image_env),
        model=o.model or recipe.model,
        model_revision=o.model_revision or recipe.model_revision,
        model_size_gb=recipe.model_size_gb,
        draft_model=speculative.draft_model if speculative else None,
        draft_revision=draft_revision,
        draft_size_gb=recipe.draft_size_gb,
        gated=recipe.gated if o.gated is None else o.gated,
        hf_token_secret=settings.secrets.hf_token_secret,
        hf_hub_offline=settings.server.hf_hub_offline,
        gpu_type=o.gpu_type or recipe.gpu_type,
        gpu_count=o.gpu_count or recipe.gpu_count,
        tp_size=o.tp_size or recipe.tp_size,
        port=settings.server.port,
        target_concurrency=o.target_concurrency or recipe.target_concurrency,
        mem_fraction_static=recipe.mem_fraction_static,
        extra_flags=recipe.extra_flags,
        speculative=speculative,
        compute_region=pick(o.compute_region, settings.placement.compute_region, recipe.compute_region),
        routing_region=pick(o.routing_region, settings.placement.routing_region, recipe.routing_region),
        min_containers=settings.scaling.min_containers,
        max_containers=settings.scaling.max_containers,
        buffer_containers=settings.scaling.buffer_containers,
        scaledown_window=settings.scaling.scaledown_window,
        exit_grace_period=recipe.exit_grace_period,
        startup_timeout=o.startup_timeout or recipe.startup_timeout,
        proxy_auth=settings.auth.proxy_auth,
        gpu_snapshot=pick(o.gpu_snapshot, settings.cold_start.gpu_snapshot, False),
        weights_volume=settings.caches.weights_volume,
        kernels_volume=settings.caches.kernels_volume,
        releases_volume=settings.caches.releases_volume,
        readiness_timeout=o.readiness_timeout or recipe.readiness_timeout,
        health_poll_interval=recipe.health_poll_interval,
        warmup=recipe.warmup,
        smoke=recipe.smoke,
    )
    validate(d, settings, where)
    return d


def validate(d: Deployment, settings: Settings, where: str) -> None:
    if d.gpu_type not in catalog.GPUS:
        raise ConfigError(f"{where}.gpu_type = {d.gpu_type!r}: unknown GPU type; allowed: {', '.join(catalog.GPUS)}")
    if not 1 <= d.gpu_count <= catalog.MAX_GPUS_PER_CONTAINER:
        raise ConfigError(
            f"{where}.gpu_count = {d.gpu_count}: allowed 1 to {catalog.MAX_GPUS_PER_CONTAINER} GPUs per container"
        )
    if d.tp_size != d.gpu_count:
        raise ConfigError(
            f"{where}.tp_size = {d.tp_size} does not match gpu_count = {d.gpu_count}: "
            "tensor parallelism puts one shard on each GPU, so set tp_size equal to gpu_count"
        )
    if not d.model.strip() or "/" not in d.model:
        raise ConfigError(f"{where}: model id {d.model!r} is not an 'org/name' Hugging Face repository id")
    if settings.release.require_pinned_revisions:
        for label, value in (("model_revision", d.model_revision), ("draft_revision", d.draft_revision)):
            if value is not None and not COMMIT_RE.match(value):
                raise ConfigError(
                    f"{where}.{label} = {value!r}: environment '{d.env}' requires pinned revisions "
                    "(release.require_pinned_revisions); allowed: a 40-hex commit id"
                )
    if d.gpu_snapshot:
        missing = [e for e in SNAPSHOT_ENDPOINTS if not sglang_args.has_endpoint(d.sglang_version, e)]
        missing += [f for f in SNAPSHOT_FLAGS if f not in sglang_args.known_flags(d.sglang_version)]
        if missing:
            raise ConfigError(
                f"{where}.gpu_snapshot = true: SGLang {d.sglang_version} lacks {', '.join(missing)}; "
                "allowed: false for this recipe"
            )
    budget = d.readiness_timeout + d.warmup_budget + STARTUP_MARGIN_SECONDS
    if d.startup_timeout < budget:
        raise ConfigError(
            f"{where}.startup_timeout = {d.startup_timeout}: Modal kills a container whose start-up exceeds it, "
            f"and start-up may take readiness_timeout {d.readiness_timeout} s + warm-up {d.warmup_budget:g} s "
            f"+ {STARTUP_MARGIN_SECONDS} s margin; allowed: >= {budget:g}"
        )
    sglang_args.check_flags(d)

