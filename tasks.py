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
                print(scrub(traceback.format_exc()), file=sys.stderr, end="")
            raise Exit(scrub(f"error: {err}"), code=err.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except Exception as err:
            if debug:
                print(scrub(traceback.format_exc()), file=sys.stderr, end="")
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


@task(help={
    "from_": "environment whose current release is promoted (default: staging)",
    "to": "environment that receives it (default: prod)",
    "recipe": RECIPE,
    "from_manifest": "promote from a git worktree of the commit the source runs, not this checkout",
    "yes": "do not ask for confirmation (CI)",
    "dry_run": DRY, "json": JSON, "debug": DEBUG,
})
@cli
def promote(c, from_="staging", to="prod", recipe=None, from_manifest=False, yes=False, dry_run=False, json=False, debug=False):
    """Promote staging's smoke-tested release to prod; roll prod back if its smoke test fails."""
    from stages.runner import run_promote

    run_promote(from_, to, recipe, as_json=json, from_manifest=from_manifest, yes=yes, dry_run=dry_run)


@task(iterable=["set_"], help=COMMON | {"to": "app version to return to, e.g. v3 (default: the previous release)",
                                         "yes": "do not ask for confirmation (guarded environments; CI)", "dry_run": DRY})
@cli
def rollback(c, env=None, recipe=None, to=None, set_=None, yes=False, dry_run=False, json=False, debug=False):
    """Roll an environment back to its previous (or a named) version and record it."""
    from stages import rollback as stage

    _stage(lambda ctx, d: stage.run(ctx, d, to), env, recipe, set_, json, yes=yes, dry_run=dry_run)


@task(iterable=["set_"], help=COMMON)
@cli
def status(c, env=None, recipe=None, set_=None, json=False, debug=False):
    """Show the current release, the releases before it, and drift from what plan would deploy."""
    from stages import status as stage

    _stage(stage.run, env, recipe, set_, json)


@task(iterable=["set_"], help=COMMON | {"min_": "warm replicas to keep (min_containers) until the next deploy", "dry_run": DRY})
@cli
def scale(c, env=None, recipe=None, min_=None, set_=None, dry_run=False, json=False, debug=False):
    """Change warm replicas (min_containers) at run time, without a redeploy."""
    from infra.errors import ConfigError
    from stages import scale as stage

    if min_ is None or not str(min_).lstrip("-").isdigit():
        raise ConfigError(f"--min {min_!r}: give the number of warm replicas, e.g. --min 2")
    _stage(lambda ctx, d: stage.run(ctx, d, int(min_)), env, recipe, set_, json, dry_run=dry_run)


@task(
    iterable=["set_", "compare"],
    optional=["json"],
    help={
        "env": ENV + " (with --url: only for the model name)",
        "recipe": "recipe whose deployed endpoint and model to measure (needed where the environment serves several)",
        "set_": SET,
        "url": "measure this OpenAI-compatible server (http://host:port) instead of the deployed endpoint",
        "model": "model name to send (default: the recipe's; none with --url alone)",
        "concurrency": "concurrent streams, one level after another: positive whole numbers such as 1,4,16",
        "requests": "measured requests per level (default: 4 per stream, at least 16)",
        "duration": "seconds per level, instead of a number of requests",
        "prompt_tokens": "prompt length in tokens, approximately (default 512)",
        "max_tokens": "output tokens per request, sent with ignore_eos (default 128)",
        "temperature": "sampling temperature sent with every request (default 0, greedy, as sglang.bench_serving; "
                       "'server' sends none and leaves the model's default)",
        "top_p": "nucleus sampling: sent only when given (0 < p <= 1)",
        "top_k": "top-k sampling: sent only when given (a positive whole number, or -1 for no limit)",
        "warmup": "unmeasured rounds of requests before each level (default 1)",
        "timeout": "seconds allowed for one request (default 300)",
        "wait": "seconds to wait through a cold start for a first answer (default: startup timeout + 120; 120 with --url)",
        "label": "name of this run in the table, JSON, plot and comparisons",
        "json": "write the results to this file; without a value, print JSON instead of the table",
        "plot": "write a PNG: latency percentiles and throughput against concurrency",
        "compare": "compare two earlier --json files instead of measuring: --compare a.json --compare b.json",
        "debug": DEBUG,
    },
)
@cli
def bench(c, env=None, recipe=None, set_=None, url=None, model=None, concurrency="1,4,16", requests=None,
          duration=None, prompt_tokens=None, max_tokens=None, temperature=None, top_p=None, top_k=None, warmup=None,
          timeout=None, wait=None, label=None, json=None, plot=None, compare=None, debug=False):
    """Measure time to first token, inter-token latency and throughput at several concurrency levels."""
    from stages import bench as stage

    stage.run(env, recipe, set_, url=url, model=model, concurrency=concurrency, requests=requests, duration=duration,
              prompt_tokens=prompt_tokens, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
              warmup=warmup, timeout=timeout, wait=wait,
              label=label, json_out=json, plot=plot, compare=compare)
