"""Invoke tasks: one per stage, plus the flows that chain them. `invoke --list`, `invoke --help TASK`.

Every task takes --env (or INFRA_ENV) and, where it acts on a model, --recipe
(default: every recipe the environment serves). Tasks are thin: they parse and
check their flags into the stage's typed options, call one function in stages/
or infra/, and print. Flags mean the same thing on every task (--json: print the
machine-readable result on stdout); tasks have long flags only, so no short flag
means two things. Errors are one line on stderr and a non-zero exit; --debug
shows the traceback.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import traceback
import urllib.parse
from pathlib import Path

from invoke import Exit, task

ENV = "environment: dev, staging or prod (default: $INFRA_ENV)"
RECIPE = "recipe name (default: every recipe the environment serves)"
SET = "override a setting, highest precedence: --set scaling.min_containers=2 (repeatable)"
JSON = "print the machine-readable result on stdout"
DRY = "print what would be done; read and change nothing remote"
FORCE = "run even when the inputs are unchanged since the last success"
YES = "do not ask for confirmation (guarded environments; CI)"
DEBUG = "show Python tracebacks"
COMMON = {"env": ENV, "recipe": RECIPE, "set_": SET, "json": JSON, "debug": DEBUG}
STAGE_HELP = COMMON | {"dry_run": DRY, "force": FORCE}


def cli(fn):
    """One-line errors for people, tracebacks only with --debug; secrets scrubbed from both."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from infra.runtime.errors import UserError
        from infra.runtime.secrets import scrub

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
            hint = "" if debug else " (run with --debug for the traceback)"
            raise Exit(scrub(f"error: {type(err).__name__}: {err}{hint}"), code=1) from None

    return wrapper


def stage_task(**kwargs):
    """@task for this project: repeatable --set, long flags only."""
    return task(**{"iterable": ["set_"], "auto_shortflags": False} | kwargs)


def _stage(module, env, recipe, set_, json, options=None, **flags):
    from stages.runner import run_stage

    run_stage(module.run, env, recipe, set_, options, as_json=json, **flags)


# ---------------------------------------------------------------------------- flag values


def _fail(message: str):
    from infra.runtime.errors import ConfigError

    raise ConfigError(message)


def whole(flag: str, value: object, *, minimum: int = 1) -> int | None:
    if value is None:
        return None
    allowed = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?[0-9]+", text):
        _fail(f"{flag} must be {allowed}; got {value!r}")
    if int(text) < minimum:
        _fail(f"{flag} must be {allowed}; got {int(text)}")
    return int(text)


def seconds(flag: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip().removesuffix("s"))
    except ValueError:
        _fail(f"{flag} must be a positive number of seconds; got {value!r}")
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        _fail(f"{flag} must be a positive number of seconds; got {value!r}")
    return number


def number(flag: str, value: object, *, low: float, high: float | None = None, allowed: str | None = None) -> float | None:
    if value is None:
        return None
    allowed = allowed or f"a number from {low:g}" + (f" to {high:g}" if high is not None else " up")
    try:
        x = float(str(value).strip())
    except ValueError:
        _fail(f"{flag} must be {allowed}; got {value!r}")
    if not math.isfinite(x) or x < low or (high is not None and x > high):
        _fail(f"{flag} must be {allowed}; got {value!r}")
    return x


CONCURRENCY_HELP = "a comma-separated list of positive whole numbers such as 1,4,16"
MAX_CONCURRENCY = 4096  # open sockets; raise `ulimit -n` before going near it


def concurrency_levels(text: object) -> list[int]:
    """'1,4,16' -> [1, 4, 16] (order kept, repeats dropped); anything else is a one-line ConfigError."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        _fail(f"--concurrency must be {CONCURRENCY_HELP}; got nothing")
    levels: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            _fail(f"--concurrency must be {CONCURRENCY_HELP}; got {text!r} (an empty item)")
        if not re.fullmatch(r"[+-]?[0-9]+", item):
            _fail(f"--concurrency must be {CONCURRENCY_HELP}; got {text!r} ({item!r} is not a whole number)")
        value = int(item)
        if value < 1:
            _fail(f"--concurrency must be {CONCURRENCY_HELP}; got {text!r} ({value} is not positive)")
        if value > MAX_CONCURRENCY:
            _fail(f"--concurrency must be {CONCURRENCY_HELP} up to {MAX_CONCURRENCY}; got {text!r}")
        if value not in levels:
            levels.append(value)
    return levels


def http_url(flag: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(f"{flag} must be an http:// or https:// address of an OpenAI-compatible server; got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        _fail(f"{flag} must be an http:// or https:// address with a valid port; got {url!r}")
    return url.rstrip("/")


def writable_file(flag: str, path: str | None) -> str | None:
    """A file we will write after minutes of measuring: checked before the first request."""
    if path is None:
        return None
    if not str(path).strip():
        _fail(f"{flag} needs a file path")
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        _fail(f"{flag} {path}: is a folder; allowed: a file path")
    if not parent.is_dir():
        _fail(f"{flag} {path}: folder {parent} does not exist; allowed: a path in an existing folder")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        _fail(f"{flag} {path}: not writable; allowed: a path this user can write")
    return str(target)


def sampling(temperature: object, top_p: object, top_k: object) -> dict:
    """--temperature (default 0; 'server' sends none), --top-p, --top-k, checked as SGLang would accept them."""
    from infra.perf import bench as engine

    out: dict = {"temperature": engine.DEFAULT_TEMPERATURE}
    if temperature is not None:
        out["temperature"] = None if str(temperature).strip().lower() == "server" else number(
            "--temperature", temperature, low=0, allowed="a number >= 0, or 'server' for the server's default")
    if top_p is not None:
        out["top_p"] = number("--top-p", top_p, low=0, high=1, allowed="a number greater than 0 and at most 1")
        if out["top_p"] == 0:
            _fail(f"--top-p must be a number greater than 0 and at most 1; got {top_p!r}")
    if top_k is not None:
        text = str(top_k).strip()
        if isinstance(top_k, bool) or not re.fullmatch(r"-?[0-9]+", text) or not (int(text) >= 1 or int(text) == -1):
            _fail(f"--top-k must be a positive whole number (or -1 for no limit); got {top_k!r}")
        out["top_k"] = int(text)
    return out


def compare_paths(compare: object) -> list[str]:
    """--compare a.json --compare b.json, or --compare a.json,b.json: exactly two files or release ids."""
    items = [compare] if isinstance(compare, str) else list(compare or [])
    paths = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if len(paths) != 2:
        _fail("--compare needs exactly two bench JSON files or release ids (A then B: --compare a.json --compare b.json); "
              f"got {len(paths)}")
    return paths


def app_version(flag: str, text: str | None) -> int | None:
    if text in (None, ""):
        return None
    digits = str(text).lstrip("v")
    if not digits.isdigit() or int(digits) < 1:
        _fail(f"{flag} {text!r}: expected an app version such as v3 or 3 (see `invoke status`)")
    return int(digits)


# ---------------------------------------------------------------------------- tasks


@stage_task(help=COMMON)
@cli
def plan(c, env=None, recipe=None, set_=None, json=False, debug=False):
    """Show exactly what would be deployed (offline, no credentials needed)."""
    from infra.control import plan as plans
    from stages.runner import deployments, settings_for

    settings = settings_for(env, recipe, set_)
    result = [plans.plan_for(settings, d) for d in deployments(settings)]
    print(plans.to_json(result) if json else plans.render(result))


@stage_task(help=STAGE_HELP)
@cli
def build(c, env=None, recipe=None, set_=None, dry_run=False, force=False, json=False, debug=False):
    """Build the recipe's container image on Modal without deploying anything."""
    from stages import build as stage

    _stage(stage, env, recipe, set_, json, dry_run=dry_run, force=force)


@stage_task(help=STAGE_HELP)
@cli
def download(c, env=None, recipe=None, set_=None, dry_run=False, force=False, json=False, debug=False):
    """Download model weights into the weights Volume at pinned revisions (once)."""
    from stages import download as stage

    _stage(stage, env, recipe, set_, json, dry_run=dry_run, force=force)


@stage_task(help=STAGE_HELP | {"recompile": "compile again and replace the published caches of this key, even where the "
                                             "Volume says they are done (after `invoke status` warned of cache misses)"})
@cli
def compile(c, env=None, recipe=None, set_=None, dry_run=False, force=False, recompile=False, json=False, debug=False):
    """Compile DeepGEMM kernels on the recipe's GPU into the kernel cache Volume (once)."""
    from stages import compile as stage

    _stage(stage, env, recipe, set_, json, stage.Options(recompile=recompile), dry_run=dry_run, force=force)


@stage_task(help=STAGE_HELP | {"yes": YES})
@cli
def deploy(c, env=None, recipe=None, set_=None, dry_run=False, force=False, yes=False, json=False, debug=False):
    """Deploy the recipe's server and record the release (prod: clean tree on main, confirmed)."""
    from stages import deploy as stage

    _stage(stage, env, recipe, set_, json, dry_run=dry_run, force=force, yes=yes)


@stage_task(help=COMMON | {"dry_run": DRY})
@cli
def smoke(c, env=None, recipe=None, set_=None, dry_run=False, json=False, debug=False):
    """Stream one chat completion from the deployed endpoint; fail unless text comes back."""
    from stages import smoke as stage

    _stage(stage, env, recipe, set_, json, dry_run=dry_run)


@stage_task(name="try", help=COMMON | {"env": "environment (default: $INFRA_ENV, else dev)", "dry_run": DRY})
@cli
def try_(c, env=None, recipe=None, set_=None, dry_run=False, json=False, debug=False):
    """Run the server ephemerally (like `modal run`), query it once, then stop it."""
    from stages import trial as stage

    _stage(stage, env or os.environ.get("INFRA_ENV") or "dev", recipe, set_, json, dry_run=dry_run)


@stage_task(help=STAGE_HELP | {"yes": YES})
@cli
def pipeline(c, env=None, recipe=None, set_=None, dry_run=False, force=False, yes=False, json=False, debug=False):
    """Build, download, compile, deploy and smoke-test, stopping at the first failure."""
    from stages import pipeline as flow

    _stage(flow, env, recipe, set_, json, dry_run=dry_run, force=force, yes=yes)


@task(auto_shortflags=False, help={
    "from_": "environment whose current release is promoted (default: staging)",
    "to": "environment that receives it (default: prod); it names the one it takes releases from",
    "recipe": RECIPE,
    "from_manifest": "promote from a git worktree of the commit the source runs, not this checkout",
    "skip_gate": "promote without the gate's measurement (needs --reason; recorded in the manifest with who ran it)",
    "reason": 'why the gate is skipped, e.g. --reason "hotfix for CVE-2026-1" (with --skip-gate)',
    "record_baseline": "after promoting, measure the target itself with the gate workload and record it (default: "
                       "the target's gate.record_baseline)",
    "yes": "do not ask for confirmation (CI)",
    "dry_run": DRY, "json": JSON, "debug": DEBUG,
})
@cli
def promote(c, from_="staging", to="prod", recipe=None, from_manifest=False, skip_gate=False, reason=None,
            record_baseline=False, yes=False, dry_run=False, json=False, debug=False):
    """Promote staging's smoke-tested release to prod once it passes prod's gate; roll prod back if its smoke test fails."""
    from stages.runner import run_promote

    run_promote(from_, to, recipe, as_json=json, from_manifest=from_manifest, skip_gate=gate_override(skip_gate, reason),
                record_baseline=record_baseline, yes=yes, dry_run=dry_run)


def gate_override(skip_gate: bool, reason: object):
    """--skip-gate --reason "...": the record of who skips the gate and why, or None; checked before anything runs."""
    from infra.perf import gate

    if not skip_gate:
        if reason is not None:
            _fail("--reason explains --skip-gate; without --skip-gate the promotion is gated and there is nothing to explain")
        return None
    return gate.skip_override(reason)


@stage_task(help=COMMON | {"to": "app version to return to, e.g. v3 (default: the previous release)", "yes": YES, "dry_run": DRY})
@cli
def rollback(c, env=None, recipe=None, to=None, set_=None, yes=False, dry_run=False, json=False, debug=False):
    """Roll an environment back to its previous (or a named) version and record it."""
    from stages import rollback as stage

    _stage(stage, env, recipe, set_, json, stage.Options(to=app_version("--to", to)), yes=yes, dry_run=dry_run)


@stage_task(help=COMMON)
@cli
def status(c, env=None, recipe=None, set_=None, json=False, debug=False):
    """Show the current release, the releases before it, and drift from what plan would deploy."""
    from stages import status as stage

    _stage(stage, env, recipe, set_, json)


@stage_task(help=COMMON | {"min_": "warm replicas to keep (min_containers) until the next deploy (required)", "dry_run": DRY})
@cli
def scale(c, env=None, recipe=None, min_=None, set_=None, dry_run=False, json=False, debug=False):
    """Change warm replicas (min_containers) at run time, without a redeploy."""
    from stages import scale as stage

    if min_ is None:
        _fail("--min is missing: give the number of warm replicas to keep, e.g. --min 2")
    if not str(min_).strip().isdigit():
        _fail(f"--min {min_!r}: give the number of warm replicas, a whole number >= 0, e.g. --min 2")
    _stage(stage, env, recipe, set_, json, stage.Options(min_containers=int(min_)), dry_run=dry_run)


@stage_task(
    iterable=["set_", "compare"],
    help={
        "env": ENV + " (with --url: only for the model name)",
        "recipe": "recipe whose deployed endpoint and model to measure (needed where the environment serves several)",
        "set_": SET,
        "url": "measure this OpenAI-compatible server (http://host:port) instead of the deployed endpoint",
        "proxy_auth": "send MODAL_KEY/MODAL_SECRET to --url too (https or a local address only); "
                      "the environment's own endpoint always gets them",
        "model": "model name to send (default: the recipe's; none when only a URL is given)",
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
        "wait": "seconds to wait through a cold start for a first answer (default: the startup timeout + 120 s; for a URL, 120 s)",
        "label": "name of this run in the table, JSON, plot and comparisons",
        "json": JSON + " (the report)",
        "output": "also write the report (JSON) to this file",
        "plot": "write a PNG: latency percentiles and throughput against concurrency",
        "compare": "compare two earlier reports, or two recorded releases, instead of measuring: --compare a.json "
                   "--compare b.json, or --compare <release id> --compare <release id> (see `invoke status`)",
        "debug": DEBUG,
    },
)
@cli
def bench(c, env=None, recipe=None, set_=None, url=None, proxy_auth=False, model=None, concurrency="1,4,16",
          requests=None, duration=None, prompt_tokens=None, max_tokens=None, temperature=None, top_p=None, top_k=None,
          warmup=None, timeout=None, wait=None, label=None, json=False, output=None, plot=None, compare=None, debug=False):
    """Measure time to first token, inter-token latency and throughput at several concurrency levels."""
    from stages import bench as stage
    from stages.runner import report, run_stage

    if compare:
        from stages.runner import recorded_releases

        stage.compare(compare_paths(compare), releases=lambda: recorded_releases(env, recipe, set_), print_json=json,
                      plot=writable_file("--plot", plot))
        return
    options = bench_options(url=url, proxy_auth=proxy_auth, model=model, concurrency=concurrency, requests=requests,
                            duration=duration, prompt_tokens=prompt_tokens, max_tokens=max_tokens, temperature=temperature,
                            top_p=top_p, top_k=top_k, warmup=warmup, timeout=timeout, wait=wait, label=label,
                            output=output, plot=plot)
    if url and not (env or recipe):
        report([stage.run_url(options)], json)
    else:
        run_stage(stage.run, env, recipe, set_, options, as_json=json, one_recipe="bench measures one recipe at a time")


def bench_options(*, url=None, proxy_auth=False, model=None, concurrency="1,4,16", requests=None, duration=None,
                  prompt_tokens=None, max_tokens=None, temperature=None, top_p=None, top_k=None, warmup=None,
                  timeout=None, wait=None, label=None, output=None, plot=None):
    """`invoke bench`'s flags, checked (all before the first request) into the stage's typed options."""
    from infra.perf import bench as engine
    from stages import bench as stage

    levels = concurrency_levels(concurrency if concurrency is not None else "1,4,16")
    n, dur = whole("--requests", requests), seconds("--duration", duration)
    if n is not None and dur is not None:
        _fail("give --requests (requests per level) or --duration (seconds per level), not both")
    if n is not None and n < max(levels):
        _fail(f"--requests must be at least the highest --concurrency ({max(levels)}) so every stream is busy; got {n}")
    if proxy_auth and not url:
        _fail("--proxy-auth applies to --url; the environment's own endpoint always gets its credentials")
    return stage.Options(
        workload=engine.Workload(
            prompt_tokens=whole("--prompt-tokens", prompt_tokens) or engine.DEFAULT_PROMPT_TOKENS,
            max_tokens=whole("--max-tokens", max_tokens) or engine.DEFAULT_MAX_TOKENS,
            model=model or None,
            **sampling(temperature, top_p, top_k),
        ),
        plan=engine.Plan(
            concurrency=tuple(levels), requests=n, duration=dur,
            warmup=whole("--warmup", 1 if warmup is None else warmup, minimum=0),
            timeout=seconds("--timeout", timeout) or engine.DEFAULT_TIMEOUT,
            cold_start_deadline=seconds("--wait", wait) or engine.DEFAULT_COLD_START_DEADLINE,
        ),
        url=http_url("--url", url) if url else None,
        proxy_auth=proxy_auth,
        wait_given=wait is not None,
        label=label,
        json_path=writable_file("--output", output),
        plot=writable_file("--plot", plot),
    )


@task(auto_shortflags=False, help={
    "version": "SGLang release to read, e.g. 0.5.11 (default: the wheel's own version with --wheel)",
    "wheel": "read this wheel instead of downloading sglang==VERSION from PyPI",
    "debug": DEBUG,
})
@cli
def sglang_flags(c, version=None, wheel=None, debug=False):
    """Regenerate one SGLang version's flag table (infra/control/sglang_versions.json) from its wheel."""
    from infra.control import sglang_flags as flags
    from tools import sglang_tables

    version, _table = sglang_tables.update(flags.TABLE_PATH, version, wheel)
    print("\n".join(flags.describe(version)))
