"""Glue between the Invoke tasks and the stages: load settings, pick recipes, choose the Modal boundary (here, so
the tasks stay one call each and tests drive the same path without a shell)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel

from infra.control.resolve import resolve
from infra.control.settings import (
    Settings,
    known_environments,
    load_settings,
    parse_overrides,
    unknown_environment_variables,
)
from infra.perf.releases import Release, ReleaseStore
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError, UserError
from infra.runtime.recipes import RECIPES
from infra.runtime.remote import ModalRemote, Remote
from infra.runtime.secrets import scrub
from stages import show
from stages.common import Context, StageResult

if TYPE_CHECKING:
    from invoke import Context as Invoked  # the task's context: its configuration may inject the remote

def make_remote(c: Invoked | None, settings: Settings | None = None) -> Remote:
    """The Modal boundary a command talks through, injected through invoke's configuration: the factory its
    `remote` key holds (set through invoke's own INVOKE_RUNTIME_CONFIG), else ModalRemote with the environment's
    connect timeout."""
    factory = c.config.get("remote") if c is not None else None
    if factory is not None:
        return factory()
    return ModalRemote(settings.client.connect_timeout) if settings else ModalRemote()


_WARNED: set[str] = set()  # each warning once per run, however many environments a command loads


def settings_for(env: str | None, recipe: str | None, overrides: list[str] | None = None) -> Settings:
    for warning in unknown_environment_variables():
        if warning not in _WARNED:
            _WARNED.add(warning)
            print(warning, file=sys.stderr)
    return load_settings(env, recipe, parse_overrides(overrides or []))


def deployments(settings: Settings) -> list[Deployment]:
    return [resolve(settings, name) for name in settings.selected_recipes()]


def context(c: Invoked | None, settings: Settings, *, dry_run=False, force=False, yes=False,
            remote: Remote | None = None) -> Context:
    return Context(settings=settings, remote=remote or make_remote(c, settings), dry_run=dry_run, force=force, yes=yes)


def report(outcomes: Iterable[StageResult], as_json: bool) -> list[dict]:
    """Print each result as it arrives (or all of them as JSON at the end); secrets scrubbed either way."""
    results = []
    terminal = show.on_a_terminal(sys.stdout)
    for result in outcomes:
        results.append(result.to_dict())
        if as_json:
            continue
        if terminal:
            show.lines(scrub(result.message))
        else:
            print(scrub(result.message), flush=True)
    if as_json:
        print(scrub(json.dumps(results, indent=2, sort_keys=True, default=_json_default)))
    return results


def _json_default(value: object) -> object:
    """A record inside a stage's outcome (a dataclass holding a model) as its JSON form; anything else as text."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else str(value)


def run_stage(c: Invoked | None, stage: Callable[..., StageResult | list[StageResult]], env: str | None,
              recipe: str | None, overrides: list[str] | None, options: object | None = None, *, as_json: bool = False,
              one_recipe: str | None = None, **flags) -> list[dict]:
    """Run one stage (or flow) for each selected recipe: `stage(ctx, d)`, or `stage(ctx, d, options)` when it has
    options. `one_recipe` (the reason) refuses an environment serving several recipes when no --recipe picks one."""
    settings = settings_for(env, recipe, overrides)
    selected = deployments(settings)
    if one_recipe and len(selected) != 1:
        names = ", ".join(d.recipe.name for d in selected)
        raise ConfigError(f"--recipe: {one_recipe}; {settings.env} serves {names}: pick one with --recipe")
    ctx = context(c, settings, **flags)

    def outcomes() -> Iterator[StageResult]:
        for d in selected:
            outcome = stage(ctx, d) if options is None else stage(ctx, d, options)
            yield from outcome if isinstance(outcome, list) else [outcome]

    return report(outcomes(), as_json)


def run_plan(env: str | None, recipe: str | None, overrides: list[str] | None, *, as_json: bool,
             full: bool = False) -> None:
    from infra.control import plan as plans

    settings = settings_for(env, recipe, overrides)
    commit = plans_commit()
    result = [plans.plan_for(settings, d, commit=commit) for d in deployments(settings)]
    if as_json:
        print(plans.to_json(result))
    elif show.on_a_terminal(sys.stdout):
        show.plan(result, full=full)
    else:
        print(plans.render(result, full))


def plans_commit() -> str | None:
    """The commit tag a deploy from this checkout would send (the app's `commit` tag); None outside a git checkout,
    where plan still works (deploy would refuse)."""
    from infra.control import gitinfo

    try:
        return gitinfo.read(gitinfo.REPO).tag
    except (UserError, OSError):
        return None


def run_promote(c: Invoked | None, source: str, target: str, recipe: str | None, overrides: list[str] | None = None, *,
                as_json=False, from_manifest=False, skip_gate=None, record_baseline=False, **flags) -> list[dict]:
    from stages import promote

    target_settings = settings_for(target, recipe, overrides)
    remote = make_remote(c, target_settings)
    src = context(c, settings_for(source, None), remote=remote, **flags)
    dst = context(c, target_settings, remote=remote, **flags)
    options = [promote.Options(name, from_manifest, skip_gate, record_baseline)
               for name in dst.settings.selected_recipes()]
    return report((promote.run(src, dst, o) for o in options), as_json)


def run_bench(c: Invoked | None, env: str | None, recipe: str | None, overrides: list[str] | None, options, *,
              as_json: bool, dry_run: bool) -> list[dict]:
    """`invoke bench`: a URL without an environment, or an environment's deployed endpoint (or --url with its model)."""
    from stages import bench as stage

    if options.url and not (env or recipe):
        return report([stage.run_url(options, dry_run=dry_run)], as_json)
    return run_stage(c, stage.run, env, recipe, overrides, options, as_json=as_json, dry_run=dry_run,
                     one_recipe="bench measures one recipe at a time")


def run_sglang_flags(env: str | None, recipe: str | None, overrides: list[str] | None, version: str | None,
                     wheel: str | None, *, as_json: bool, dry_run: bool) -> list[dict]:
    """`invoke sglang-flags`: one version's table (--version or --wheel), or those of an environment's recipes."""
    from infra.control import sglang_flags as flags
    from tools import sglang_tables

    if env or recipe:
        if version or wheel:
            raise ConfigError("sglang-flags: give --env (the versions its recipes run) or --version/--wheel, not both")
        versions = sorted({d.recipe.sglang_version for d in deployments(settings_for(env, recipe, overrides))},
                          key=flags.version_key)
    else:
        versions = [version]
    done = []
    for v in versions:
        got, table = sglang_tables.update(flags.TABLE_PATH, v, wheel, write=not dry_run)
        lines = flags.describe(got) if not dry_run else [f"SGLang {got}: {len(table['flags'])} flags, "
                                                          f"{len(table['endpoints'])} endpoints, from {table['wheel']} "
                                                          "(dry run: nothing written)"]
        done.append(StageResult("sglang-flags", env or "", recipe or "", "dry-run" if dry_run else "ran",
                                "\n".join(lines), {"version": got, "wheel": table["wheel"], "sha256": table["sha256"],
                                                   "flags": len(table["flags"]), "endpoints": len(table["endpoints"])}))
    return report(done, as_json)


def run_upgrade(env: str | None, recipe: str | None, overrides: list[str] | None, *, as_json: bool, dry_run: bool,
                force: bool, **moves) -> list[dict]:
    """`invoke upgrade`: one recipe, moved (stages/upgrade.py)."""
    from stages import upgrade

    if recipe is None:
        raise ConfigError(f"--recipe: upgrade moves one recipe; known recipes: {', '.join(RECIPES)}")
    settings = settings_for(env, recipe, overrides)
    return report([upgrade.run(settings, recipe, upgrade.Options(**moves), dry_run=dry_run, force=force)], as_json)


def recorded_releases(c: Invoked | None, env: str | None, recipe: str | None,
                      overrides: list[str] | None) -> tuple[list[Release], str]:
    """Every release recorded in the manifests of `env` (default: every environment), for `recipe` (default: every
    recipe served there), newest first per manifest; and a phrase naming where they were read from."""
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"--recipe: unknown recipe '{recipe}'; known recipes: {', '.join(RECIPES)}")
    loaded = [settings_for(name, None, overrides) for name in ([env] if env else known_environments())]
    # One control plane for every environment read: the most patient of their [client] connect_timeout.
    remote = make_remote(c, max(loaded, key=lambda s: s.client.connect_timeout))
    remote.require_credentials()
    store, found, read = ReleaseStore(remote), [], []
    for settings in loaded:
        for d in deployments(settings):
            if recipe is None or d.recipe.name == recipe:
                found += store.read(d).history
                read.append(f"{d.env}/{d.recipe.name}")
    return found, f"release manifests of {', '.join(read) or 'no environment serving ' + str(recipe)}"


def run_sentinel(c: Invoked | None, env: str | None, overrides: list[str] | None, *, as_json: bool,
                 once: bool = False, **flags) -> list[dict]:
    """`invoke sentinel`: one deploy for the environment, watching every recipe it serves (or `once`: one run now)."""
    from stages import sentinel

    settings = settings_for(env, None, overrides)
    ctx = context(c, settings, **flags)
    served = [resolve(settings, name) for name in settings.serves]
    return report([(sentinel.once if once else sentinel.run)(ctx, served)], as_json)
