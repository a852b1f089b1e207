"""A real, local OpenAI-compatible server with SGLang's extra endpoints and controllable misbehaviour.

It stands in for SGLang (and for Modal's proxy in front of it) in tests and
benchmarks: real sockets, real SSE streaming, real timing. Behaviour comes from
command-line options or, when launched as the `sglang.launch_server` stand-in,
from the FAKE_SGLANG environment variable (JSON of the same options), because
the lifecycle passes it SGLang's real arguments.

Every request is appended to --record (JSON lines), so tests assert on what the
client actually sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Behaviour:
    port: int = 0
    host: str = "127.0.0.1"
    port_file: str | None = None
    record: str | None = None
    # start-up
    listen_after: float = 0.0  # seconds before the socket opens at all
    healthy_after: float = 0.0  # seconds (after listening) of /health -> 503
    exit_after: float | None = None  # exit during start-up after this many seconds...
    exit_code: int = 3  # ...with this code
    never_healthy: bool = False
    flap: int = 0  # the first N health checks alternate 200 / 503
    health_delay: float = 0.0  # seconds each /health takes to answer (SGLang's runs a generation: >= 1 s)
    ignore_sigterm: bool = False
    spawn_child: str | None = None  # file to write a spawned grandchild's pid to
    # SGLang's shutdown (srt/managers/tokenizer_manager.py): with `drain_poll` set, SIGTERM
    # to this process is noticed at the watchdog's next tick, then it waits, tick by tick,
    # until no request is in flight, kills its children and SIGKILLs itself; /health says
    # 503 meanwhile. With `scheduler`, a child process stands for SGLang's scheduler: if it
    # dies (a SIGTERM to the whole group reaches it too), this process kills itself at once,
    # cutting every stream, as SGLang does when a child fails.
    drain_poll: float | None = None
    scheduler: bool = False
    scheduler_pid_file: str | None = None  # file to write the scheduler's pid to
    ready_line: bool = True  # print SGLang's "fired up and ready to roll" line once healthy
    # JIT: the first chat request takes this much longer (EAGLE-3's first speculative decode
    # compiles), then writes `first_chat_writes`, a kernel file, so the next start can skip it.
    first_chat_delay: float = 0.0
    first_chat_writes: str | None = None
    speculative: bool = False  # /generate reports meta_info.spec_verify_ct, as SGLang does with speculative decoding
    # chat
    ttft: float = 0.0  # seconds before the first token
    itl: float = 0.0  # seconds between tokens
    # --itl-floor: at least `itl` between chunks as sent, also after the server was starved of CPU (on the absolute
    # schedule below a late server catches up in a burst, and a loaded machine reads as a faster one)
    itl_floor: bool = False
    tokens: int = 8
    usage: bool = True  # report usage in the final chunk (--no-usage: do not)
    chunk_tokens: int = 1  # tokens per SSE chunk (speculative decoding sends several at once)
    reasoning: bool = False  # stream reasoning_content instead of content
    unavailable_first: int = 0  # the first N chat requests get 503
    unavailable_every: int = 0  # every Nth chat request gets 503 (0: never)
    chat_status: int = 200  # a non-200 answers every chat request with an error body
    stall_at: int | None = None  # pause after this many tokens...
    stall_seconds: float = 0.0  # ...for this long
    reset_at: int | None = None  # drop the connection after this many tokens
    malformed_at: int | None = None  # send a malformed SSE line after this many tokens
    error_at: int | None = None  # send an error JSON event after this many tokens
    misbehave_every: int = 0  # stall/reset/malformed/error only on every Nth chat request (0: on all)
    stamp: bool = False  # each chunk's text ends with |arrived|sent (time.monotonic, the clock perf_counter reads)
    memory_status: int = 200  # answer for /release_memory_occupation and /resume_memory_occupation
    log_lines: list[str] = field(default_factory=list)  # printed at start, for log-tail tests


def hold_gpu_memory(mib: int) -> None:
    """Tell the dry run's stand-in nvidia-smi how much GPU memory this process holds ($FAKE_GPU_DIR/<pid>)."""
    if folder := os.environ.get("FAKE_GPU_DIR"):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, str(os.getpid())), "w") as f:
            f.write(str(mib))


class FakeServer:
    def __init__(self, b: Behaviour):
        self.b = b
        self.started = time.monotonic()
        self.health_checks = 0
        self.chat_requests = 0
        self.released = False
        self.in_flight = 0
        self.draining = False

    def record(self, request: web.Request, body: object) -> None:
        if not self.b.record:
            return
        entry = {
            "t": time.time(),
            "method": request.method,
            "path": request.path,
            "headers": {k: v for k, v in request.headers.items()
                        if k.lower().startswith(("modal-", "authorization", "accept"))},
            "body": body,
        }
        with open(self.b.record, "a") as f:
            f.write(json.dumps(entry) + "\n")

    async def health(self, request: web.Request) -> web.Response:
        self.record(request, None)
        self.health_checks += 1
        if self.b.health_delay:
            await asyncio.sleep(self.b.health_delay)
        if self.b.never_healthy or self.released or self.draining:
            return web.Response(status=503)
        if time.monotonic() - self.listening_at < self.b.healthy_after:
            return web.Response(status=503)
        if self.health_checks <= self.b.flap and self.health_checks % 2 == 0:
            return web.Response(status=503)
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        self.record(request, None)
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def memory(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.record(request, body)
        if self.b.memory_status != 200:
            return web.json_response({"error": "memory saver disabled"}, status=self.b.memory_status)
        self.released = request.path.startswith("/release")
        hold_gpu_memory(500 if self.released else 5000)
        return web.json_response(None)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        body = await request.json()
        self.record(request, body)
        self.chat_requests += 1
        n = self.chat_requests
        if n <= self.b.unavailable_first or (self.b.unavailable_every and n % self.b.unavailable_every == 0):
            return web.Response(status=503, text="no replicas available")
        if self.b.chat_status != 200:
            return web.json_response(
                {"object": "error", "message": "model overloaded: try again", "code": self.b.chat_status},
                status=self.b.chat_status,
            )
        if n == 1 and self.b.first_chat_delay:
            await asyncio.sleep(self.b.first_chat_delay)
            if self.b.first_chat_writes:
                os.makedirs(os.path.dirname(self.b.first_chat_writes), exist_ok=True)
                with open(self.b.first_chat_writes, "wb") as f:
                    f.write(os.urandom(1024))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.b.tokens)
        count = min(self.b.tokens, max_tokens)
        misbehave = not self.b.misbehave_every or n % self.b.misbehave_every == 0
        per_chunk = max(self.b.chunk_tokens, 1)
        chunks = -(-count // per_chunk)
        model = body.get("model") or "fake-model"
        if not body.get("stream"):
            await asyncio.sleep(self.b.ttft + self.b.itl * max(count - 1, 0))
            text = " ".join(f"tok{i}" for i in range(count))
            return web.json_response(
                {
                    "id": f"chatcmpl-{n}",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        # Tokens go out on an absolute schedule (arrival + ttft + i * itl), so the timer's
        # oversleep (up to ~1 ms per sleep) does not accumulate: what a client measures
        # should be the configured timing, which is what `bench`'s accuracy tests rely on.
        due = arrived + self.b.ttft
        key = "reasoning_content" if self.b.reasoning else "content"
        for i in range(chunks):
            if i:
                due = max(due + self.b.itl, loop.time() + self.b.itl) if self.b.itl_floor else due + self.b.itl
            if misbehave and self.b.stall_at is not None and i == self.b.stall_at:
                due += self.b.stall_seconds
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            if misbehave and self.b.reset_at is not None and i == self.b.reset_at:
                request.transport.close()
                return resp
            if misbehave and self.b.malformed_at is not None and i == self.b.malformed_at:
                await resp.write(b"data: {not json\n\n")
            if misbehave and self.b.error_at is not None and i == self.b.error_at:
                err = {"object": "error", "message": "CUDA out of memory", "type": "InternalServerError", "code": 500}
                await resp.write(f"data: {json.dumps({'error': err})}\n\n".encode())
                await resp.write(b"data: [DONE]\n\n")
                return resp
            text = "".join(f"tok{j} " for j in range(i * per_chunk, min((i + 1) * per_chunk, count)))
            # when the request reached this handler and when this chunk left: for client-accuracy benchmarks
            if self.b.stamp:
                text = f"{text.rstrip()}|{arrived:.6f}|{loop.time():.6f} "
            chunk = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {key: text}, "finish_reason": None}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        final = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "model": model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
        if self.b.usage:
            final["usage"] = {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count}
        await resp.write(f"data: {json.dumps(final)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def generate(self, request: web.Request) -> web.Response:
        """SGLang's native /generate, non-streaming: text and meta_info (spec_verify_ct when speculative, as
        SGLang's)."""
        body = await request.json()
        self.record(request, body)
        count = int((body.get("sampling_params") or {}).get("max_new_tokens") or self.b.tokens)
        meta = {"prompt_tokens": 5, "completion_tokens": count}
        if self.b.speculative:
            meta["spec_verify_ct"] = count
        return web.json_response({"text": " ".join(f"tok{i}" for i in range(count)), "meta_info": meta})

    async def flush_cache(self, request: web.Request) -> web.Response:
        """SGLang's /flush_cache: the radix (prefix) cache emptied, refused while requests are in flight."""
        self.record(request, None)
        if self.in_flight:
            return web.Response(status=400, text="Cache not flushed because there are pending requests.")
        return web.Response(text="Cache flushed.\nPlease check backend logs for more details.")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/flush_cache", self.flush_cache)
        app.router.add_post("/generate", self.generate)
        app.router.add_get("/health", self.health)
        app.router.add_get("/health_generate", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_route("*", "/release_memory_occupation", self.memory)
        app.router.add_route("*", "/resume_memory_occupation", self.memory)
        return app


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def _drain_watchdog(server: FakeServer, children: list[subprocess.Popen]) -> None:
    """SGLang's sigterm_watchdog: a tick every `drain_poll` seconds, first for the signal, then for the drain."""
    poll = server.b.drain_poll
    while not server.draining:
        await asyncio.sleep(poll)
    while True:
        print(f"Gracefully exiting... Remaining number of requests {server.in_flight}.", flush=True)
        if server.in_flight == 0:
            break
        await asyncio.sleep(poll)
    for child in children:
        child.kill()
    _kill_self()


def _watch_scheduler(server: FakeServer, scheduler: subprocess.Popen) -> None:
    scheduler.wait()
    print(f"Scheduler exited with code {scheduler.returncode}: a child failed; killing the server", flush=True)
    _kill_self()


async def serve(b: Behaviour) -> None:
    for line in b.log_lines:
        print(line, flush=True)
    children: list[subprocess.Popen] = []
    if b.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        children.append(child)
        with open(b.spawn_child, "w") as f:
            f.write(str(child.pid))
    server = FakeServer(b)
    loop = asyncio.get_running_loop()
    if b.scheduler:
        scheduler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        children.append(scheduler)
        if b.scheduler_pid_file:
            with open(b.scheduler_pid_file, "w") as f:
                f.write(str(scheduler.pid))
        threading.Thread(target=_watch_scheduler, args=(server, scheduler), daemon=True).start()
    if b.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    elif b.drain_poll is not None:
        def on_sigterm() -> None:
            print("SIGTERM received. Draining requests and shutting down...", flush=True)
            server.draining = True

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        loop.create_task(_drain_watchdog(server, children))
    if b.exit_after is not None:
        loop.call_later(b.exit_after, lambda: (print(f"fatal: simulated crash, exiting {b.exit_code}", flush=True),
                                               os._exit(b.exit_code)))
    await asyncio.sleep(b.listen_after)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, b.host, b.port)
    await site.start()
    server.listening_at = time.monotonic()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    if b.port_file:
        tmp = b.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, b.port_file)
    if b.ready_line and not b.never_healthy:
        loop.call_later(b.healthy_after, lambda: print("The server is fired up and ready to roll!", flush=True))
    await asyncio.Event().wait()


def parse(argv: list[str]) -> Behaviour:
    p = argparse.ArgumentParser()
    defaults = Behaviour()
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true", default=value)
            if value:  # options that are on by default can be turned off: --no-usage
                p.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false")
        elif name == "log_lines":
            p.add_argument(flag, action="append", default=[])
        elif value is None:
            kind = str if name in ("port_file", "record", "spawn_child", "scheduler_pid_file",
                                   "first_chat_writes") else float
            kind = int if name in ("stall_at", "reset_at", "malformed_at", "error_at") else kind
            p.add_argument(flag, type=kind, default=None)
        else:
            p.add_argument(flag, type=type(value), default=value)
    return Behaviour(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
