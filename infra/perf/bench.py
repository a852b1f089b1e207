"""Measure a streaming OpenAI-compatible endpoint: what `invoke bench` runs.

One asyncio process drives every concurrent stream over one aiohttp session (infra/perf/client.stream_chat
timestamps each chunk as it is parsed). Per concurrency level: unmeasured warm-up rounds, then `requests` (or
`duration` seconds) of measured requests, aggregated into percentiles, throughput and errors beside the client's own
overhead, so a reader can tell whether the client was the bottleneck. Before the first level it waits through a cold
start as `smoke` does. Sampling is explicit (greedy by default, as `sglang.bench_serving`) and each prompt opens
with a unique tag, so the prefix cache cannot serve one request from another. docs/bench.md defines every figure
(TTFT, ITL, TPOT, E2E, tokens, percentiles).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import itertools
import json
import math
import os
import platform
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import aiohttp
from pydantic import BeforeValidator, Field, PlainSerializer, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from infra.control.objectives import Target
from infra.perf import client
from infra.runtime.errors import ConfigError, StageError
from infra.runtime.model import Stored, is_resolved
from infra.runtime.secrets import scrub, shown

SCHEMA = 1
STAGE = "bench"
PERCENTILES = (50, 90, 99)
PROMPT_WORD = "hello"
DEFAULT_PROMPT_TOKENS = 512
DEFAULT_MAX_TOKENS = 128
DEFAULT_TEMPERATURE = 0.0  # greedy, as sglang.bench_serving
DEFAULT_TIMEOUT = 300.0  # seconds for one request
DEFAULT_COLD_START_DEADLINE = 120.0  # seconds to wait for a first answer (a deployed endpoint uses its startup timeout)
# Seconds a server with no cold start to wait out (one named by URL, an endpoint with warm replicas) may take to
# answer the first, 16-token request: past it, it accepted the connection and is not answering.
DEFAULT_FIRST_ANSWER = 30.0
MIN_REQUESTS = 16  # per level, when neither requests nor duration is given...
REQUESTS_PER_STREAM = 4  # ...at least this many per concurrent stream
LAG_TICK = 0.005  # seconds between event-loop lag samples
ERROR_PAUSE = 0.25  # seconds a worker waits after a 503 or refused connection, so it does not hammer the endpoint
BUSY_CPU = 0.85  # client CPU utilisation (one core) above which its timestamps are suspect
BUSY_LAG = 0.002  # median event-loop lag (s) above which its timestamps are suspect (idle: ~0.2 ms)


# ---------------------------------------------------------------- workload and plan


def _describe_image(url: str | None) -> str | None:
    """A data URL as its type, size and digest (reports and manifests stay small; equal images compare equal)."""
    if not url or not url.startswith("data:"):
        return url
    head, _, data = url.partition(",")
    return (f"{head.removeprefix('data:')}, {len(data)} characters, sha256 "
            f"{hashlib.sha256(data.encode()).hexdigest()[:16]}")


SAMPLING = ("temperature", "top_p", "top_k")


class Workload(Stored):
    """What each measured request sends (`payload`), and what a report keeps of it: the image as `_describe_image`
    names it. Read back, a report written before sampling was recorded has `sampling` None."""

    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    prompt_words: int | None = None  # prompt_tokens, under the name older reports gave it
    max_tokens: int = DEFAULT_MAX_TOKENS
    model: str | None = None
    ignore_eos: bool = True
    # Each of SAMPLING, None for the server's default (not sent); greedy by default, as sglang.bench_serving.
    sampling: dict[str, int | float | None] | None = None
    extra: dict = Field(default_factory=dict)
    # An image URL (a data: URL for vision recipes) sent after the prompt text in every request. After, so the
    # unique tag still opens the prompt and the prefix cache cannot serve one request's image from another's.
    image: Annotated[str | None, PlainSerializer(_describe_image)] = None

    @model_validator(mode="before")
    @classmethod
    def _as_built_or_read(cls, data: object, info: ValidationInfo) -> object:
        if not isinstance(data, dict) or is_resolved(info):
            return {"sampling": None} | data if isinstance(data, dict) else data
        sampling = dict.fromkeys(SAMPLING) | {"temperature": DEFAULT_TEMPERATURE} | data.get("sampling", {})
        return data | {"prompt_words": data.get("prompt_tokens", DEFAULT_PROMPT_TOKENS), "sampling": sampling}

    def prompt(self, tag: str) -> str:
        return f"[{tag}]" + f" {PROMPT_WORD}" * self.prompt_tokens

    def payload(self, tag: str, max_tokens: int | None = None) -> dict:
        extra = {k: v for k, v in (self.sampling or {}).items() if v is not None} | dict(self.extra)
        if self.ignore_eos and "ignore_eos" not in extra:
            extra["ignore_eos"] = True
        content: str | list[dict] = self.prompt(tag)
        if self.image:
            content = [{"type": "text", "text": content}, {"type": "image_url", "image_url": {"url": self.image}}]
        messages = [{"role": "user", "content": content}]
        return client.chat_payload(messages, model=self.model, max_tokens=max_tokens or self.max_tokens, **extra)

    def comparable(self) -> dict:
        """What must be equal for two measurements to compare: all but the model (a fine-tune swap is the same load)."""
        return self.model_dump(mode="json", exclude={"model"})

    def differences(self, other: Workload, arrow: str) -> str:
        """'max_tokens 128 -> 256, ...': how `other` differs from this one where it counts ('' where it does not)."""
        a, b = self.comparable(), other.comparable()
        return ", ".join(f"{k} {a[k]!r} {arrow} {b[k]!r}" for k in sorted(a) if a[k] != b[k])


class Plan(Stored):
    """How each level is measured; the report keeps it (times under their `_s` names) but for `first_answer`."""

    concurrency: tuple[int, ...]
    requests: int | None = None  # measured requests per level (None with duration: as many as fit)
    duration: float | None = Field(default=None, alias="duration_s")  # seconds per level in which new requests start
    warmup: int = 1  # unmeasured rounds of `concurrency` requests before each level
    timeout: float = Field(default=DEFAULT_TIMEOUT, alias="timeout_s")
    # 0: nothing to wait out, one attempt (first_answer)
    cold_start_deadline: float = Field(default=DEFAULT_COLD_START_DEADLINE, alias="cold_start_deadline_s")
    first_answer: float = Field(default=DEFAULT_FIRST_ANSWER, exclude=True)

    def requests_for(self, concurrency: int) -> int | None:
        if self.duration is not None:
            return None
        return self.requests or max(MIN_REQUESTS, REQUESTS_PER_STREAM * concurrency)


# ---------------------------------------------------------------- the report (schema 1), as written and read back


NOT_A_NUMBER = "not_a_number"


def _number(*kinds: type) -> BeforeValidator:
    """A figure `compare` computes with: a hand-edited "0.1", true or [1, 2] is named where it is, not coerced or
    failing as a TypeError further on."""
    def check(value: object) -> object:
        if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):
            return value
        raise PydanticCustomError(NOT_A_NUMBER, "not a number")

    return BeforeValidator(check)


Figure = Annotated[float | None, _number(int, float)]
Count = Annotated[int, _number(int, float)]


class Stats(Stored):
    """count, mean, min, p50, p90, p99, max of one figure (None where nothing was measured)."""

    count: Count = 0
    mean: Figure = None
    min: Figure = None
    p50: Figure = None
    p90: Figure = None
    p99: Figure = None
    max: Figure = None

    def at(self, q: int) -> float | None:
        return getattr(self, f"p{q}")


class Requests(Stored):
    sent: Count
    ok: Count
    failed: Count


class WarmupCounts(Stored):
    sent: int
    ok: int
    errors: dict[str, int] = Field(default_factory=dict)


class OutputTokens(Stored):
    total: int
    chunks: int
    per_request: Stats
    from_usage: int
    counted: int


class Throughput(Stored):
    output_tokens_per_s: Figure
    requests_per_s: Figure
    output_tokens_per_s_per_user: Stats


class ClientLoad(Stored):
    cpu_s: float | None
    cpu_utilization: float | None
    cpu_ms_per_request: float | None
    cpu_us_per_chunk: float | None
    loop_lag_ms: Stats
    busy: bool


class RequestRecord(Stored):
    t_s: float | None
    error: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    tpot_s: float | None = None
    itl_mean_s: float | None = None
    itl_max_s: float | None = None
    tokens: int = 0
    chunks: int = 0
    usage_tokens: int | None = None


class Goodput(Stored):
    """Requests of a level that met every per-request objective at that level, per second (`goodput`)."""

    requests_per_s: float | None
    met: int
    sent: int
    objectives: list[str] = Field(default_factory=list)


class Level(Stored):
    """One concurrency level's aggregates; `records` (one per request) only in full reports, not in manifests."""

    concurrency: Annotated[int, _number(int)]
    mode: str
    requests: Requests
    errors: dict[str, int] = Field(default_factory=dict)
    error_examples: dict[str, str] = Field(default_factory=dict)
    warmup: WarmupCounts
    wall_s: float | None
    ttft_s: Stats
    itl_s: Stats
    tpot_s: Stats
    e2e_s: Stats
    output_tokens: OutputTokens
    throughput: Throughput
    goodput: Goodput | None = None  # None: measured without objectives (bench --url), or before goodput existed
    client: ClientLoad
    records: list[RequestRecord] | None = Field(default=None, exclude_if=lambda v: v is None)


class BenchTarget(Stored):
    """What was measured: a URL, and where a deployment or release is known, which."""

    url: str | None = None
    model: str | None = None
    env: str | None = Field(default=None, exclude_if=lambda v: v is None)
    recipe: str | None = Field(default=None, exclude_if=lambda v: v is None)
    app: str | None = Field(default=None, exclude_if=lambda v: v is None)
    release_id: str | None = Field(default=None, exclude_if=lambda v: v is None)

    def where(self) -> str:
        return self.env or self.url or "?"


class ClientHost(Stored):
    host: str | None = None
    python: str | None = None
    aiohttp: str | None = None
    cpu_count: int | None = None
    loop_lag_tick_ms: float | None = None


class ColdWait(Stored):
    """The wait for a first answer before the first level (a cold start): not counted in any level."""

    ready: bool = True
    attempts: int | None = None
    message: str | None = Field(default=None, exclude_if=lambda v: v is None)  # only where the stream broke
    waited_s: float | None = None
    errors: dict[str, int] = Field(default_factory=dict)
    unavailable: int = 0


class BenchReport(Stored):
    """What `invoke bench --output` writes and what a manifest keeps of a measurement (`compact`)."""

    schema_version: int = Field(default=SCHEMA, alias="schema")
    tool: str = "invoke bench"
    label: str | None = None
    created: str | None = None
    target: BenchTarget = Field(default_factory=BenchTarget)
    workload: Workload
    plan: Plan
    client: ClientHost = Field(default_factory=ClientHost)
    cold_start: ColdWait = Field(default_factory=ColdWait)
    levels: list[Level]
    path: str | None = Field(default=None, exclude=True)  # the file it was read from (load_report)

    @classmethod
    def from_data(cls, data: object, where: str) -> BenchReport:
        """Tolerant, as `read`, and checked to hold every figure as a number: one line naming `where` if not."""
        found = data.get("schema") if isinstance(data, dict) else None
        if found != SCHEMA:
            raise ConfigError(f"{where} is not a bench report with schema {SCHEMA} (found schema {found!r})")
        try:
            return cls.read(data)
        except ValidationError as err:
            first = err.errors()[0]
            at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
            if first["type"] == NOT_A_NUMBER:
                what = f"= {shown(first['input'])}: not a number (an edited report?)"
            else:
                what = "is missing" if first["type"] == "missing" else f"is not valid ({first['msg']})"
                what += " (a truncated or edited report?)"
            raise ConfigError(f"{where}: {at} {what}; allowed: a report `invoke bench --output` wrote") from None

    def compact(self) -> BenchReport:
        """As a manifest stores it: every aggregate, no per-request records (those stay in --output files)."""
        return self.model_copy(update={"levels": [lv.model_copy(update={"records": None}) for lv in self.levels],
                                       "path": None})

    def level(self, concurrency: int) -> Level | None:
        return next((lv for lv in self.levels if lv.concurrency == concurrency), None)

    def name(self, default: str) -> str:
        return self.label or self.path or default


# ---------------------------------------------------------------- per request


@dataclass
class Record:
    started: float  # perf_counter at send
    finished: float
    error: str | None = None  # EndpointError kind, "empty", or "client" (an unexpected exception)
    message: str | None = None
    ttft: float | None = None
    tpot: float | None = None
    tokens: int = 0  # usage where reported, else chunks
    chunks: int = 0
    usage_tokens: int | None = None
    gaps: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def e2e(self) -> float:
        return self.finished - self.started

    def to_record(self, origin: float) -> RequestRecord:
        return RequestRecord(
            t_s=_round(self.started - origin), error=self.error, ttft_s=_round(self.ttft), e2e_s=_round(self.e2e),
            tpot_s=_round(self.tpot), itl_mean_s=_round(sum(self.gaps) / len(self.gaps)) if self.gaps else None,
            itl_max_s=_round(max(self.gaps)) if self.gaps else None, tokens=self.tokens, chunks=self.chunks,
            usage_tokens=self.usage_tokens)


async def measure_one(session: aiohttp.ClientSession, url: str, payload: dict, timeout: float, observe=None) -> Record:
    started = time.perf_counter()
    try:
        r = await client.stream_chat(session, url, payload, timeout=timeout)
        if observe:
            observe(r)
    except client.EndpointError as err:
        return Record(started, time.perf_counter(), error=err.kind, message=str(err))
    except Exception as err:  # noqa: BLE001 - a benchmark counts and goes on
        return Record(started, time.perf_counter(), error="client", message=f"{type(err).__name__}: {err}")
    if not r.chunk_times:
        return Record(r.started, r.finished, error="empty", message="the stream ended without any content",
                      usage_tokens=r.usage_tokens)
    tokens, span = r.output_tokens, r.chunk_times[-1] - r.chunk_times[0]
    return Record(r.started, r.finished, ttft=r.ttft, tpot=span / (tokens - 1) if tokens > 1 else None, tokens=tokens,
                  chunks=len(r.chunk_times), usage_tokens=r.usage_tokens, gaps=r.inter_token)


def one_request(url: str, workload: Workload, tag: str, *, timeout: float,
                headers: dict[str, str] | None = None) -> Record:
    """One measured request on its own connection, outside any level (what the bake sends every few seconds)."""

    async def send() -> Record:
        async with aiohttp.ClientSession(headers=headers or {}, timeout=aiohttp.ClientTimeout(total=None)) as session:
            return await measure_one(session, url, workload.payload(tag), timeout)

    return asyncio.run(send())


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (NumPy's default) on already sorted values."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize(values: list[float]) -> Stats:
    """count, mean, min, p50, p90, p99, max (None when there are no values)."""
    v = sorted(x for x in values if x is not None)
    return Stats(count=len(v), mean=_round(sum(v) / len(v)) if v else None, min=_round(v[0]) if v else None,
                 **{f"p{q}": _round(percentile(v, q)) for q in PERCENTILES}, max=_round(v[-1]) if v else None)


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


async def loop_lag(samples: list[float]) -> None:
    """Until cancelled, how late the event loop wakes a sleeper, i.e. how late every chunk timestamp can be (with an
    idle loop about 0.1-1 ms: epoll waits in whole milliseconds)."""
    while True:
        due = time.perf_counter() + LAG_TICK
        await asyncio.sleep(LAG_TICK)
        samples.append(max(0.0, time.perf_counter() - due))


# ---------------------------------------------------------------- a level


def new_tags() -> Callable[[], str]:
    """Unique prompt tags: a run id and a counter (defeats prefix caching across requests)."""
    run, n = uuid.uuid4().hex[:8], itertools.count(1)
    return lambda: f"{run}-{next(n)}"


# Where a level's progress goes: `progress(concurrency, requests or None)` returns a context manager that yields
# the function to call after each measured request (stages/show.py draws a bar on a terminal; nothing elsewhere).
Progress = Callable[[int, "int | None"], contextlib.AbstractContextManager[Callable[[], None]]]


def no_progress(_concurrency: int, _total: int | None) -> contextlib.AbstractContextManager[Callable[[], None]]:
    return contextlib.nullcontext(lambda: None)


async def run_level(session: aiohttp.ClientSession, url: str, workload: Workload, plan: Plan, concurrency: int,
                    tags: Callable[[], str] | None = None, observe=None, done: Callable[[], None] = lambda: None,
                    sent: Callable[[dict], None] | None = None, objectives: Sequence[Target] | None = None) -> Level:
    """One concurrency level; `observe(StreamResult)` sees every measured stream that completed (for benchmarks),
    `done()` is called after each measured request (progress), `sent(payload)` with each measured request's body
    just before it goes out (`--write-requests`); `objectives` (all levels'): what goodput counts (None: no goodput)."""
    tags = tags or new_tags()

    # Warm-up rounds: every stream opens its connection and the server sees the load, unmeasured.
    warm: list[Record] = []
    for _ in range(plan.warmup):
        warm += await asyncio.gather(*(measure_one(session, url, workload.payload(tags()), plan.timeout)
                                       for _ in range(concurrency)))

    total = plan.requests_for(concurrency)
    records: list[Record] = []
    lags: list[float] = []
    ticker = asyncio.create_task(loop_lag(lags))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + plan.duration if plan.duration is not None else None
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while True:
            if time.perf_counter() >= deadline if deadline is not None else issued >= total:
                return
            issued += 1
            payload = workload.payload(tags())
            if sent:
                sent(payload)
            record = await measure_one(session, url, payload, plan.timeout, observe)
            records.append(record)
            done()
            if record.error in ("unavailable", "connect"):
                await asyncio.sleep(ERROR_PAUSE)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu0
    ended = time.perf_counter()
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker
    return aggregate(concurrency, records, warm, t0, ended, cpu, lags, mode="duration" if deadline else "requests",
                     objectives=objectives)


# ---------------------------------------------------------------- goodput

# The objectives a single request can meet or miss: a latency of its own, or its own speed. A percentile objective
# is read per request as its limit ("ttft_p90_ms <= 500": this request's TTFT <= 500 ms), the usual definition of
# goodput (requests that met every latency objective, per second); throughput of all streams is no request's.
PER_REQUEST = ("ttft_", "itl_", "tpot_", "e2e_", "output_tokens_per_s_per_user")


def request_value(metric: str, r: Record) -> float | None:
    """One request's own value of an objective's metric, in the metric's unit (None: it has none, e.g. one token)."""
    if metric.startswith("output_tokens_per_s_per_user"):
        return r.tokens / r.e2e if r.e2e > 0 else None
    kind, _, rest = metric.partition("_p")
    scale = 1000 if metric.endswith("_ms") else 1
    if kind == "itl":
        value = percentile(sorted(r.gaps), int(rest.split("_")[0]))
    else:
        value = {"ttft": r.ttft, "tpot": r.tpot, "e2e": r.e2e}[kind]
    return None if value is None else value * scale


def goodput(concurrency: int, records: list[Record], wall: float, objectives: Sequence[Target]) -> Goodput:
    """Successful requests of this level that met every per-request objective at this level, per second of the level."""
    applied = [t for t in objectives if t.concurrency == concurrency and t.metric.startswith(PER_REQUEST)]
    met = sum(r.ok and all((v := request_value(t.metric, r)) is None or t.met_by(v) for t in applied) for r in records)
    return Goodput(requests_per_s=_round(met / wall), met=met, sent=len(records),
                   objectives=[f"{t.metric} {t.limit_text()}" for t in applied])


def aggregate(concurrency: int, records: list[Record], warm: list[Record], t0: float, ended: float, cpu: float,
              lags: list[float], mode: str, objectives: Sequence[Target] | None = None) -> Level:
    ok = [r for r in records if r.ok]
    last = max((r.finished for r in records), default=ended)
    wall = max(last - t0, 1e-9)
    tokens = sum(r.tokens for r in ok)
    chunks = sum(r.chunks for r in ok)
    errors = Counter(r.error for r in records if not r.ok)
    examples: dict[str, str] = {}
    for r in records:
        if r.error and r.error not in examples:
            examples[r.error] = (r.message or "")[:300]
    lag_stats = summarize([x * 1000 for x in lags])
    busy_cpu = cpu / wall
    itl = [g for r in ok for g in r.gaps]
    return Level(
        concurrency=concurrency, mode=mode,
        requests=Requests(sent=len(records), ok=len(ok), failed=len(records) - len(ok)),
        errors=dict(sorted(errors.items())), error_examples=examples,
        warmup=WarmupCounts(sent=len(warm), ok=sum(r.ok for r in warm),
                            errors=dict(sorted(Counter(r.error for r in warm if not r.ok).items()))),
        wall_s=_round(wall), ttft_s=summarize([r.ttft for r in ok]), itl_s=summarize(itl),
        tpot_s=summarize([r.tpot for r in ok]), e2e_s=summarize([r.e2e for r in ok]),
        output_tokens=OutputTokens(total=tokens, chunks=chunks, per_request=summarize([r.tokens for r in ok]),
                                   from_usage=sum(r.usage_tokens is not None for r in ok),
                                   counted=sum(r.usage_tokens is None for r in ok)),
        throughput=Throughput(output_tokens_per_s=_round(tokens / wall), requests_per_s=_round(len(ok) / wall),
                              output_tokens_per_s_per_user=summarize([r.tokens / r.e2e for r in ok if r.e2e > 0])),
        goodput=None if objectives is None else goodput(concurrency, records, wall, objectives),
        client=ClientLoad(cpu_s=_round(cpu), cpu_utilization=_round(busy_cpu, 4),
                          cpu_ms_per_request=_round(cpu * 1000 / len(records), 4) if records else None,
                          cpu_us_per_chunk=_round(cpu * 1e6 / chunks, 3) if chunks else None, loop_lag_ms=lag_stats,
                          busy=bool(busy_cpu > BUSY_CPU or (lag_stats.p50 or 0) > BUSY_LAG * 1000)),
        records=[r.to_record(t0) for r in records],
    )


# ---------------------------------------------------------------- a run


async def wait_until_ready(url: str, workload: Workload, plan: Plan, headers: dict[str, str], say=None) -> ColdWait:
    """One short request, retried through a cold start (503, refused, timeout) like `smoke` does; with no cold start
    to wait out (`plan.cold_start_deadline` 0), one attempt that must answer within `plan.first_answer` seconds."""
    say = say or (lambda _msg: None)
    failed: list[str] = []  # the kind of each failed attempt

    def retrying(attempt: int, err: client.EndpointError) -> None:
        failed.append(err.kind)
        if attempt == 1 or attempt % 30 == 0:
            say(f"bench: waiting for {url} ({err.kind}: {err}); retrying for up to {plan.cold_start_deadline:g} s...")

    started = time.perf_counter()
    cold = ColdWait()
    try:
        cold.attempts = (await client.probe(
            url, workload.payload(f"ready-{uuid.uuid4().hex[:8]}", max_tokens=min(workload.max_tokens, 16)),
            deadline_seconds=plan.cold_start_deadline, headers=headers, on_retry=retrying,
            request_timeout=plan.timeout if plan.cold_start_deadline > 0 else min(plan.timeout, plan.first_answer),
        )).attempts
    except client.EndpointError as err:
        failed.append(err.kind)
        rejected = err.kind == "http" and err.status is not None and 400 <= err.status < 500 and err.status not in (
            408, 429)
        if err.retryable or rejected or err.kind == "certificate":
            # Nothing is there, or every request would be refused the same way (bad model name, auth...).
            raise StageError(STAGE, f"{url} did not answer a first request: {err}") from None
        # It answered but the stream broke (reset, malformed, error event, 5xx): measure and count those.
        cold = ColdWait(ready=False, attempts=len(failed), message=str(err)[:300])
    cold.waited_s, cold.unavailable = _round(time.perf_counter() - started, 3), failed.count("unavailable")
    cold.errors = dict(sorted(Counter(failed).items()))
    return cold


async def run_async(
    url: str, workload: Workload, plan: Plan, *, label: str | None = None, target: BenchTarget | None = None,
    headers: dict[str, str] | None = None, say=None, progress: Progress = no_progress,
    sent: Callable[[int, dict], None] | None = None, objectives: Sequence[Target] | None = None,
) -> BenchReport:
    """Every level of `plan` against `url`; `sent(concurrency, payload)` sees each measured request as it goes out;
    `objectives` (resolved, any level): each level's goodput counts the requests that met those at its level."""
    say = say or (lambda _msg: None)
    headers = headers or {}  # proxy auth only where the caller decided it belongs (client.proxy_auth_headers)
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cold = await wait_until_ready(url, workload, plan, headers, say)
    # No pool limit: aiohttp's default of 100 connections would queue streams and count the wait as TTFT.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None)
    levels = []
    tags = new_tags()
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
        for c in plan.concurrency:
            n = plan.requests_for(c)
            say(f"bench: concurrency {c}: " + (f"{n} requests" if n else f"{plan.duration:g} s") + "...")
            with progress(c, n) as advance:
                levels.append(await run_level(session, url, workload, plan, c, tags, done=advance,
                                              sent=(lambda payload, c=c: sent(c, payload)) if sent else None,
                                              objectives=objectives))
    return BenchReport(
        label=label, created=created,
        target=(target or BenchTarget()).model_copy(update={"url": url, "model": workload.model}),
        workload=workload, plan=plan, cold_start=cold, levels=levels,
        client=ClientHost(host=socket.gethostname(), python=platform.python_version(), aiohttp=aiohttp.__version__,
                          cpu_count=os.cpu_count(), loop_lag_tick_ms=LAG_TICK * 1000))


def run(url: str, workload: Workload, plan: Plan, **options) -> BenchReport:
    return asyncio.run(run_async(url, workload, plan, **options))


# ---------------------------------------------------------------- files

# `--write-requests`: with several levels the path names each level's file through this placeholder.
LEVEL_PLACEHOLDER = "{concurrency}"


def write_requests(payloads: list[dict], template: str | Path, concurrency: int) -> Path:
    """The measured requests of one level (to `template`, LEVEL_PLACEHOLDER read as `concurrency`), in the order
    they went out, each exactly as sent: one JSON object a line.

    That is the JSONL `python -m sglang.bench_serving --dataset-name openai --dataset-path FILE` replays (SGLang
    0.5.11, benchmark/datasets/openai_dataset.py): it keeps the file's order, takes `messages` as the prompt,
    `max_tokens` as the output length (sent as max_completion_tokens, which SGLang reads the same), its own
    --model as the model, and sends every other key (stream_options, temperature, ignore_eos...) unchanged, so
    two tools can be compared on the same requests rather than on workloads that only look alike."""
    path = Path(str(template).replace(LEVEL_PLACEHOLDER, str(concurrency)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p, separators=(",", ":")) + "\n" for p in payloads))
    return path


def write_json(report: BenchReport, path: str | Path) -> Path:
    """The report as `--output` writes it, any credential in it masked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scrub(json.dumps(report.to_data(), indent=2)) + "\n")
    return path


def load_report(path: str | Path) -> BenchReport:
    """A bench report written by --output, checked to hold every figure `compare` reads: one line if not."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--compare: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--compare: {path} is not a bench JSON report ({type(exc).__name__}: {exc})") from None
    return BenchReport.from_data(data, f"--compare: {path}").model_copy(update={"path": str(path)})


# ---------------------------------------------------------------- text


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(header)))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i,
                         (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _num(x: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if x is None else f"{x * scale:.{digits}f}"


def _trio(stats: Stats, scale: float, digits: int) -> str:
    return "/".join(_num(stats.at(q), scale, digits) for q in PERCENTILES)


def _errors(errors: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in errors.items()) or "-"


def describe(report: BenchReport) -> str:
    w, p = report.workload, report.plan
    per_level = (f"{p.duration:g} s per level" if p.duration else
                 f"{p.requests} requests per level" if p.requests else "default requests per level")
    name = f"{report.label}: " if report.label else ""
    sampling = ("sampling=unrecorded" if w.sampling is None  # a report written before sampling was recorded
                else " ".join(f"{k}={'server' if v is None else format(v, 'g')}" for k, v in w.sampling.items()))
    return (f"{name}{report.target.url}  model={report.target.model or '-'}  prompt~{w.prompt_tokens} tokens  "
            f"max_tokens={w.max_tokens}  {sampling}  {per_level}  warm-up {p.warmup} round(s)")


def render_table(report: BenchReport) -> str:
    header = ["conc", "ok/sent", "errors", "TTFT ms p50/p90/p99", "ITL ms p50/p90/p99", "TPOT ms p50",
              "E2E s p50/p90/p99", "tok/s/user p50", "tok/s total", "req/s", "goodput req/s", "loop lag ms p99",
              "CPU ms/req"]
    rows = []
    for lv in report.levels:
        rq, c, tp = lv.requests, lv.client, lv.throughput
        rows.append([
            str(lv.concurrency), f"{rq.ok}/{rq.sent}", _errors(lv.errors), _trio(lv.ttft_s, 1000, 1),
            _trio(lv.itl_s, 1000, 2), _num(lv.tpot_s.p50, 1000, 2), _trio(lv.e2e_s, 1, 3),
            _num(tp.output_tokens_per_s_per_user.p50, 1, 1), _num(tp.output_tokens_per_s, 1, 1),
            _num(tp.requests_per_s, 1, 2), _num(lv.goodput.requests_per_s if lv.goodput else None, 1, 2),
            _num(c.loop_lag_ms.p99, 1, 2), _num(c.cpu_ms_per_request, 1, 2) + (" busy!" if c.busy else ""),
        ])
    lines = [describe(report), _table(header, rows, right=set(range(1, len(header))) - {2})]
    notes = []
    cold = report.cold_start
    if cold.errors:
        notes.append(f"cold start: waited {cold.waited_s or 0:g} s ({_errors(cold.errors)}; 503s here are not level "
                     "errors)")
    for lv in report.levels:
        if good := lv.goodput:
            counted = (f"met {', '.join(good.objectives)}" if good.objectives
                       else "answered (no per-request objective at this level)")
            notes.append(f"goodput at concurrency {lv.concurrency}: {good.met} of {good.sent} requests {counted}")
        for kind, message in lv.error_examples.items():
            notes.append(f"concurrency {lv.concurrency} {kind}: {message}")
        if lv.client.busy:
            notes.append(f"concurrency {lv.concurrency}: the client was busy (CPU {lv.client.cpu_utilization:.0%} of a "
                         f"core, loop lag p50 {_num(lv.client.loop_lag_ms.p50, 1, 2)} ms): its latencies may be "
                         "inflated")
    if notes:  # below the table, after a blank line: never read as more of its rows
        lines += ["", *notes]
    return "\n".join(lines)


# (label, how to read it from a level, digits, True when higher is better, the per-request record field and
# percentile whose confidence interval is the run's own noise, where the report keeps its records)
COMPARED = [
    ("TTFT p50 ms", lambda lv: _ms(lv.ttft_s.p50), 1, False, ("ttft_s", 0.50)),
    ("TTFT p99 ms", lambda lv: _ms(lv.ttft_s.p99), 1, False, ("ttft_s", 0.99)),
    ("ITL p50 ms", lambda lv: _ms(lv.itl_s.p50), 2, False, None),
    ("ITL p99 ms", lambda lv: _ms(lv.itl_s.p99), 2, False, None),
    ("TPOT p50 ms", lambda lv: _ms(lv.tpot_s.p50), 2, False, ("tpot_s", 0.50)),
    ("E2E p50 s", lambda lv: lv.e2e_s.p50, 3, False, None),
    ("E2E p99 s", lambda lv: lv.e2e_s.p99, 3, False, None),
    ("tok/s/user p50", lambda lv: lv.throughput.output_tokens_per_s_per_user.p50, 1, True, None),
    ("tok/s total", lambda lv: lv.throughput.output_tokens_per_s, 1, True, None),
    ("req/s", lambda lv: lv.throughput.requests_per_s, 2, True, None),
    ("errors", lambda lv: lv.requests.failed, 0, False, None),
]
# A change is "better" or "worse" only beyond this share of A and beyond the noise the two runs show themselves:
# each percentile's 95% confidence interval from the run's own requests (order statistics), and, for times in
# ms, the client's own event-loop lag p99 (a delay the client adds to what it timestamps). Otherwise "same".
THRESHOLD = 0.05


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def percentile_noise(values: list[float], q: float) -> float | None:
    """Half the width of the 95% confidence interval of the q-th percentile of `values` (order statistics, normal
    approximation: ranks q·n ± 1.96·√(n·q·(1−q))); None with fewer than 10 values."""
    values = sorted(values)
    n = len(values)
    if n < 10:
        return None
    spread = 1.96 * math.sqrt(n * q * (1 - q))
    lo, hi = max(0, math.floor(q * (n - 1) - spread)), min(n - 1, math.ceil(q * (n - 1) + spread))
    return (values[hi] - values[lo]) / 2


def _noise(level: Level, name: str, record: tuple[str, float] | None) -> float:
    """This level's own noise for a metric, in the metric's unit (0 where the report cannot say)."""
    noise = 0.0
    if record and level.records:
        field, q = record
        found = percentile_noise([v for r in level.records if (v := getattr(r, field)) is not None], q)
        noise = max(noise, (found or 0.0) * (1000 if name.endswith(" ms") else 1))
    if name.endswith(" ms") and (lag := level.client.loop_lag_ms.p99):
        noise = max(noise, lag)
    return noise


class ComparedRow(Stored):
    concurrency: int
    metric: str
    a: float | None
    b: float | None
    ratio: float | None
    noise: float | None
    verdict: str
    digits: int


class Comparison(Stored):
    """B relative to A (`invoke bench --compare --json`); `warnings` where the two were not measured alike."""

    a: str
    b: str
    rows: list[ComparedRow]
    threshold: float = THRESHOLD
    only_a: list[int] = Field(default_factory=list)
    only_b: list[int] = Field(default_factory=list)
    warnings: list[str] | None = Field(default=None, exclude_if=lambda v: v is None)


def compare(a: BenchReport, b: BenchReport) -> Comparison:
    """B relative to A for every metric at every concurrency both reports measured, each change judged against
    THRESHOLD and the runs' own noise."""
    by_c = {lv.concurrency: lv for lv in b.levels}
    in_a = {lv.concurrency for lv in a.levels}
    rows = []
    for la in a.levels:
        lb = by_c.get(la.concurrency)
        if lb is None:
            continue
        for name, get, digits, higher_better, record in COMPARED:
            va, vb = get(la), get(lb)
            ratio = vb / va if va not in (None, 0) and vb is not None else None
            noise = _noise(la, name, record) + _noise(lb, name, record)
            rows.append(ComparedRow(concurrency=la.concurrency, metric=name, a=va, b=vb, ratio=_round(ratio, 4),
                                    noise=_round(noise, 4), verdict=_verdict(va, vb, higher_better, noise),
                                    digits=digits))
    return Comparison(a=a.name("A"), b=b.name("B"), rows=rows, only_a=sorted(in_a - set(by_c)),
                      only_b=sorted(set(by_c) - in_a))


def _verdict(a: float | None, b: float | None, higher_better: bool, noise: float = 0.0) -> str:
    """'same' within THRESHOLD of A or the runs' noise, else 'better' or 'worse' for B; '' when one is missing."""
    if a is None or b is None:
        return ""
    if abs(b - a) <= max(THRESHOLD * abs(a), noise):
        return "same"
    return "better" if (b > a) == higher_better else "worse"


def render_compare(comparison: Comparison) -> str:
    header = ["conc", "metric", "A", "B", "B/A", "B is", "noise ±"]
    rows = [[str(r.concurrency), r.metric, _num(r.a, 1, r.digits), _num(r.b, 1, r.digits),
             "-" if r.ratio is None else f"x{r.ratio:.3f}", r.verdict, _num(r.noise or None, 1, r.digits)]
            for r in comparison.rows]
    lines = [f"A = {comparison.a}", f"B = {comparison.b}", _table(header, rows, right={0, 2, 3, 4, 6}),
             f"'same': within {comparison.threshold:.0%} of A or within the runs' own noise "
             "(percentile confidence intervals from their requests; the client's loop lag p99 for times)"]
    for side, only in (("A", comparison.only_a), ("B", comparison.only_b)):
        if only:
            lines.append(f"only in {side}: concurrency {', '.join(map(str, only))} (not compared)")
    if not comparison.rows:
        lines.append("the two reports share no concurrency level: nothing to compare")
    return "\n".join(lines)


# ---------------------------------------------------------------- plot


def plot(reports: list[BenchReport], path: str | Path) -> Path:
    """One PNG: TTFT, ITL and E2E percentiles and throughput against concurrency, one colour per report."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    panels = [(axes[0][0], "ttft_s", 1000, "time to first token (ms)"),
              (axes[0][1], "itl_s", 1000, "inter-token latency (ms)"),
              (axes[1][0], "e2e_s", 1, "end-to-end latency (s)")]
    styles = {50: "-", 90: "--", 99: ":"}
    ticks: set[int] = set()
    for i, report in enumerate(reports):
        colour = f"C{i % 10}"  # the style's colour cycle
        name = report.name(f"run {i + 1}")
        levels = sorted(report.levels, key=lambda lv: lv.concurrency)
        xs = [lv.concurrency for lv in levels]
        ticks.update(xs)
        for ax, key, scale, _title in panels:
            for q, style in styles.items():
                ys = [math.nan if (v := getattr(lv, key).at(q)) is None else v * scale for lv in levels]
                ax.plot(xs, ys, style, marker="o", color=colour, label=f"{name} p{q}")
        ax = axes[1][1]
        ax.plot(xs, [lv.throughput.output_tokens_per_s for lv in levels], "-", marker="o", color=colour,
                label=f"{name} total")
        ax.plot(xs, [lv.throughput.output_tokens_per_s_per_user.p50 or math.nan for lv in levels], "--",
                marker="s", color=colour, label=f"{name} per user p50")
    for ax, _key, _scale, title in panels:
        ax.set_title(title)
        ax.set_ylim(bottom=0)  # from zero, so the distance between lines reads as a proportion
    axes[1][1].set_title("output tokens/s")
    axes[1][1].set_yscale("log")
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks))
        ax.set_xticklabels([str(t) for t in sorted(ticks)])
        ax.set_xlabel("concurrent streams")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(" vs ".join(describe(r) if len(reports) == 1 else r.name(f"run {i + 1}")
                             for i, r in enumerate(reports)), fontsize="medium")
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
