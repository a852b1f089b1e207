"""Invoke tasks: one per stage, plus the flows that chain them. `invoke --list`, `invoke --help TASK`.

Every task takes --env (or INFRA_ENV) and, where it acts on a model, --recipe
(default: every recipe the environment serves). Tasks are thin: they parse flags,
call one function in stages/ or infra/, and print. Errors are one line on stderr
and a non-zero exit; --debug shows the traceback.
"""

from __future__ import annotations

import functools
import sys
import traceback

from invoke import Exit, task

ENV = "environment: dev, staging or prod (default: $INFRA_ENV)"
RECIPE = "recipe name (default: every recipe the environment serves)"
SET = "override a setting, highest precedence: --set scaling.min_containers=2 (repeatable)"
JSON = "print a machine-readable result on stdout"
DRY = "print what would be done, change nothing"
FORCE = "run even when the inputs are unchanged since the last success"
DEBUG = "show Python tracebacks"
COMMON = {"env": ENV, "recipe": RECIPE, "set_": SET, "json": JSON, "debug": DEBUG}
STAGE_HELP = COMMON | {"dry_run": DRY, "force": FORCE}


def cli(fn):
    """One-line errors for people, tracebacks only with --debug; secrets scrubbed from both."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from infra.errors import UserError
        from infra.secrets import scrub

        debug = kwargs.get("debug", False)
        try:
            return fn(c, *args, **kwargs)
        except Exit:
            raise
        except UserError as err:
            if debug:
                traceback.print_exc()
            raise Exit(scrub(f"error: {err}"), code=err.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except Exception as err:
            if debug:
                traceback.print_exc()
            raise Exit(scrub(f"error: {type(err).__name__}: {err} (run with --debug for the traceback)"), code=1) from None

    return wrapper


def _stage(stage, env, recipe, set_, json, **options):
    from stages.runner import run_stage

    run_stage(stage, env, recipe, set_, as_json=json, **options)


@task(iterable=["set_"], help=COMMON)
@cli
def plan(c, env=None, recipe=None, set_=None, json=False, debug=False):
    """Show exactly what would be deployed (offline, no credentials needed)."""
    from infra import plan as plans
    from stages.runner import deployments, settings_for

    settings = settings_for(env, recipe, set_)
    result = [plans.plan_for(settings, d) for d in deployments(settings)]
    print(plans.to_json(result) if json else plans.render(result))


@task(iterable=["set_"], help=STAGE_HELP)
@cli
def build(c, env=None, recipe=None, set_=None, dry_run=False, force=False, json=False, debug=False):
    """Build the recipe's container image on Modal without deploying anything."""
    from stages import build as stage

    _stage(stage.run, env, recipe, set_, json, dry_run=dry_run, force=force)


@task(iterable=["set_"], help=STAGE_HELP)
@cli
def download(c, env=None, recipe=None, set_=None, dry_run=False, force=False, json=False, debug=False):
    """Download model weights into the weights Volume at pinned revisions (once)."""
    from stages import download as stage

    _stage(stage.run, env, recipe, set_, json, dry_run=dry_run, force=force)


@task(iterable=["set_"], help=STAGE_HELP)
@cli
def compile(c, env=None, recipe=None, set_=None, dry_run=False, force=False, json=False, debug=False):
    """Compile DeepGEMM kernels on the recipe's GPU into the kernel cache Volume (once)."""
    from stages import compile as stage

    _stage(stage.run, env, recipe, set_, json, dry_run=dry_run, force=force)


@task(iterable=["set_"], help=STAGE_HELP | {"yes": "do not ask for confirmation (guarded environments; CI)"})
@cli
def deploy(c, env=None, recipe=None, set_=None, dry_run=False, force=False, yes=False, json=False, debug=False):
    """Deploy the recipe's server and record the release (prod: clean tree on main, confirmed)."""
    from stages import deploy as stage

    _stage(stage.run, env, recipe, set_, json, dry_run=dry_run, force=force, yes=yes)


@task(iterable=["set_"], help=COMMON | {"dry_run": DRY})
@cli
def smoke(c, env=None, recipe=None, set_=None, dry_run=False, json=False, debug=False):
    """Stream one chat completion from the deployed endpoint; fail unless text comes back."""
    from stages import smoke as stage

    _stage(stage.run, env, recipe, set_, json, dry_run=dry_run)


@task(name="try", iterable=["set_"], help=COMMON | {"dry_run": DRY})
@cli
def try_(c, env="dev", recipe=None, set_=None, dry_run=False, json=False, debug=False):
    """Run the server ephemerally (like `modal run`), query it once, then stop it."""
    from stages import trial as stage

    _stage(stage.run, env, recipe, set_, json, dry_run=dry_run)


@task(iterable=["set_"], help=STAGE_HELP | {"yes": "do not ask for confirmation (guarded environments; CI)"})
@cli
def pipeline(c, env=None, recipe=None, set_=None, dry_run=False, force=False, yes=False, json=False, debug=False):
    """Build, download, compile, deploy and smoke-test, stopping at the first failure."""
    from stages import pipeline as flow

    _stage(flow.run, env, recipe, set_, json, dry_run=dry_run, force=force, yes=yes)
