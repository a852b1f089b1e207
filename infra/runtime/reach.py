"""A first answer from a network address within a deadline, and its failure in words.

A client library's own timeouts bound the TCP connect at best: a server that accepts the connection and never
answers kept `invoke status` silent for minutes, and an untrusted TLS certificate surfaced only as "Could not connect"
after the SDK's retries. `first_answer` walks the steps within one deadline, on a daemon thread so that even a name
lookup (no timeout of its own) cannot hold the caller past it, and says which step failed and why.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable

# What a TLS failure of a proxy that intercepts TLS says to do, for clients that read the usual variables
# (requests reads REQUESTS_CA_BUNDLE, Python's ssl and aiohttp SSL_CERT_FILE).
TLS_HINT = ("a proxy that intercepts TLS? point SSL_CERT_FILE and REQUESTS_CA_BUNDLE at a CA bundle that holds "
            "its certificate")


class NoAnswer(OSError):
    """No first answer from `address` within the deadline, or a refusal on the way; `reason` says which, in words."""

    def __init__(self, address: str, reason: str, *, tls: bool = False):
        super().__init__(f"{address}: {reason}")
        self.address, self.reason, self.tls = address, reason, tls


def cause(exc: BaseException, timeout: float | None = None) -> str:
    """One failure to reach a server, in words (the exception's own text kept where it adds something)."""
    if isinstance(exc, socket.gaierror):
        return f"DNS name not found ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that port"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout is not None else "no answer in time"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset before any answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return f"{type(exc).__name__}: {exc}"


def root_cause(exc: BaseException) -> BaseException:
    """The socket-level failure under a client library's wrappers (requests' ConnectionError around urllib3's
    MaxRetryError around the OSError); a read timeout as TimeoutError; else `exc` itself."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (socket.gaierror, ConnectionRefusedError, ssl.SSLError, ConnectionResetError)):
            return current
        if isinstance(current, TimeoutError) or "ReadTimeout" in type(current).__name__:
            return TimeoutError(str(current))
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return exc


# What a deadline that ran out during each step means.
_WAITED = {
    "name": "the name lookup of {host} got no answer within {t:g} s (DNS)",
    "connect": "no TCP connection within {t:g} s (packets dropped on the way?)",
    "tls": "accepted the connection but no TLS handshake within {t:g} s",
    "answer": "accepted the connection but no answer within {t:g} s",
}


def first_answer(url: str, timeout: float, *, trust: ssl.SSLContext | None = None,
                 answer: Callable[[float], None] | None = None, direct: bool = True) -> None:
    """Within `timeout` seconds in all: look up the host, connect, shake hands over TLS for https and call
    `answer(seconds_left)`, the caller's own first request. `direct=False` (a proxy in the way) leaves the first three
    to `answer`. Raises NoAnswer naming the step and the cause; nothing else."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise NoAnswer(url, "not a valid port in the address") from None
    deadline = time.monotonic() + timeout
    step = ["name"]
    outcome: list[BaseException | None] = []  # what `walk` ended with, once it ended

    def left() -> float:
        return max(deadline - time.monotonic(), 0.001)

    def walk() -> None:
        try:
            if direct:
                socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                step[0] = "connect"
                with socket.create_connection((host, port), timeout=left()) as sock:
                    if tls:
                        step[0] = "tls"
                        sock.settimeout(left())
                        context = trust or ssl.create_default_context()
                        context.wrap_socket(sock, server_hostname=host).close()
            if answer is not None:
                step[0] = "answer"
                answer(left())
            outcome.append(None)
        except Exception as exc:  # handed to the caller's thread, which explains it
            outcome.append(exc)

    worker = threading.Thread(target=walk, name=f"first-answer {host}:{port}", daemon=True)
    worker.start()
    worker.join(timeout)
    error = outcome[0] if outcome else TimeoutError()
    if error is None:
        return
    if isinstance(error, TimeoutError):  # the deadline ran out, here or in the step itself
        raise NoAnswer(url, _WAITED[step[0]].format(host=host, t=timeout))
    raise NoAnswer(url, cause(error, timeout), tls=isinstance(error, ssl.SSLCertVerificationError))
