"""An OpenAI-compatible streaming client for the deployed endpoint: what `smoke`, `try` and `bench` use.

It behaves like the reference documents' `probe`: it retries while no replica is up (HTTP 503, connection refused, a
client timeout before any byte arrived), until a deadline, and sends a sticky `Modal-Session-Id`. Proxy-auth
credentials are sent only where the caller says they belong (`proxy_auth_headers`). Unlike them it never retries
once a response has started streaming (the request may have done work), and it turns every other failure into an
`EndpointError` carrying the server's own message: HTTP errors with their body, a connection reset mid-stream, a
malformed SSE line, an error object inside the stream.

Every chunk is timestamped on arrival, so the same code measures time to first token and inter-token latency for
`bench`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

import aiohttp

from infra.runtime import reach
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError

# Proxy-auth credentials for endpoints deployed with proxy_auth = true (Modal proxy auth tokens).
PROXY_KEY_VARIABLE = "MODAL_KEY"
PROXY_SECRET_VARIABLE = "MODAL_SECRET"
RETRY_PAUSE = 1.0  # seconds between attempts while no replica is available


class EndpointError(RuntimeError):
    """A failed request, with a kind that says whether retrying could help."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        # unavailable | connect | timeout | certificate | http | reset | stalled | malformed | server_error
        self.kind = kind
        self.status = status

    @property
    def retryable(self) -> bool:
        """Safe to retry: nothing was streamed, and the failure says no replica was there to do work."""
        return self.kind in ("unavailable", "connect", "timeout")


@dataclass
class StreamResult:
    text: str = ""
    reasoning: str = ""
    started: float = 0.0  # perf_counter at send
    first_token_at: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    finished: float = 0.0
    usage_tokens: int | None = None  # completion_tokens from the server's usage report
    attempts: int = 1

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def total(self) -> float:
        return self.finished - self.started

    @property
    def output_tokens(self) -> int:
        """The server's count where it reports usage, else one per content chunk."""
        return self.usage_tokens if self.usage_tokens is not None else len(self.chunk_times)

    @property
    def inter_token(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]


def endpoint_headers(d: Deployment, url: str) -> dict[str, str]:
    """The one decision where proxy credentials go: a deployment's own endpoint gets them when the deployment
    requires proxy auth (`auth.proxy_auth`); any other URL only when the user names it (`bench --proxy-auth`)."""
    return proxy_auth_headers(url) if d.auth.proxy_auth else {}


def proxy_auth_headers(url: str, environ: dict[str, str] | None = None, *, required: bool = False) -> dict[str, str]:
    """Modal-Key / Modal-Secret from MODAL_KEY / MODAL_SECRET, for `url`. Never logged. `required` (the user asked for
    them: `bench --url U --proxy-auth`) refuses at once when they are not set, rather than send requests that the
    endpoint can only refuse.

    Call it only for a URL the credentials belong to: the environment's own deployed endpoint, or a URL the user
    explicitly allowed (`invoke bench --url U --proxy-auth`). Even then they never travel in clear text to another host:
    plain http is refused unless the host is this machine."""
    environ = os.environ if environ is None else environ
    key, secret = environ.get(PROXY_KEY_VARIABLE), environ.get(PROXY_SECRET_VARIABLE)
    if not (key and secret):
        if required:
            unset = " and ".join(n for n, v in ((PROXY_KEY_VARIABLE, key), (PROXY_SECRET_VARIABLE, secret)) if not v)
            raise ConfigError(f"--proxy-auth: {unset} not set; allowed: set MODAL_KEY and MODAL_SECRET to a Modal "
                              "proxy auth token (modal.com/settings, Proxy auth tokens), or leave out --proxy-auth")
        return {}
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" and not is_local_host(parsed.hostname):
        raise ConfigError(
            f"refusing to send Modal proxy credentials (MODAL_KEY/MODAL_SECRET) in clear text to {parsed.hostname}: "
            "allowed: an https:// URL, or a local address"
        )
    return {"Modal-Key": key, "Modal-Secret": secret}


def is_local_host(host: str | None) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def chat_payload(messages: list[dict], *, model: str | None = None, max_tokens: int | None = None, **extra) -> dict:
    payload: dict = {"messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    if model:
        payload["model"] = model
    if max_tokens:
        payload["max_tokens"] = max_tokens
    return payload | extra


async def stream_chat(
    session: aiohttp.ClientSession, url: str, payload: dict, *, timeout: float | None = None, on_text=None
) -> StreamResult:
    """One streamed chat completion; raises EndpointError on any failure."""
    result = StreamResult(started=time.perf_counter())
    received_any = False
    try:
        async with session.post(
            f"{url.rstrip('/')}/v1/chat/completions",
            json=payload,
            headers={"Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout or 30, 30)),
        ) as resp:
            if resp.status != 200:
                body = (await resp.text())[:500]
                kind = "unavailable" if resp.status == 503 else "http"
                raise EndpointError(kind, f"HTTP {resp.status} from {url}: {_server_message(body)}", resp.status)
            async for raw in resp.content:
                received_any = True
                line = raw.decode("utf-8", errors="replace").strip()
                if not line or line.startswith(":"):  # blank separators and SSE comments (keep-alives)
                    continue
                if not line.startswith("data:"):
                    continue  # other SSE fields (event:, id:, retry:) carry nothing for us
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    raise EndpointError("malformed", f"malformed SSE data line from {url}: {data[:200]!r}") from None
                if "error" in event or event.get("object") == "error":
                    raise EndpointError("server_error", f"server error in stream from {url}: {_server_message(event)}")
                if usage := event.get("usage"):
                    result.usage_tokens = usage.get("completion_tokens", result.usage_tokens)
                delta = ((event.get("choices") or [{}])[0] or {}).get("delta") or {}
                content, reasoning = delta.get("content") or "", delta.get("reasoning_content") or ""
                if content or reasoning:
                    now = time.perf_counter()
                    if result.first_token_at is None:
                        result.first_token_at = now
                    result.chunk_times.append(now)
                    result.text += content
                    result.reasoning += reasoning
                    if on_text:
                        on_text(content or reasoning)
    except TimeoutError:
        if received_any:
            raise EndpointError("stalled", f"stream from {url} stalled: not finished within {timeout:g} s") from None
        raise EndpointError("timeout", f"no answer from {url} within {timeout:g} s") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise EndpointError("certificate", f"cannot connect to {url}: {reach.cause(exc.certificate_error)}; "
                                           f"{reach.TLS_HINT}") from None
    except aiohttp.ClientConnectorError as exc:
        raise EndpointError("connect", f"cannot connect to {url}: {reach.cause(exc.os_error)}") from None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
        raise EndpointError("reset", f"connection to {url} broke mid-stream: {type(exc).__name__}: {exc}") from None
    except aiohttp.ClientError as exc:
        kind = "reset" if received_any else "connect"
        raise EndpointError(kind, f"request to {url} failed: {type(exc).__name__}: {exc}") from None
    result.finished = time.perf_counter()
    return result


def _server_message(body: object) -> str:
    """The human part of an OpenAI-style error body (`{"error": {"message": ...}}`, `{"message": ...}`) or the body."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            return body.strip() or "(empty body)"
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return json.dumps(body)[:300]


async def probe(url: str, payload: dict, *, deadline_seconds: float, request_timeout: float | None = None,
                headers: dict[str, str] | None = None, on_text=None, on_retry=None) -> StreamResult:
    """Stream one completion, retrying only safe failures (503, connect errors, timeouts) until the deadline.

    A deadline of 0 is one attempt of `request_timeout` seconds: nothing to wait out (an endpoint that does not scale
    to zero, a server named by URL), so a refused connection fails at once."""
    deadline = time.monotonic() + deadline_seconds
    async with aiohttp.ClientSession(headers={"Modal-Session-Id": f"smoke-{uuid.uuid4().hex[:12]}"} | (headers or {})
                                     ) as session:
        for attempts in itertools.count(1):
            # With no deadline, one attempt of `request_timeout`; else each attempt within what is left of it.
            remaining = deadline - time.monotonic()
            per_request = request_timeout if deadline_seconds <= 0 else max(min(request_timeout or remaining,
                                                                                remaining), 0.1)
            try:
                result = await stream_chat(session, url, payload, timeout=per_request, on_text=on_text)
                result.attempts = attempts
                return result
            except EndpointError as err:
                if not err.retryable or deadline_seconds <= 0:
                    raise
                if time.monotonic() + RETRY_PAUSE >= deadline:
                    raise EndpointError(
                        err.kind, f"no response from {url} within {deadline_seconds:g} s ({attempts} attempts; last: "
                                  f"{err})"
                    ) from None
                if on_retry:
                    on_retry(attempts, err)
                await asyncio.sleep(RETRY_PAUSE)
