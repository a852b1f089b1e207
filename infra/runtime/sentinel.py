"""The sentinel: one short request to each served recipe every `[sentinel] interval_seconds`, recorded on Modal.

After a promotion prod is otherwise dark (docs/sentinel.md). A scheduled Function of its own app per environment
asks Modal how many replicas each server has and, unless none is up and `wake` is off (a probe would cost a GPU
start: a *skipped* probe is recorded), streams one chat completion and records TTFT, TPOT and the outcome.

The record is a Modal Dict used as a ring of hourly slots (`slot_key`): an hour overwrites the same hour
`retention_days` earlier (Modal expires entries 7 days after their last access). One writer per environment (the
Function's timeout is below its interval) makes read-modify-write of a slot safe without a lock. Standard library and
pydantic only (a slim image).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, Field, field_validator

from infra.runtime.deployment import ModalName
from infra.runtime.model import Frozen

SCHEMA_VERSION = 1  # of `Slot` and `Probe`; a reader refuses slots of a higher one (`NewerSchema`)
RING_DICT = "sglang-sentinel"  # a Modal Dict per Modal Environment
SPEC_VARIABLE = "INFRA_SENTINEL"  # the container's `SentinelSpec`, as JSON
# The shortest interval Modal documents for a schedule: `modal.Cron("* * * * *")` (modal.com/docs/reference/modal.Cron).
# `modal.Period(seconds=...)` takes less, but Modal states no such guarantee for it.
MIN_INTERVAL_SECONDS = 60
# Modal expires a Dict entry 7 days after its last access (modal.com/docs/guide/dicts): a ring can keep no more.
MAX_RETENTION_DAYS = 7
PROBE_PROMPT = "Reply with one short sentence."
SECONDS_PER_HOUR = 3600


class NewerSchema(Exception):
    """A slot written by a newer version of this package: skipped, never read as this version's, never overwritten."""


# ---------------------------------------------------------------------------- the settings ([sentinel])


class Sentinel(Frozen):
    """`[sentinel]`: whether this environment is watched, how often, for how long, and what `check` holds."""

    enabled: bool = Field(default=False, description="`invoke sentinel` deploys the probing app for this environment")
    interval_seconds: int = Field(default=60, description="seconds between probes (Modal's minimum: "
                                                          f"{MIN_INTERVAL_SECONDS})")
    wake: bool = Field(default=False, description="probe even with no replica up (wakes a scale-to-zero environment)")
    retention_days: int = Field(default=7, ge=1, le=MAX_RETENTION_DAYS,
                                description="days of probes the ring keeps (Modal expires Dict entries after 7)")
    max_tokens: int = Field(default=16, ge=2, le=256,
                            description="output tokens per probe (two at least: TPOT needs two)")
    min_attainment: float = Field(default=0.99, ge=0, le=1,
                                  description="`invoke check` fails below this share of probes within an objective")
    check_minutes: int = Field(default=60, ge=1, le=MAX_RETENTION_DAYS * 24 * 60,
                               description="the window `invoke check` judges, in minutes back from now")
    proxy_auth_secret: ModalName = Field(default="sentinel-proxy-auth",
                                   description="NAME of the Modal Secret with MODAL_KEY/MODAL_SECRET for proxy auth")

    @field_validator("interval_seconds")
    @classmethod
    def _at_least_modals_minimum(cls, v: int) -> int:
        if v < MIN_INTERVAL_SECONDS:
            raise ValueError(f"Modal schedules a Function at most once a minute; allowed: {MIN_INTERVAL_SECONDS} "
                             "seconds or more, e.g. 60")
        return v

    @property
    def slots(self) -> int:
        return self.retention_days * 24

    @property
    def probes_per_hour(self) -> float:
        return SECONDS_PER_HOUR / self.interval_seconds


# ---------------------------------------------------------------------------- what the container receives


class ProbeTarget(Frozen):
    """One served recipe: its server's app and the model name it answers to."""

    recipe: str
    app_name: str
    model: str
    proxy_auth: bool


class SentinelSpec(Frozen):
    """Everything the sentinel container needs (`SPEC_VARIABLE`), computed on the laptop from the settings."""

    env: str
    modal_environment: str
    app_name: str
    settings: Sentinel
    targets: tuple[ProbeTarget, ...]
    wait_seconds: float = Field(description="how long a probe that wakes a server waits for its first byte")

    @property
    def timeout_seconds(self) -> int:
        """The Function's timeout: below the interval, so two runs never write one slot at once."""
        return max(self.settings.interval_seconds - 5, 30)

    def to_json(self) -> str:
        return self.model_dump_json()


# ---------------------------------------------------------------------------- the records


class Probe(Frozen):
    """One probe of one recipe: what a user would have seen at that minute."""

    at: float = Field(description="epoch seconds the request was sent (or skipped)")
    recipe: str
    outcome: Literal["ok", "error", "skipped"]
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    output_tokens: int = 0
    http_status: int | None = None
    cold_start: bool = Field(default=False, description="no replica was up when it was sent: it met a cold start")
    replicas: int | None = Field(default=None, description="replicas up before it was sent, as Modal said")
    error: str | None = None


class Slot(Frozen):
    """One recipe's probes in one UTC hour: one entry of the ring."""

    schema_version: int = SCHEMA_VERSION
    recipe: str
    hour: int = Field(description="epoch seconds of the hour's start")
    probes: tuple[Probe, ...] = ()

    @classmethod
    def read(cls, value: object, key: str) -> Slot:
        """A stored value, read tolerantly (unknown keys ignored); a newer schema is `NewerSchema`, one line."""
        if not isinstance(value, dict):
            raise NewerSchema(f"sentinel ring entry {key}: not a slot this version wrote ({type(value).__name__}); "
                              "skipped")
        version = value.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise NewerSchema(f"sentinel ring entry {key}: written by schema {version}, this version reads up to "
                              f"{SCHEMA_VERSION}; skipped (upgrade this checkout to read it)")
        return cls.model_validate(value, strict=False, extra="ignore")

    def to_value(self) -> dict:
        return self.model_dump(mode="json")


def hour_of(at: float) -> int:
    return int(at // SECONDS_PER_HOUR) * SECONDS_PER_HOUR


def slot_key(recipe: str, hour: int, slots: int) -> str:
    return f"{recipe}#{(hour // SECONDS_PER_HOUR) % slots}"


class Ring(Protocol):
    """The Dict, as the sentinel uses it (infra/runtime/remote.py implements it on Modal; tests on disk)."""

    def read_ring(self, environment: str, keys: Sequence[str]) -> dict[str, object]: ...
    def write_ring(self, environment: str, key: str, value: dict) -> None: ...


def read_probes(ring: Ring, environment: str, recipe: str, start: float, end: float, slots: int,
                warn: Callable[[str], object] = print) -> list[Probe]:
    """The recipe's probes sent in [start, end), oldest first; a slot of another hour (the ring wrapped, or the hour
    was never written) holds nothing of this window."""
    hours = list(range(hour_of(start), hour_of(max(start, end - 1e-6)) + 1, SECONDS_PER_HOUR))[-slots:]  # touched
    keys = {slot_key(recipe, h, slots): h for h in hours}
    found = ring.read_ring(environment, list(keys))
    out: list[Probe] = []
    for key, hour in keys.items():
        if key not in found:
            continue
        try:
            slot = Slot.read(found[key], key)
        except NewerSchema as err:
            warn(str(err))
            continue
        if slot.hour == hour and slot.recipe == recipe:
            out += [p for p in slot.probes if start <= p.at < end]
    return sorted(out, key=lambda p: p.at)


def append(ring: Ring, environment: str, probe: Probe, slots: int) -> Slot:
    """Add one probe to its hour's slot, replacing what the ring held there from `slots` hours before."""
    hour = hour_of(probe.at)
    key = slot_key(probe.recipe, hour, slots)
    current = ring.read_ring(environment, [key]).get(key)
    slot = Slot(recipe=probe.recipe, hour=hour)
    if current is not None:
        held = Slot.read(current, key)  # NewerSchema: leave a newer writer's slot alone
        if held.hour == hour and held.recipe == probe.recipe:
            slot = held
    slot = slot.model_copy(update={"probes": (*slot.probes, probe)})
    ring.write_ring(environment, key, slot.to_value())
    return slot


# ---------------------------------------------------------------------------- one probe


class Delta(BaseModel):
    content: str | None = None
    reasoning_content: str | None = None


class Choice(BaseModel):
    delta: Delta | None = None


class Usage(BaseModel):
    completion_tokens: int | None = None


class Chunk(BaseModel):
    """One `data:` event of SGLang's OpenAI-compatible stream, what a probe reads of it (the rest is ignored)."""

    choices: list[Choice] = []
    usage: Usage | None = None
    error: object = None


def probe(url: str, model: str, *, recipe: str, max_tokens: int, headers: dict[str, str], wait_seconds: float,
          now: Callable[[], float] = time.time, clock: Callable[[], float] = time.perf_counter) -> Probe:
    """Stream one chat completion from `url` and time it: TTFT to the first content, TPOT over the rest."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                       "max_tokens": max_tokens,
                       "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "text/event-stream",
                                              **headers})
    sent_at, started = now(), clock()
    first = last = None
    chunks, usage = 0, None
    try:
        with urllib.request.urlopen(request, timeout=wait_seconds) as answer:
            for raw in answer:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                chunk = Chunk.model_validate_json(data)
                if chunk.error:
                    raise ValueError(f"the stream carried an error: {str(chunk.error)[:200]}")
                usage = chunk.usage or usage
                delta = chunk.choices[0].delta if chunk.choices else None
                if delta and (delta.content or delta.reasoning_content):
                    last = clock()
                    first = first if first is not None else last
                    chunks += 1
    except urllib.error.HTTPError as err:
        return Probe(at=sent_at, recipe=recipe, outcome="error", http_status=err.code,
                     error=f"HTTP {err.code} from {url}: {err.read()[:200].decode('utf-8', 'replace')}")
    except (OSError, ValueError) as err:  # refused, reset, timed out, unreadable
        return Probe(at=sent_at, recipe=recipe, outcome="error", error=f"{url}: {type(err).__name__}: {err}")
    if first is None:
        return Probe(at=sent_at, recipe=recipe, outcome="error", http_status=200, error=f"{url}: no tokens came back")
    tokens = (usage and usage.completion_tokens) or chunks
    tpot = (last - first) * 1000 / (tokens - 1) if tokens > 1 else None
    return Probe(at=sent_at, recipe=recipe, outcome="ok", ttft_ms=round((first - started) * 1000, 2),
                 tpot_ms=None if tpot is None else round(tpot, 3), output_tokens=tokens, http_status=200)


# ---------------------------------------------------------------------------- one run of the scheduled Function


class Watch(Ring, Protocol):
    """What a run needs from Modal: the ring, each server's replica count and URL (infra/runtime/remote.py)."""

    def replicas(self, environment: str, app_name: str) -> int | None: ...
    def endpoint_of(self, environment: str, app_name: str) -> str | None: ...


def run(spec: SentinelSpec, modal: Watch, headers: dict[str, str], *, now: Callable[[], float] = time.time,
        log: Callable[[str], object] = print, **probe_options) -> list[Probe]:
    """The scheduled Function's body: one probe (or a recorded skip) per served recipe, each into the ring."""
    done = []
    for target in spec.targets:
        replicas = modal.replicas(spec.modal_environment, target.app_name)
        url = modal.endpoint_of(spec.modal_environment, target.app_name) if replicas is not None else None
        if url is None:
            result = Probe(at=now(), recipe=target.recipe, outcome="skipped", replicas=replicas,
                           error=f"no deployed server in app {target.app_name}")
        elif replicas == 0 and not spec.settings.wake:
            result = Probe(at=now(), recipe=target.recipe, outcome="skipped", replicas=0,
                           error="no replica up and [sentinel] wake = false: not woken")
        else:
            sent = probe(url, target.model, recipe=target.recipe, max_tokens=spec.settings.max_tokens,
                         headers=headers if target.proxy_auth else {}, wait_seconds=spec.wait_seconds, now=now,
                         **probe_options)
            result = sent.model_copy(update={"replicas": replicas, "cold_start": replicas == 0})
        try:
            append(modal, spec.modal_environment, result, spec.settings.slots)
        except NewerSchema as err:
            log(f"{err}: this probe is not recorded")
        log(f"{spec.env}/{target.recipe}: {describe(result)}")
        done.append(result)
    return done


def describe(p: Probe) -> str:
    if p.outcome == "ok":
        tpot = "-" if p.tpot_ms is None else f"{p.tpot_ms:.1f} ms"
        return (f"ok, TTFT {p.ttft_ms:.0f} ms, TPOT {tpot}, {p.output_tokens} tokens"
                + (", met a cold start" if p.cold_start else ""))
    return f"{p.outcome}: {p.error}"
