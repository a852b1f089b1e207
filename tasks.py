"""Invoke tasks: one per stage, plus the flows that chain them. `invoke --list`, `invoke --help TASK`.

One grammar on every task: --env ENV (a promotion's --from/--to), --recipe, --set KEY=VALUE (repeatable),
--json (the machine-readable result on stdout), --debug; --dry-run where a task changes or sends anything
(offline: no credentials, nothing remote read or changed); --force where a stage skips unchanged inputs or a
guard refuses; --yes where it asks. Tasks are thin: flags are checked into the stage's typed options
(stages/flags.py) and one function of stages/ runs. Errors are one line on stderr (stages/cli.py).
"""

from __future__ import annotations

import importlib
import os

from stages.cli import command

ENV = "environment: dev, staging or prod (default: $INFRA_ENV)"
RECIPE = "recipe (default: every recipe the environment serves)"
SET = "override a setting, highest precedence, repeatable: --set scaling.min_containers=2"
JSON = "print the machine-readable result on stdout"
DRY = "say what would be done, offline: no credentials, nothing remote read or changed"
FORCE = "run even when the inputs are unchanged since the last success"
YES = "do not ask for confirmation (guarded environments; CI)"
DEBUG = "show Python tracebacks"
COMMON = {"env": ENV, "recipe": RECIPE, "set_": SET, "json": JSON, "debug": DEBUG}
STAGE_HELP = COMMON | {"dry_run": DRY, "force": FORCE}


def _stage(c, name, env, recipe, set_, json, options=None, **flags):
    """Stage `name` (a module of stages/, imported only now: `--help` stays fast) for the selected recipes."""
    from stages.runner import run_stage

    run_stage(c, importlib.import_module(f"stages.{name}").run, env, recipe, set_, options, as_json=json, **flags)


@command(help=COMMON | {"full": "show everything: image, commands, jobs, rates, objectives, each cold-start phase "
                                  "(default: a page per recipe; --json always has everything)"})
def plan(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, json: bool = False,
         full: bool = False, debug: bool = False):
    """Show exactly what would be deployed (offline, no credentials needed)."""
    from stages.runner import run_plan

    run_plan(env, recipe, set_, as_json=json, full=full)


@command(help=STAGE_HELP)
def build(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
          force: bool = False, json: bool = False, debug: bool = False):
    """Build the recipe's container image on Modal without deploying anything."""
    _stage(c, "build", env, recipe, set_, json, dry_run=dry_run, force=force)


@command(help=STAGE_HELP)
def download(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
             force: bool = False, json: bool = False, debug: bool = False):
    """Download model weights into the weights Volume at pinned revisions (once)."""
    _stage(c, "download", env, recipe, set_, json, dry_run=dry_run, force=force)


@command(help=STAGE_HELP | {"recompile": "compile again and replace the published caches of this key, even where the "
                                           "Volume says they are done (after `invoke status` warned of cache misses)"})
def compile(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
            force: bool = False, recompile: bool = False, json: bool = False, debug: bool = False):
    """Compile DeepGEMM kernels on the recipe's GPU into the kernel cache Volume (once)."""
    from stages import compile as stage

    _stage(c, "compile", env, recipe, set_, json, stage.Options(recompile=recompile), dry_run=dry_run, force=force)


@command(help=STAGE_HELP | {"yes": YES, "force": FORCE + "; in a guarded environment, also from a dirty tree or "
                                                  "another branch"})
def deploy(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
           force: bool = False, yes: bool = False, json: bool = False, debug: bool = False):
    """Deploy the recipe's server and record the release (prod: clean tree on main, confirmed)."""
    _stage(c, "deploy", env, recipe, set_, json, dry_run=dry_run, force=force, yes=yes)


@command(help=COMMON | {"dry_run": DRY})
def smoke(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
          json: bool = False, debug: bool = False):
    """Stream one chat completion from the deployed endpoint; fail unless text comes back."""
    _stage(c, "smoke", env, recipe, set_, json, dry_run=dry_run)


@command(name="gpu-test", help=COMMON | {
    "dry_run": DRY + "; shows what a run costs",
    "shape": "tiny (the suite's tiny model, built in the container), real (the recipe's architecture, dummy weights, "
             "its compile job first) or model (the real model and draft from the weights Volume; after download and "
             "compile); default tiny",
})
def gpu_test(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, shape: str = "tiny",
             dry_run: bool = False, json: bool = False, debug: bool = False):
    """Run the GPU acceptance suite (python -m pytest tests/gpu) in the recipe's image on its GPUs, on Modal."""
    from stages import flags
    from stages import gpu_test as stage

    _stage(c, "gpu_test", env, recipe, set_, json, stage.Options(shape=flags.shape(shape)), dry_run=dry_run)


@command(name="try", help=COMMON | {"env": "environment (default: $INFRA_ENV, else dev)", "dry_run": DRY,
                                    "force": "run it even in a guarded environment (its Modal Environment, Volumes "
                                             "and Secrets are that environment's)"})
def try_(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
         force: bool = False, json: bool = False, debug: bool = False):
    """Run the server ephemerally (like `modal run`), query it once, then stop it."""
    _stage(c, "trial", env or os.getenv("INFRA_ENV") or "dev", recipe, set_, json, dry_run=dry_run, force=force)


@command(help=STAGE_HELP | {"yes": YES})
def pipeline(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
             force: bool = False, yes: bool = False, json: bool = False, debug: bool = False):
    """Build, download, compile, deploy and smoke-test, stopping at the first failure."""
    _stage(c, "pipeline", env, recipe, set_, json, dry_run=dry_run, force=force, yes=yes)


@command(help={
    "from_": "environment whose current release is promoted (default: staging)",
    "to": "environment that receives it (default: prod); it names the one it takes releases from",
    "recipe": RECIPE, "set_": SET + " (the receiving environment's settings)",
    "from_manifest": "promote from a git worktree of the commit the source runs, not this checkout",
    "skip_gate": "promote without the gate's measurement (needs --reason; recorded in the manifest with who ran it)",
    "reason": 'why the gate is skipped, e.g. --reason "hotfix for CVE-2026-1" (with --skip-gate)',
    "record_baseline": "after promoting, measure the target itself with the gate workload and record it (default: "
                       "the target's gate.record_baseline)",
    "yes": YES, "dry_run": DRY, "json": JSON, "debug": DEBUG,
})
def promote(c, from_: str = "staging", to: str = "prod", recipe: str | None = None, set_: list[str] | None = None,
            from_manifest: bool = False, skip_gate: bool = False, reason: str | None = None,
            record_baseline: bool = False, yes: bool = False, dry_run: bool = False, json: bool = False,
            debug: bool = False):
    """Promote staging's smoke-tested release to prod once it passes prod's gate; roll back if its smoke test fails."""
    from stages import flags
    from stages.runner import run_promote

    run_promote(c, from_, to, recipe, set_, as_json=json, from_manifest=from_manifest,
                skip_gate=flags.gate_override(skip_gate, reason), record_baseline=record_baseline, yes=yes,
                dry_run=dry_run)


@command(help=COMMON | {"to": "app version to return to, e.g. v3 (default: the previous release)", "yes": YES,
                        "dry_run": DRY, "force": "also to a release whose smoke test failed"})
def rollback(c, env: str | None = None, recipe: str | None = None, to: str | None = None, set_: list[str] | None = None,
             yes: bool = False, dry_run: bool = False, force: bool = False, json: bool = False, debug: bool = False):
    """Roll an environment back to its previous (or a named) version and record it."""
    from stages import flags
    from stages import rollback as stage

    _stage(c, "rollback", env, recipe, set_, json, stage.Options(to=flags.app_version("--to", to)), yes=yes,
           dry_run=dry_run, force=force)


@command(help=COMMON | {
    "cost": "also what Modal billed per release in a period, beside the estimate, and $/1M output tokens at the bill",
    "since": "what the sentinel's probes saw since then (SLO attainment, errors, p50/p90, cold starts) and the bake's "
             "verdict: 30m, 1h, 7d or a UTC time; with --cost, also the start of its period (default 7d)",
    "until": "end of the --since window or --cost period, the same forms (default: now)",
    "advise": "propose [[scaling.schedule]] windows from the bill's hourly history and the recorded starts",
    "weeks": "whole weeks of history --advise reads (default 4, at least 2)",
})
def status(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, cost: bool = False,
           since: str | None = None, until: str | None = None, advise: bool = False, weeks: int = 4,
           json: bool = False, debug: bool = False):
    """Show the current release, the releases before it, drift from plan, the ledger, the sentinel and the bill."""
    from stages import status as stage

    _stage(c, "status", env, recipe, set_, json, stage.Options(cost=cost, since=since, until=until, advise=advise,
                                                         weeks=weeks))


@command(help=COMMON | {
    "since": "every line since then instead of the last --tail: 30m, 2h, 7d or a UTC time such as 2026-12-01T08:00",
    "follow": "then print the server's new lines as they come, until Ctrl-C or the app stops",
    "tail": "lines per app without --since (default 100)",
    "dry_run": DRY,
})
def logs(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, since: str | None = None,
         follow: bool = False, tail: int = 100, dry_run: bool = False, json: bool = False, debug: bool = False):
    """Show what the server and the last download or compile job printed (Modal's app logs)."""
    from stages import logs as stage

    options = stage.check(stage.Options(since=since, follow=follow, tail=tail), as_json=json)
    _stage(c, "logs", env, recipe, set_, json, options, dry_run=dry_run)


@command(help=COMMON | {"dry_run": DRY, "yes": YES})
def stop(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
         yes: bool = False, json: bool = False, debug: bool = False):
    """Stop a recipe's apps in an environment (server and running jobs) until the next deploy, and record it."""
    _stage(c, "stop", env, recipe, set_, json, dry_run=dry_run, yes=yes)


@command(help=COMMON | {"dry_run": DRY})
def check(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, dry_run: bool = False,
          json: bool = False, debug: bool = False):
    """Fail when the sentinel's SLO attainment is below sentinel.min_attainment or the bill drifts from the estimate."""
    _stage(c, "check", env, recipe, set_, json, dry_run=dry_run)


@command(help=COMMON | {"recipe": "ignored: the sentinel probes every recipe the environment serves", "dry_run": DRY,
                        "yes": YES, "once": "instead of deploying, probe each recipe once from here and record it, as "
                                            "one scheduled run does (proxy auth: MODAL_KEY / MODAL_SECRET)"})
def sentinel(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, once: bool = False,
             dry_run: bool = False, yes: bool = False, json: bool = False, debug: bool = False):
    """Deploy the environment's sentinel: a scheduled Modal Function probing every served recipe."""
    from stages.runner import run_sentinel

    run_sentinel(c, env, set_, as_json=json, once=once, dry_run=dry_run, yes=yes)


@command(help=COMMON | {"min_": "warm replicas to keep (min_containers) until the next deploy (required)",
                        "dry_run": DRY,
                        "force": "also where the environment forbids warm replicas (allow_warm_replicas = false)"})
def scale(c, env: str | None = None, recipe: str | None = None, min_: int | None = None, set_: list[str] | None = None,
          dry_run: bool = False, force: bool = False, json: bool = False, debug: bool = False):
    """Change warm replicas (min_containers) at run time, without a redeploy."""
    from stages import flags
    from stages import scale as stage

    _stage(c, "scale", env, recipe, set_, json, stage.Options(min_containers=flags.replicas("--min", min_)),
           dry_run=dry_run, force=force)


@command(help={
    "env": ENV + " (with --url: only for the model name)",
    "recipe": "recipe whose deployed endpoint and model to measure (needed where the environment serves several)",
    "set_": SET,
    "url": "measure this OpenAI-compatible server (http://host:port) instead of the deployed endpoint",
    "proxy_auth": "send MODAL_KEY/MODAL_SECRET to --url too (https or a local address only); "
                  "the environment's own endpoint gets them when it requires proxy auth",
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
    "wait": "seconds to wait through a cold start for a first answer (default: the startup timeout + 120 s; "
            "for a URL, 120 s)",
    "label": "name of this run in the table, JSON, plot and comparisons",
    "json": JSON + " (the report)",
    "output": "also write the report (JSON) to this file",
    "plot": "write a PNG: latency percentiles and throughput against concurrency",
    "write_requests": "write each level's measured requests, exactly as sent, one JSON line each: the dataset "
                      "`python -m sglang.bench_serving --dataset-name openai --dataset-path FILE` replays (with "
                      "several levels the path must contain {concurrency})",
    "compare": "compare two earlier reports, or two recorded releases, instead of measuring: --compare a.json "
               "--compare b.json, or --compare <release id> --compare <release id> (see `invoke status`)",
    "dry_run": DRY, "debug": DEBUG,
})
def bench(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None, url: str | None = None,
          proxy_auth: bool = False, model: str | None = None, concurrency: str = "1,4,16", requests: int | None = None,
          duration: float | None = None, prompt_tokens: int | None = None, max_tokens: int | None = None,
          temperature: str | None = None, top_p: float | None = None, top_k: int | None = None,
          warmup: int | None = None, timeout: float | None = None, wait: float | None = None, label: str | None = None,
          json: bool = False, output: str | None = None, plot: str | None = None, compare: list[str] | None = None,
          write_requests: str | None = None, dry_run: bool = False, debug: bool = False):
    """Measure time to first token, inter-token latency and throughput at several concurrency levels."""
    from stages import bench as stage
    from stages import flags
    from stages.runner import recorded_releases, run_bench

    if compare:
        stage.compare(flags.compare_paths(compare), releases=lambda: recorded_releases(c, env, recipe, set_),
                      print_json=json, plot=flags.writable_file("--plot", plot))
        return
    options = flags.bench_options(url=url, proxy_auth=proxy_auth, model=model, concurrency=concurrency,
                                  requests=requests, duration=duration, prompt_tokens=prompt_tokens,
                                  max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                  warmup=warmup, timeout=timeout, wait=wait, label=label, output=output, plot=plot,
                                  write_requests=write_requests)
    run_bench(c, env, recipe, set_, options, as_json=json, dry_run=dry_run)


@command(help={
    "env": "regenerate the tables of the SGLang versions this environment's recipes run",
    "recipe": "with --env: only this recipe's version",
    "set_": SET,
    "version": "SGLang release to read, e.g. 0.5.11 (default: the wheel's own version with --wheel)",
    "wheel": "read this wheel instead of downloading sglang==VERSION from PyPI",
    "dry_run": "read the wheel and show the table's summary; write nothing",
    "json": JSON, "debug": DEBUG,
})
def sglang_flags(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None,
                 version: str | None = None, wheel: str | None = None, dry_run: bool = False, json: bool = False,
                 debug: bool = False):
    """Regenerate SGLang flag tables (infra/control/sglang_versions.json) from the published wheels."""
    from stages.runner import run_sglang_flags

    run_sglang_flags(env, recipe, set_, version, wheel, as_json=json, dry_run=dry_run)


@command(help={
    "env": ENV + " (whose plan is shown before and after)",
    "recipe": "the recipe to move (one)",
    "set_": SET,
    "sglang": "SGLang release to move to, e.g. 0.5.17: flags migrated, image tag and derived settings moved",
    "modal": "modal client release to pin in pyproject.toml, e.g. 1.6.5",
    "model_revision": "pin the model to this revision (a branch is resolved to its commit on the Hub)",
    "draft_revision": "pin the draft model to this revision (a branch is resolved to its commit on the Hub)",
    "image": "the new image tag, where it does not follow the old tag's pattern",
    "dry_run": "show the migration and the plan before and after, offline; write nothing",
    "force": "write what migrated even where a flag could not be migrated (it is listed)",
    "json": JSON, "debug": DEBUG,
})
def upgrade(c, env: str | None = None, recipe: str | None = None, set_: list[str] | None = None,
            sglang: str | None = None, modal: str | None = None, model_revision: str | None = None,
            draft_revision: str | None = None, image: str | None = None, dry_run: bool = False, force: bool = False,
            json: bool = False, debug: bool = False):
    """Move a recipe to another SGLang, modal or model revision: migrated flags, a diff, plan before and after."""
    from stages.runner import run_upgrade

    run_upgrade(env, recipe, set_, sglang=sglang, modal=modal, model_revision=model_revision,
                draft_revision=draft_revision, image=image, as_json=json, dry_run=dry_run, force=force)
