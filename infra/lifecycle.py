"""The SGLang server's life inside its container: launch, wait until healthy, warm up, stop.

Modal routes traffic to a container once its `@modal.enter` returns, so that
method must not return before SGLang answers real requests, and must fail
loudly, with SGLang's own last words, when it never will. This module does that
with the standard library only: it never imports `modal`, so tests drive it
with real subprocesses and a real local HTTP server.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.recipes.base import Warmup

WARMUP_IMAGE = Path(__file__).parent / "assets" / "warmup.png"
STOP_GRACE_SECONDS = 10.0  # SIGTERM, then this long to exit cleanly, then SIGKILL
HEALTHY_IN_A_ROW = 3  # a server that flaps between healthy and not is not ready yet
CONFIRM_INTERVAL = 0.5  # seconds between the confirming health checks
HEALTH_REQUEST_TIMEOUT = 10.0  # SGLang's /health runs a one-token generation


class ServerFailed(RuntimeError):
    """SGLang exited, never became healthy, or failed its warm-up: the container must not go ready."""


class ServerProcess:
    """A server subprocess in its own session, with the tail of its output kept for error messages."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, tail_lines: int = 40):
        self.argv = list(argv)
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        # A session of its own: SGLang forks scheduler and detokenizer processes, and
        # stopping must reach all of them (the process group), not just the parent.
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name="sglang-output", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        """Forward output to our stdout (Modal's logs) and keep the last lines."""
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self._tail.append(line)
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
        """Block up to `timeout` seconds; return the exit code if the process ended meanwhile."""
        try:
            return self.process.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM the whole process group, wait up to `grace` seconds, then SIGKILL it. Reaps the parent."""
        pgid = self.process.pid  # leader of its own session
        if self.process.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            if self.wait_exit(grace) is None:
                _signal_group(pgid, signal.SIGKILL)
                self.process.wait()
        # Children may outlive a parent that exited on its own: the group goes too.
        _signal_group(pgid, signal.SIGKILL)
        self._pump.join(timeout=2.0)
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------- HTTP


def _request(url: str, *, payload: dict | None = None, timeout: float) -> tuple[int, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def is_healthy(base_url: str, timeout: float = HEALTH_REQUEST_TIMEOUT) -> bool:
    try:
        status, _ = _request(f"{base_url}/health", timeout=timeout)
    except (OSError, urllib.error.URLError):
        return False
    return status == 200


def wait_until_healthy(
    server: ServerProcess,
    base_url: str,
    *,
    timeout: float,
    poll_interval: float,
    healthy_in_a_row: int = HEALTHY_IN_A_ROW,
    confirm_interval: float = CONFIRM_INTERVAL,
) -> float:
    """Poll /health until it answers 200 `healthy_in_a_row` times running; return seconds waited.

    Fails at once (within one poll interval) when the process exits, and at
    `timeout` when it never becomes healthy, in both cases with its output tail.
    """
    started = time.monotonic()
    deadline = started + timeout
    streak = 0
    while True:
        if (code := server.exit_code()) is not None:
            raise ServerFailed(
                f"SGLang exited with code {code} during start-up after {time.monotonic() - started:.1f} s; "
                f"last lines of its output:\n{server.tail()}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerFailed(
                f"SGLang not healthy within {timeout:g} s (readiness_timeout); last lines of its output:\n"
                f"{server.tail()}"
            )
        if is_healthy(base_url, timeout=min(HEALTH_REQUEST_TIMEOUT, max(remaining, 0.1))):
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
    content: list[dict] | str
    if warmup.with_image:
        content = [
            {"type": "image_url", "image_url": {"url": warmup_image_data_url()}},
            {"type": "text", "text": warmup.prompt},
        ]
    else:
        content = warmup.prompt
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": warmup.max_tokens}


def warm_up(base_url: str, warmup: Warmup, model: str) -> list[float]:
    """Send the warm-up requests; any failure fails the container. Returns each request's seconds."""
    payload = warmup_payload(warmup, model)
    durations = []
    for i in range(1, warmup.count + 1):
        started = time.monotonic()
        try:
            status, body = _request(f"{base_url}/v1/chat/completions", payload=payload, timeout=warmup.timeout)
        except (OSError, urllib.error.URLError) as exc:
            raise ServerFailed(f"warm-up request {i}/{warmup.count} failed: {exc}") from None
        if status != 200:
            raise ServerFailed(
                f"warm-up request {i}/{warmup.count} failed: HTTP {status}: {body[:500].decode(errors='replace')}"
            )
        try:
            json.loads(body)["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ServerFailed(f"warm-up request {i}/{warmup.count} returned no completion: {body[:200]!r}") from None
        durations.append(time.monotonic() - started)
    return durations


# ---------------------------------------------------------------------------- GPU memory snapshots


def release_memory(base_url: str, timeout: float = 120.0) -> None:
    """Ask SGLang to hand back its GPU memory so Modal can snapshot the container."""
    _post_ok(f"{base_url}/release_memory_occupation", timeout)


def resume_memory(base_url: str, timeout: float = 120.0) -> None:
    """After a snapshot restore: SGLang takes its GPU memory (and weights) back."""
    _post_ok(f"{base_url}/resume_memory_occupation", timeout)


def _post_ok(url: str, timeout: float) -> None:
    try:
        status, body = _request(url, payload={}, timeout=timeout)
    except (OSError, urllib.error.URLError) as exc:
        raise ServerFailed(f"POST {url} failed: {exc}") from None
    if status != 200:
        raise ServerFailed(f"POST {url} failed: HTTP {status}: {body[:300].decode(errors='replace')}")


# ---------------------------------------------------------------------------- the whole start


@dataclass
class Readiness:
    timeout: float
    poll_interval: float
    warmup: Warmup
    model: str


def start_and_warm(argv: list[str], base_url: str, readiness: Readiness, env: dict[str, str] | None = None) -> ServerProcess:
    """Launch, wait until healthy, warm up. On any failure the process group is stopped before raising."""
    server = ServerProcess(argv, env=env)
    try:
        waited = wait_until_healthy(
            server, base_url, timeout=readiness.timeout, poll_interval=readiness.poll_interval
        )
        print(f"SGLang healthy after {waited:.1f} s; warming up", flush=True)
        durations = warm_up(base_url, readiness.warmup, readiness.model)
        print(f"warm-up done: {', '.join(f'{s:.2f} s' for s in durations)}", flush=True)
    except BaseException:
        server.stop()
        raise
    return server


def start_for_snapshot(argv: list[str], base_url: str, readiness: Readiness, env: dict[str, str] | None = None) -> ServerProcess:
    """Snapshot phase: boot and warm up as usual, then hand GPU memory back so the snapshot holds a ready server."""
    server = start_and_warm(argv, base_url, readiness, env=env)
    try:
        release_memory(base_url)
    except BaseException:
        server.stop()
        raise
    return server


def restore_from_snapshot(base_url: str, readiness: Readiness) -> None:
    """Restore phase: take the GPU memory back, then prove it with one short generation before going ready."""
    resume_memory(base_url)
    warm_up(base_url, dataclasses.replace(readiness.warmup, count=1), readiness.model)
