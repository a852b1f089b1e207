"""The SGLang server's life inside its container: launch, wait until healthy, warm up, stop.

Modal routes traffic once `@modal.enter` returns, so that must wait until SGLang answers real requests, and fail
loudly with SGLang's last words when it never will. No `modal` import: tests drive real subprocesses and a local HTTP
server. HTTP goes through one `requests` session (SGLang's image ships requests), as the reference examples' does.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from pydantic import Field

from infra.runtime import reach
from infra.runtime.model import Stored
from infra.runtime.recipes.base import Warmup

WARMUP_IMAGE = Path(__file__).parent / "assets" / "warmup.png"

# Stopping. SGLang drains on SIGTERM to its parent alone: a watchdog checks every SGLANG_DRAIN_POLL_SECONDS whether
# requests remain and exits (killing its children) once none do (srt/managers/tokenizer_manager.py: sigterm_watchdog,
# 0.5.6 to 0.5.11). A request that needs T more seconds is out after about 5 * ceil(T / 5) + 5 seconds.
SGLANG_DRAIN_POLL_SECONDS = 5.0
KILL_MARGIN_SECONDS = 2.0  # kept after the drain bound: SIGKILL the group, reap, GPU memory back
STOP_GRACE_SECONDS = 20.0  # the default drain bound: enough for in-flight requests that finish within ~10 s
# Modal gives @modal.exit 30 s before it kills the container (guide: "Container lifecycle hooks"); on Servers
# `exit_grace_period` is what in-flight requests get after routing stops. Our drain must fit both (`drain_budget`).
MODAL_EXIT_HANDLER_SECONDS = 30.0

# Readiness. SGLang's /health answers 503 at once while starting and, once up, runs a one-token generation that
# takes at least 1 s and gives up after its own 20 s (SGLANG_HEALTH_CHECK_TIMEOUT): our client must wait longer.
HEALTH_REQUEST_TIMEOUT = 25.0
HEALTHY_IN_A_ROW = 3  # after a warm-up request was refused (503): a flapping server must prove itself
CONFIRM_INTERVAL = 0.5  # seconds between those confirming health checks
MAX_FLAPS = 3  # warm-up rounds refused before the container gives up
ALIVE_CHECK_INTERVAL = 0.05  # how often a blocked request looks whether SGLang is still alive


class Timings(Stored):
    """What `start_and_warm` measured, in seconds from launch (`server_timings` of start records and compile markers);
    a field not reached is absent from the JSON, and so is `flaps` where there were none."""

    healthy_s: float | None = Field(default=None, exclude_if=lambda v: v is None)
    warmup_s: list[float] = Field(default_factory=list)
    ready_s: float | None = Field(default=None, exclude_if=lambda v: v is None)
    healthy_to_ready_s: float | None = Field(default=None, exclude_if=lambda v: v is None)
    flaps: int = Field(default=0, exclude_if=lambda v: v == 0)


class ServerFailed(RuntimeError):
    """SGLang exited, never became healthy, or failed its warm-up: the container must not go ready."""


class ServerUnavailable(ServerFailed):
    """A warm-up request was refused (HTTP 503, connection refused): SGLang is not serving after all."""


def drain_budget(exit_grace_period: float) -> float:
    """Seconds `stop` may wait for SGLang to drain when Modal grants `exit_grace_period`: that, less the margin for
    killing the group, at most what Modal gives an exit handler; 0 below two drain polls (nothing could drain)."""
    budget = min(float(exit_grace_period), MODAL_EXIT_HANDLER_SECONDS) - KILL_MARGIN_SECONDS
    return budget if budget >= 2 * SGLANG_DRAIN_POLL_SECONDS else 0.0


class ServerProcess:
    """A server subprocess in its own session, with the tail of its output kept for error messages."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, tail_lines: int = 40,
                 on_line: Callable[[float, str], None] | None = None):
        self.argv = list(argv)
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._on_line = on_line
        self.drained: bool | None = None  # after stop(): did SGLang exit by itself within the drain bound?
        self.timings = Timings()  # filled by start_and_warm
        self.started_at = time.monotonic()
        # A session of its own: stopping must reach SGLang's forked scheduler and detokenizer (the process group).
        self.process = subprocess.Popen(self.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._pump = threading.Thread(target=self._copy_output, name="sglang-output", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:  # to our stdout (Modal's logs), keeping the last lines
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self._tail.append(line)
            if self._on_line:
                self._on_line(time.monotonic(), line)
            print(line, file=sys.stdout, flush=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def tail(self) -> str:
        self._pump.join(timeout=1.0)  # let the last lines of a dead process arrive
        return "\n".join(self._tail) or "(no output)"

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, if the process ends within `timeout` seconds."""
        try:
            return self.process.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """Let in-flight requests finish within `grace` seconds, then leave nothing running. SIGTERM goes to SGLang's
        parent alone (to the group it would kill the scheduler and cut every stream); then the group gets SIGKILL and
        we wait until no member is left (a surviving child would hold GPU memory)."""
        pgid = self.process.pid  # leader of its own session
        if self.process.poll() is None:
            _signal(self.process.pid, signal.SIGTERM)
            self.drained = self.wait_exit(grace) is not None
            if not self.drained:
                _signal(pgid, signal.SIGKILL, os.killpg)
                self.process.wait()
        # Children may outlive a parent that exited on its own: the group goes too.
        _signal(pgid, signal.SIGKILL, os.killpg)
        _wait_group_gone(pgid, timeout=10.0)
        self._pump.join(timeout=2.0)
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode


def _signal(pid: int, sig: signal.Signals, send: Callable[[int, int], None] = os.kill) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already, or never ours
        send(pid, sig)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _wait_group_gone(pgid: int, timeout: float) -> None:
    if not Path("/proc").is_dir():  # not Linux: SIGKILL was sent, nothing more to watch
        return
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


# ---------------------------------------------------------------------------- HTTP


HTTP = requests.Session()  # one pool for every request to our own SGLang, shared by the warm-up burst's threads


def _request(url: str, *, payload: dict | None = None, timeout: float) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a POST of `payload` as JSON; raises requests' errors when nothing answers."""
    response = HTTP.get(url, timeout=timeout) if payload is None else HTTP.post(url, json=payload, timeout=timeout)
    return response.status_code, response.content


def is_healthy(base_url: str, timeout: float = HEALTH_REQUEST_TIMEOUT) -> bool:
    try:
        status, _ = _request(f"{base_url}/health", timeout=timeout)
    except (OSError, requests.RequestException):
        return False
    return status == 200


def _exited(server: ServerProcess, phase: str) -> ServerFailed:
    return ServerFailed(f"SGLang exited with code {server.exit_code()} during {phase} after "
                        f"{time.monotonic() - server.started_at:.1f} s; last lines of its output:\n{server.tail()}")


def _while_alive(server: ServerProcess | None, phase: str, call: Callable[[], object]) -> object:
    """Run a blocking request in a thread while watching SGLang: if it dies meanwhile we say so within
    ALIVE_CHECK_INTERVAL, instead of waiting out the request's own timeout."""
    if server is None:
        return call()
    value: list[object] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            value.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            error.append(exc)

    worker = threading.Thread(target=run, name=f"sglang-{phase}", daemon=True)
    worker.start()
    while worker.is_alive():
        if server.exit_code() is not None:
            raise _exited(server, phase)
        worker.join(ALIVE_CHECK_INTERVAL)
    if error:
        raise error[0]
    return value[0] if value else None


def wait_until_healthy(server: ServerProcess, base_url: str, *, timeout: float, poll_interval: float,
                       healthy_in_a_row: int = 1, confirm_interval: float = CONFIRM_INTERVAL) -> float:
    """Poll /health until it answers 200 `healthy_in_a_row` times running; return seconds waited. Fails, with the
    output's tail, within ALIVE_CHECK_INTERVAL of the process exiting (mid-request too) or at `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    streak = 0
    while True:
        if server.exit_code() is not None:
            raise _exited(server, "start-up")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerFailed(f"SGLang not healthy within {timeout:g} s (readiness_timeout); last lines of its "
                               f"output:\n{server.tail()}")
        per_request = min(HEALTH_REQUEST_TIMEOUT, max(remaining, 0.1))
        if _while_alive(server, "start-up", lambda: is_healthy(base_url, timeout=per_request)):
            streak += 1
            if streak >= healthy_in_a_row:
                return time.monotonic() - started
            pause = confirm_interval
        else:
            streak = 0
            pause = poll_interval
        # Sleeping on the process itself wakes us the moment it exits.
        server.wait_exit(min(pause, max(deadline - time.monotonic(), 0)))


# ---------------------------------------------------------------------------- warm-up


def warmup_image_data_url() -> str:
    """The packaged warm-up image, inline, so a cold start never depends on an outside CDN."""
    return "data:image/png;base64," + base64.b64encode(WARMUP_IMAGE.read_bytes()).decode()


def warmup_payload(warmup: Warmup, model: str) -> dict:
    """One warm-up request. `ignore_eos` (SGLang's) makes it generate all of `max_tokens`, so the decode loop, and
    speculative decoding's draft and verify kernels, run for many steps even where the model would stop early."""
    content = ([{"type": "image_url", "image_url": {"url": warmup_image_data_url()}},
                {"type": "text", "text": warmup.prompt}] if warmup.with_image else warmup.prompt)
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": warmup.max_tokens,
            "ignore_eos": True}


def warm_up(base_url: str, warmup: Warmup, model: str, *, first_timeout: float | None = None,
            server: ServerProcess | None = None) -> list[float]:
    """The warm-up requests, one after another (each one's seconds); any failure fails the container. The first may
    compile (with EAGLE-3 the first speculative decode, ~100 s on an H100), so it gets `first_timeout`, what is left of
    the start-up budget. A refusal (503, connection refused) raises ServerUnavailable, which the caller may wait out."""
    payload = warmup_payload(warmup, model)
    durations = []
    for i in range(1, warmup.count + 1):
        timeout = max(first_timeout or 0, warmup.timeout) if i == 1 else warmup.timeout
        started = time.monotonic()
        try:
            status, body = _while_alive(server, "warm-up", lambda: _request(
                f"{base_url}/v1/chat/completions", payload=payload, timeout=timeout))
        except (OSError, requests.RequestException) as exc:
            if isinstance(reach.root_cause(exc), ConnectionRefusedError):  # the port closed: urllib3 nests it
                raise ServerUnavailable(f"warm-up request {i}/{warmup.count} refused: connection refused") from None
            raise ServerFailed(f"warm-up request {i}/{warmup.count} failed after {timeout:g} s allowed: "
                               f"{exc}") from None
        if status != 200:
            kind = ServerUnavailable if status == 503 else ServerFailed
            raise kind(f"warm-up request {i}/{warmup.count} failed: HTTP {status}: "
                       f"{body[:500].decode(errors='replace')}")
        try:
            json.loads(body)["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ServerFailed(f"warm-up request {i}/{warmup.count} returned no completion: {body[:200]!r}") from None
        durations.append(time.monotonic() - started)
    return durations


# ---------------------------------------------------------------------------- GPU memory snapshots


def release_memory(base_url: str, timeout: float = 120.0) -> None:
    """SGLang hands back its GPU memory for Modal's snapshot (then never call /health: it runs a generation)."""
    _post_ok(f"{base_url}/release_memory_occupation", timeout)


def resume_memory(base_url: str, timeout: float = 120.0) -> None:
    """After a snapshot restore: SGLang takes its GPU memory (and weights) back."""
    _post_ok(f"{base_url}/resume_memory_occupation", timeout)


def _post_ok(url: str, timeout: float) -> None:
    try:
        status, body = _request(url, payload={}, timeout=timeout)
    except (OSError, requests.RequestException) as exc:
        raise ServerFailed(f"POST {url} failed: {exc}") from None
    if status != 200:
        raise ServerFailed(f"POST {url} failed: HTTP {status}: {body[:300].decode(errors='replace')}")


# ---------------------------------------------------------------------------- the whole start


@dataclass
class Readiness:
    timeout: float  # seconds SGLang may take to answer /health (readiness_timeout)
    poll_interval: float  # seconds between health checks while it starts
    warmup: Warmup
    model: str
    # Seconds from launch to ready (Modal's startup_timeout less what the container spent before launching); the
    # first warm-up request may use what is left. None: the readiness timeout plus every warm-up request's timeout.
    startup_budget: float | None = None

    @property
    def budget(self) -> float:
        fallback = self.timeout + self.warmup.count * self.warmup.timeout
        return fallback if self.startup_budget is None else self.startup_budget


def start_and_warm(argv: list[str], base_url: str, readiness: Readiness, env: dict[str, str] | None = None,
                   on_line: Callable[[float, str], None] | None = None) -> ServerProcess:
    """Launch, wait until healthy, warm up (docs/container.md); on any failure the process group is stopped first.
    Real generations confirm health more strongly than more health checks, at no extra cost; a server that flaps must
    answer healthy HEALTHY_IN_A_ROW times running and serve the whole warm-up again, at most MAX_FLAPS times."""
    server = ServerProcess(argv, env=env, on_line=on_line)
    deadline = server.started_at + readiness.budget
    try:
        while True:
            left, flaps = deadline - time.monotonic(), server.timings.flaps  # after a flap: no readiness bound
            wait_until_healthy(server, base_url, timeout=max(min(readiness.timeout, left) if not flaps else left, 0.1),
                               poll_interval=readiness.poll_interval, healthy_in_a_row=HEALTHY_IN_A_ROW if flaps else 1)
            healthy_at = time.monotonic()
            if server.timings.healthy_s is None:
                server.timings.healthy_s = round(healthy_at - server.started_at, 3)
            print(f"SGLang healthy after {healthy_at - server.started_at:.1f} s; warming up", flush=True)
            try:
                durations = warm_up(base_url, readiness.warmup, readiness.model,
                                    first_timeout=deadline - time.monotonic(), server=server)
                break
            except ServerUnavailable as err:
                server.timings.flaps += 1
                if server.timings.flaps >= MAX_FLAPS:
                    raise ServerFailed(f"SGLang keeps refusing its warm-up after answering healthy "
                                       f"({server.timings.flaps} times): {err}") from None
                print(f"SGLang answered healthy but refused its warm-up ({err}); waiting for {HEALTHY_IN_A_ROW} "
                      "healthy answers in a row", flush=True)
        ready_at = time.monotonic()
        server.timings.warmup_s = [round(x, 3) for x in durations]
        server.timings.ready_s = round(ready_at - server.started_at, 3)
        server.timings.healthy_to_ready_s = round(ready_at - healthy_at, 3)
        print(f"warm-up done: {', '.join(f'{s:.2f} s' for s in durations)}; ready "
              f"{ready_at - server.started_at:.1f} s after launch", flush=True)
    except BaseException:
        server.stop(grace=0)
        raise
    return server


def start_for_snapshot(argv: list[str], base_url: str, readiness: Readiness, env: dict[str, str] | None = None,
                       on_line: Callable[[float, str], None] | None = None) -> ServerProcess:
    """Snapshot phase: boot and warm up as usual, then hand GPU memory back so the snapshot holds a ready server."""
    server = start_and_warm(argv, base_url, readiness, env=env, on_line=on_line)
    try:
        release_memory(base_url)
    except BaseException:
        server.stop(grace=0)
        raise
    return server


def restore_from_snapshot(base_url: str, readiness: Readiness) -> None:
    """Restore phase: take the GPU memory back, then prove it with one short generation before going ready."""
    resume_memory(base_url)
    warm_up(base_url, readiness.warmup.model_copy(update={"count": 1}), readiness.model)
