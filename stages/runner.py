"""Glue between the Invoke tasks and the stages: load settings, pick recipes, choose the Modal boundary.

Kept out of tasks.py so the tasks stay one call each and tests can drive the same
path without a shell.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator

from infra.control.releases import Release, ReleaseStore
from infra.control.resolve import resolve
from infra.control.settings import (
    Settings,
    known_environments,
    load_settings,
    parse_overrides,
    unknown_environment_variables,
)
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.recipes import RECIPES
from infra.runtime.remote import ModalRemote, Remote
from infra.runtime.secrets import scrub
from stages.common import Context, StageResult

REMOTE_VARIABLE = "INFRA_REMOTE"  # "module:factory" of another boundary (tests use the fake)


def make_remote() -> Remote:
    spec = os.environ.get(REMOTE_VARIABLE)
    if not spec:
        return ModalRemote()
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)()


def settings_for(env: str | None, recipe: str | None, overrides: list[str] | None = None) -> Settings:
    for warning in unknown_environment_variables():
        print(warning, file=sys.stderr)
    return load_settings(env, recipe, parse_overrides(overrides or []))


def deployments(settings: Settings) -> list[Deployment]:
    return [resolve(settings, name) for name in settings.selected_recipes()]


def context(settings: Settings, *, dry_run=False, force=False, yes=False, remote: Remote | None = None) -> Context:
    return Context(settings=settings, remote=remote or make_remote(), dry_run=dry_run, force=force, yes=yes)


def report(outcomes: Iterable[StageResult], as_json: bool) -> list[dict]:
    """Print each result as it arrives (or all of them as JSON at the end); secrets scrubbed either way."""
    results = []
    for result in outcomes:
        results.append(result.to_dict())
        if not as_json:
            print(scrub(result.message), flush=True)
    if as_json:
        print(scrub(json.dumps(results, indent=2, sort_keys=True, default=str)))
    return results


def run_stage(
    stage: Callable[..., StageResult | list[StageResult]],
    env: str | None,
    recipe: str | None,
    overrides: list[str] | None,
    options: object | None = None,
    *,
    as_json: bool = False,
    one_recipe: str | None = None,
    **flags,
) -> list[dict]:
    """Run one stage (or flow) for each selected recipe: `stage(ctx, d)`, or `stage(ctx, d, options)` when it has options.

    `one_recipe` (the reason) refuses an environment serving several recipes when no --recipe picks one.
    """
    settings = settings_for(env, recipe, overrides)
    selected = deployments(settings)
    if one_recipe and len(selected) != 1:
        names = ", ".join(d.recipe.name for d in selected)
        raise ConfigError(f"--recipe: {one_recipe}; {settings.env} serves {names}: pick one with --recipe")
    ctx = context(settings, **flags)

    def outcomes() -> Iterator[StageResult]:
        for d in selected:
            outcome = stage(ctx, d) if options is None else stage(ctx, d, options)
            yield from outcome if isinstance(outcome, list) else [outcome]

    return report(outcomes(), as_json)


def run_promote(source: str, target: str, recipe: str | None, *, as_json=False, from_manifest=False, skip_gate=None,
                record_baseline=False, **flags) -> list[dict]:
    from stages import promote

    remote = make_remote()
    src = context(settings_for(source, None), remote=remote, **flags)
    dst = context(settings_for(target, recipe), remote=remote, **flags)
    options = [promote.Options(name, from_manifest, skip_gate, record_baseline) for name in dst.settings.selected_recipes()]
    return report((promote.run(src, dst, o) for o in options), as_json)


def recorded_releases(env: str | None, recipe: str | None, overrides: list[str] | None) -> tuple[list[Release], str]:
    """Every release recorded in the manifests of `env` (default: every environment), for `recipe` (default: every
    recipe served there), newest first per manifest; and a phrase naming where they were read from."""
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"--recipe: unknown recipe '{recipe}'; known recipes: {', '.join(RECIPES)}")
    remote = make_remote()
    remote.require_credentials()
    store, found, read = ReleaseStore(remote), [], []
    for name in [env] if env else known_environments():
        for d in deployments(settings_for(name, None, overrides)):
            if recipe is None or d.recipe.name == recipe:
                found += store.read(d).history
                read.append(f"{d.env}/{d.recipe.name}")
    return found, f"release manifests of {', '.join(read) or 'no environment serving ' + str(recipe)}"
