"""Flag values, checked before anything runs: each mistake is one line naming the flag, the value and what is allowed.

tasks.py hands its flags here and gets the stages' typed options back; nothing here
parses argv (pyinvoke does, stages/cli.py types it) and nothing runs a stage.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path

from infra.perf import bench as engine
from infra.perf import gate
from infra.runtime.errors import ConfigError
from infra.runtime.secrets import shown
from stages import bench as stage


def _fail(message: str):
    raise ConfigError(message)


def whole(flag: str, value: object, *, minimum: int = 1) -> int | None:
    if value is None:
        return None
    allowed = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?[0-9]+", text):
        _fail(f"{flag} must be {allowed}; got {shown(value)}")
    if int(text) < minimum:
        _fail(f"{flag} must be {allowed}; got {int(text)}")
    return int(text)


def seconds(flag: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip().removesuffix("s"))
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        _fail(f"{flag} must be a positive number of seconds; got {shown(value)}")
    return number


def number(flag: str, value: object, *, low: float, high: float | None = None,
           allowed: str | None = None) -> float | None:
    if value is None:
        return None
    allowed = allowed or f"a number from {low:g}" + (f" to {high:g}" if high is not None else " up")
    try:
        x = float(str(value).strip())
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or x < low or (high is not None and x > high):
        _fail(f"{flag} must be {allowed}; got {shown(value)}")
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
            _fail(f"--concurrency must be {CONCURRENCY_HELP}; got {shown(text)} (an empty item)")
        if not re.fullmatch(r"[+-]?[0-9]+", item):
            _fail(f"--concurrency must be {CONCURRENCY_HELP}; got {shown(text)} ({shown(item)} is not a whole number)")
        value = int(item)
        if value < 1:
            _fail(f"--concurrency must be {CONCURRENCY_HELP}; got {shown(text)} ({value} is not positive)")
        if value > MAX_CONCURRENCY:
            _fail(f"--concurrency must be {CONCURRENCY_HELP} up to {MAX_CONCURRENCY}; got {shown(text)}")
        if value not in levels:
            levels.append(value)
    return levels


def http_url(flag: str, url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket, for one
        _fail(f"{flag} {shown(url)}: not a URL ({exc}); allowed: an http:// or https:// address such as "
              "http://127.0.0.1:30000 or http://[::1]:30000")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(f"{flag} must be an http:// or https:// address of an OpenAI-compatible server; got {shown(url)}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        _fail(f"{flag} must be an http:// or https:// address with a valid port; got {shown(url)}")
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
    out: dict = {"temperature": engine.DEFAULT_TEMPERATURE}
    if temperature is not None:
        out["temperature"] = None if str(temperature).strip().lower() == "server" else number(
            "--temperature", temperature, low=0, allowed="a number >= 0, or 'server' for the server's default")
    if top_p is not None:
        out["top_p"] = p = number("--top-p", top_p, low=0, high=1, allowed="a number greater than 0 and at most 1")
        if p == 0:
            _fail(f"--top-p must be a number greater than 0 and at most 1; got {shown(top_p)}")
    if top_k is not None:
        text = str(top_k).strip()
        if isinstance(top_k, bool) or not re.fullmatch(r"-?[0-9]+", text) or not (int(text) >= 1 or int(text) == -1):
            _fail(f"--top-k must be a positive whole number (or -1 for no limit); got {shown(top_k)}")
        out["top_k"] = int(text)
    return out


def compare_paths(compare: object) -> list[str]:
    """--compare a.json --compare b.json, or --compare a.json,b.json: exactly two files or release ids."""
    items = [compare] if isinstance(compare, str) else list(compare or [])
    paths = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if len(paths) != 2:
        _fail("--compare needs exactly two bench JSON files or release ids (A then B: --compare a.json --compare "
              f"b.json); got {len(paths)}")
    return paths


def replicas(flag: str, value: int | None) -> int:
    """A required count of warm replicas: a whole number, 0 or more."""
    if value is None:
        _fail(f"{flag} is missing: give the number of warm replicas to keep, e.g. {flag} 2")
    if value < 0:
        _fail(f"{flag} {value}: give the number of warm replicas, a whole number >= 0, e.g. {flag} 2")
    return value


def app_version(flag: str, text: str | None) -> int | None:
    if text in (None, ""):
        return None
    digits = str(text).lstrip("v")
    if not digits.isdigit() or int(digits) < 1:
        _fail(f"{flag} {shown(text)}: expected an app version such as v3 or 3 (see `invoke status`)")
    return int(digits)


def gate_override(skip_gate: bool, reason: object):
    """--skip-gate --reason "...": the record of who skips the gate and why, or None; checked before anything runs."""
    if not skip_gate:
        if reason is not None:
            _fail("--reason explains --skip-gate; without --skip-gate the promotion is gated and there is nothing to "
                  "explain")
        return None
    return gate.skip_override(reason)


def shape(value: object) -> str:
    """`invoke gpu-test --shape`: one of the acceptance suite's shapes (infra/runtime/acceptance.SHAPES)."""
    from infra.runtime.acceptance import SHAPES

    if value not in SHAPES:
        _fail(f"--shape {value!r}: allowed: {', '.join(SHAPES)}")
    return str(value)


def bench_options(*, url=None, proxy_auth=False, model=None, concurrency="1,4,16", requests=None, duration=None,
                  prompt_tokens=None, max_tokens=None, temperature=None, top_p=None, top_k=None, warmup=None,
                  timeout=None, wait=None, label=None, output=None, plot=None, write_requests=None):
    """`invoke bench`'s flags, checked (all before the first request) into the stage's typed options."""
    levels = concurrency_levels(concurrency if concurrency is not None else "1,4,16")
    n, dur = whole("--requests", requests), seconds("--duration", duration)
    if n is not None and dur is not None:
        _fail("give --requests (requests per level) or --duration (seconds per level), not both")
    if n is not None and n < max(levels):
        _fail(f"--requests must be at least the highest --concurrency ({max(levels)}) so every stream is busy; got {n}")
    if proxy_auth and not url:
        _fail("--proxy-auth applies to --url; the environment's own endpoint always gets its credentials")
    if write_requests is not None and len(levels) > 1 and engine.LEVEL_PLACEHOLDER not in str(write_requests):
        _fail(f"--write-requests {write_requests}: {len(levels)} concurrency levels need one file each; allowed: a "
              f"path containing {engine.LEVEL_PLACEHOLDER}, e.g. requests-c{engine.LEVEL_PLACEHOLDER}.jsonl")
    return stage.Options(
        workload=engine.Workload(prompt_tokens=whole("--prompt-tokens", prompt_tokens) or engine.DEFAULT_PROMPT_TOKENS,
                                 max_tokens=whole("--max-tokens", max_tokens) or engine.DEFAULT_MAX_TOKENS,
                                 model=model or None, sampling=sampling(temperature, top_p, top_k)),
        plan=engine.Plan(concurrency=tuple(levels), requests=n, duration=dur,
                         warmup=whole("--warmup", 1 if warmup is None else warmup, minimum=0),
                         timeout=seconds("--timeout", timeout) or engine.DEFAULT_TIMEOUT,
                         cold_start_deadline=seconds("--wait", wait) or engine.DEFAULT_COLD_START_DEADLINE),
        url=http_url("--url", url) if url else None, proxy_auth=proxy_auth, wait_given=wait is not None, label=label,
        json_path=writable_file("--output", output), plot=writable_file("--plot", plot),
        requests_path=writable_file("--write-requests", write_requests))
