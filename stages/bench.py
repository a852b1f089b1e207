"""`invoke bench`: check the options, find the endpoint, run infra.bench, print and write the results.

The endpoint is `--url` (any OpenAI-compatible server; no settings or Modal
needed) or the deployed server of `--env`/`--recipe`, found like `smoke` finds
it. The model name comes from `--model`, else from the recipe when an environment
is given; with `--url` alone the payload has no model (SGLang serves its one).
`--compare A.json B.json` only reads two earlier reports and prints B/A ratios.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path

from infra import bench
from infra.errors import ConfigError, StageError
from infra.secrets import scrub

DEFAULT_CONCURRENCY = "1,4,16"
MAX_CONCURRENCY = 4096  # open sockets; raise `ulimit -n` before going near it
CONCURRENCY_HELP = "a comma-separated list of positive whole numbers such as 1,4,16"


def parse_concurrency(text: object) -> list[int]:
    """'1,4,16' -> [1, 4, 16] (order kept, repeats dropped); anything else is a one-line ConfigError."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if isinstance(text, (list, tuple)):
        text = ",".join(str(t) for t in text)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"--concurrency must be {CONCURRENCY_HELP}; got nothing")
    levels: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ConfigError(f"--concurrency must be {CONCURRENCY_HELP}; got {text!r} (an empty item)")
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"--concurrency must be {CONCURRENCY_HELP}; got {text!r} ({item!r} is not a whole number)") from None
        if value < 1:
            raise ConfigError(f"--concurrency must be {CONCURRENCY_HELP}; got {text!r} ({value} is not positive)")
        if value > MAX_CONCURRENCY:
            raise ConfigError(f"--concurrency must be {CONCURRENCY_HELP} up to {MAX_CONCURRENCY}; got {text!r}")
        if value not in levels:
            levels.append(value)
    return levels


def _whole(flag: str, value: object, *, minimum: int = 1) -> int | None:
    if value is None:
        return None
    allowed = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ConfigError(f"{flag} must be {allowed}; got {value!r}")
    if int(text) < minimum:
        raise ConfigError(f"{flag} must be {allowed}; got {int(text)}")
    return int(text)


def _seconds(flag: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip().removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{flag} must be a positive number of seconds; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{flag} must be a positive number of seconds; got {value!r}")
    return number


def sampling_from(temperature: object, top_p: object, top_k: object) -> dict:
    """--temperature (default 0; 'server' sends none), --top-p, --top-k, checked as SGLang would accept them."""
    out: dict = {}
    if temperature is None:
        out["temperature"] = bench.DEFAULT_TEMPERATURE
    elif str(temperature).strip().lower() == "server":
        out["temperature"] = None
    else:
        out["temperature"] = _number("--temperature", temperature, "a number >= 0, or 'server' for the server's default",
                                     lambda x: x >= 0)
    if top_p is not None:
        out["top_p"] = _number("--top-p", top_p, "a number greater than 0 and at most 1", lambda x: 0 < x <= 1)
    if top_k is not None:
        text = str(top_k).strip()
        if isinstance(top_k, bool) or not re.fullmatch(r"-?[0-9]+", text) or not (int(text) >= 1 or int(text) == -1):
            raise ConfigError(f"--top-k must be a positive whole number (or -1 for no limit); got {top_k!r}")
        out["top_k"] = int(text)
    return out


def _number(flag: str, value: object, allowed: str, ok) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag} must be {allowed}; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or not ok(number):
        raise ConfigError(f"{flag} must be {allowed}; got {value!r}")
    return number


def compare_paths(compare: object) -> list[str]:
    """--compare a.json --compare b.json, or --compare a.json,b.json: exactly two files."""
    items = [compare] if isinstance(compare, str) else list(compare or [])
    paths = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if len(paths) != 2:
        raise ConfigError(f"--compare needs exactly two bench JSON files (A then B: --compare a.json --compare b.json); got {len(paths)}")
    return paths


def plan_from(concurrency, requests, duration, warmup, timeout, wait) -> bench.Plan:
    levels = parse_concurrency(concurrency if concurrency is not None else DEFAULT_CONCURRENCY)
    requests = _whole("--requests", requests)
    duration = _seconds("--duration", duration)
    if requests is not None and duration is not None:
        raise ConfigError("give --requests (requests per level) or --duration (seconds per level), not both")
    if requests is not None and requests < max(levels):
        raise ConfigError(f"--requests must be at least the highest --concurrency ({max(levels)}) so every stream is busy; got {requests}")
    return bench.Plan(
        concurrency=tuple(levels),
        requests=requests,
        duration=duration,
        warmup=_whole("--warmup", 1 if warmup is None else warmup, minimum=0),
        timeout=_seconds("--timeout", timeout) or bench.DEFAULT_TIMEOUT,
        cold_start_deadline=_seconds("--wait", wait) or bench.DEFAULT_COLD_START_DEADLINE,
    )


def _url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1].strip("/")) == 0:
        raise ConfigError(f"--url must be an http:// or https:// address of an OpenAI-compatible server; got {url!r}")
    return url.rstrip("/")


def _deployments(env, recipe, overrides):
    from stages.runner import deployments, settings_for

    settings = settings_for(env, recipe, overrides)
    return settings, deployments(settings)


def _one(settings, found):
    if len(found) != 1:
        names = ", ".join(d.recipe for d in found) or "no recipe"
        raise ConfigError(f"--recipe: bench measures one recipe at a time; {settings.env} serves {names}: pick one with --recipe")
    return found[0]


def run(
    env: str | None = None,
    recipe: str | None = None,
    overrides: list[str] | None = None,
    *,
    url: str | None = None,
    model: str | None = None,
    concurrency: object = None,
    requests: object = None,
    duration: object = None,
    prompt_tokens: object = None,
    max_tokens: object = None,
    warmup: object = None,
    timeout: object = None,
    wait: object = None,
    ignore_eos: bool = True,
    temperature: object = None,
    top_p: object = None,
    top_k: object = None,
    label: str | None = None,
    json_out: bool | str | None = None,
    plot: str | None = None,
    compare: object = None,
    out=print,
    say=None,
) -> dict:
    """Measure (or, with `compare`, compare two reports); print; write --json/--plot files; return the dict."""
    say = say or (lambda msg: print(scrub(msg), file=sys.stderr, flush=True))
    if compare:
        a, b = (bench.load_report(p) for p in compare_paths(compare))
        comparison = bench.compare(a, b)
        out(scrub(json.dumps(comparison, indent=2) if json_out is True else bench.render_compare(comparison)))
        if plot:
            say(f"bench: plot written to {bench.plot([a, b], plot)}")
        return comparison

    plan = plan_from(concurrency, requests, duration, warmup, timeout, wait)
    workload = bench.Workload(
        prompt_tokens=_whole("--prompt-tokens", prompt_tokens) or bench.DEFAULT_PROMPT_TOKENS,
        max_tokens=_whole("--max-tokens", max_tokens) or bench.DEFAULT_MAX_TOKENS,
        model=model or None,
        ignore_eos=ignore_eos,
        **sampling_from(temperature, top_p, top_k),
    )
    if isinstance(json_out, str) and not json_out.strip():
        raise ConfigError("--json needs a file path (or no value to print JSON on stdout)")

    target: dict = {}
    if url:
        url = _url(url)
        if env or recipe:  # only for the model name
            settings, found = _deployments(env, recipe, overrides)
            if len(found) == 1:
                d = found[0]
                target = {"env": d.env, "recipe": d.recipe}
                workload = dataclasses.replace(workload, model=model or d.model)
            else:
                target = {"env": settings.env}
                if not model:
                    say(f"bench: {settings.env} serves {', '.join(d.recipe for d in found)} and no --recipe was given: "
                        f"sending no model name (the server at {url} answers with its own)")
    else:
        from stages import smoke
        from stages.runner import context

        settings, found = _deployments(env, recipe, overrides)
        d = _one(settings, found)
        ctx = context(settings)
        ctx.remote.require_credentials()
        try:
            url = smoke.endpoint_url(ctx, d)
        except StageError as err:  # "smoke failed: no deployed endpoint ..." -> "bench failed: ..."
            raise StageError(bench.STAGE, str(err).split(": ", 1)[-1]) from None
        target = {"env": d.env, "recipe": d.recipe, "app": d.app_name}
        workload = dataclasses.replace(workload, model=model or d.model)
        if wait is None:  # a deployed endpoint may be scaled to zero: wait out a full cold start
            plan = dataclasses.replace(plan, cold_start_deadline=float(smoke.deadline_for(d)))

    report = bench.run(url, workload, plan, label=label, target=target, say=say)
    out(scrub(json.dumps(report, indent=2) if json_out is True else bench.render_table(report)))
    if isinstance(json_out, str):
        say(f"bench: results written to {bench.write_json(json.loads(scrub(json.dumps(report))), Path(json_out))}")
    if plot:
        say(f"bench: plot written to {bench.plot([report], plot)}")
    return report
