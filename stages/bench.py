"""`invoke bench`: measure an endpoint with infra/perf/bench.py, print the table, write the files.

Three ways in (`run`: an environment's endpoint; `run_url`: any server; `compare`: two reports or releases), one
measuring path (`measure`). Options arrive checked (stages/flags.py); nothing here reads flags.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.control import objectives
from infra.control.objectives import Target
from infra.control.resolve import gate_for
from infra.perf import bench, client, ledger, smoketest
from infra.runtime.deployment import Deployment
from infra.runtime.secrets import scrub
from stages import show
from stages.common import Context, StageResult, endpoint, result

STAGE = bench.STAGE


@dataclass(frozen=True)
class Options:
    workload: bench.Workload
    plan: bench.Plan
    url: str | None = None  # measure this server instead of the deployed endpoint
    # send MODAL_KEY/MODAL_SECRET to `url` (--proxy-auth; the deployed endpoint: client.endpoint_headers)
    proxy_auth: bool = False
    wait_given: bool = False  # --wait was given: do not stretch the cold-start wait to the deployment's
    label: str | None = None
    json_path: str | None = None  # write the report here
    plot: str | None = None  # write a PNG here
    requests_path: str | None = None  # write each level's measured requests here (bench.write_requests), per level


def _say(msg: str) -> None:
    print(scrub(msg), file=sys.stderr, flush=True)


def would(options: Options, where: str) -> str:
    """What a dry run says it would measure."""
    p, w = options.plan, options.workload
    per_level = f"{p.duration:g} s" if p.duration else f"{p.requests or 'default'} requests"
    return (f"bench (dry run): would measure {where} at concurrency {','.join(map(str, p.concurrency))}, {per_level} "
            f"per level, prompt ~{w.prompt_tokens} tokens, {w.max_tokens} output tokens"
            + (f", writing {options.json_path}" if options.json_path else "")
            + (f" and {options.plot}" if options.plot else "")
            + (f"; the requests sent to {options.requests_path}" if options.requests_path else ""))


def run(ctx: Context, d: Deployment, options: Options) -> StageResult[bench.BenchReport]:
    """The deployed endpoint of `d` (from its release manifest, else Modal), with the environment's proxy-auth
    credentials; or `options.url` with the recipe's model name, and credentials only with `options.proxy_auth`."""
    target = bench.BenchTarget(env=d.env, recipe=d.recipe.name, app=None if options.url else d.app_name)
    workload = options.workload if options.workload.model else options.workload.model_copy(
        update={"model": d.recipe.model})
    if ctx.dry_run:
        where = options.url or f"the deployed endpoint of {d.app_name} (Modal environment {d.modal.environment})"
        return result(STAGE, d, "dry-run", would(options, f"{where}, model {workload.model}"))
    # Goodput counts the requests that met the environment's objectives (its gate's, resolved for this recipe).
    held = objectives.resolve(gate_for(ctx.settings, d.recipe.name), d.recipe.target_concurrency)
    deployed = None if options.url else d
    if deployed:
        ctx.remote.require_credentials()
        options = dataclasses.replace(options, url=endpoint(ctx, d, STAGE), proxy_auth=d.auth.proxy_auth)
    report = measure(dataclasses.replace(options, workload=workload, plan=waits(options, deployed)), target,
                     say=ctx.say, held=held)
    return result(STAGE, d, "ran", bench.render_table(report), report)


def waits(options: Options, d: Deployment | None) -> bench.Plan:
    """How long the first request may wait for a replica: what --wait says; else a full cold start where the target is
    a deployment that scales to zero (no warm replica), and nothing (one attempt: a refused port fails at once) for a
    server named by --url or a deployment that keeps warm replicas."""
    if options.wait_given:
        return options.plan
    scales_to_zero = d is not None and d.scaling.min_containers == 0
    return options.plan.model_copy(update={"cold_start_deadline": float(smoketest.deadline_for(d)) if scales_to_zero
                                           else 0.0})


def run_url(options: Options, *, say=_say, dry_run: bool = False) -> StageResult[bench.BenchReport]:
    """Any OpenAI-compatible server, no environment, settings or credentials: `invoke bench --url U` without --env
    (SGLang answers with its one model when none is named)."""
    if dry_run:
        return StageResult(STAGE, "", "", "dry-run", would(options, options.url))
    report = measure(dataclasses.replace(options, plan=waits(options, None)), say=say)
    return StageResult(STAGE, "", "", "ran", bench.render_table(report), report)


def measure(options: Options, target: bench.BenchTarget | None = None, *, say=_say,
            held: tuple[Target, ...] | None = None) -> bench.BenchReport:
    """Measure `options.url` and write the report and plot files; return the report. With `held` (objectives), each
    level's goodput: the requests per second that met those at its level (None: no objectives known, no goodput)."""
    headers = client.proxy_auth_headers(options.url, required=True) if options.proxy_auth else {}
    sent: dict[int, list[dict]] = {}
    report = bench.run(options.url, options.workload, options.plan, label=options.label, target=target,
                       headers=headers, say=say, progress=show.progress_bars(),
                       sent=(lambda c, payload: sent.setdefault(c, []).append(payload)) if options.requests_path
                       else None, objectives=held)
    for c, payloads in sent.items():
        say(f"bench: the {len(payloads)} requests sent at concurrency {c} written to "
            f"{bench.write_requests(payloads, options.requests_path, c)}")
    if options.json_path:
        say(f"bench: results written to {bench.write_json(report, Path(options.json_path))}")
    if options.plot:
        say(f"bench: plot written to {bench.plot([report], options.plot)}")
    return report


def is_release(item: str) -> bool:
    """A release id (r<date>-<time>-<hex>) that is not also the name of a file here."""
    return ledger.is_release_id(item) and not Path(item).exists()


def compare(items: list[str], *, releases: Callable[[], tuple[Iterable[Any], str]] | None = None,
            print_json: bool = False, plot: str | None = None, out=print, say=_say) -> bench.Comparison:
    """B relative to A, per level, from two earlier --json reports, two recorded releases, or one of each.

    `releases` reads the recorded releases and names where from (only called when an item is a release id)."""
    @functools.cache
    def recorded() -> tuple[list, str]:  # read once, and only where an item is a release
        history, where = releases()
        return list(history), where

    def report(item: str) -> bench.BenchReport:
        if not is_release(item):
            return bench.load_report(item)
        history, where = recorded()
        return ledger.labelled(ledger.find_release(history, item, where))

    a, b = (report(item) for item in items)
    if any(is_release(item) for item in items):
        comparison = ledger.compare_reports(a, b)
        text = ledger.render_comparison(comparison)
    else:
        comparison = bench.compare(a, b)
        text = bench.render_compare(comparison)
    out(scrub(json.dumps(comparison.to_data(), indent=2) if print_json else text))
    if plot:
        say(f"bench: plot written to {bench.plot([a, b], plot)}")
    return comparison
