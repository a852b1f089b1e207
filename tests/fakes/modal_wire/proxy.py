"""Modal's web proxy in front of Servers (`/srv/<label>/...`), as its own process: what servers.py decides, this
forwards.

Run by `ModalWire.start()` as `python proxy.py --control URL`; it prints `LISTENING <port>` and serves until its stdin
closes. For each request it asks
the wire's control plane (`POST <control>/_proxy/route`: the label, the path, the proxy-auth pair carried) what
answers at that URL: a refusal (404, 401, 500) to return as is, or the upstream to forward to. It then streams the
upstream's answer through, each chunk as it arrives, and reports the status for the replica's access log
(`POST <control>/_proxy/access`) before the response ends.

Why a process: the control plane runs as a thread inside the test's interpreter, beside the client a test measures
(the promotion gate's). A proxy there shares that interpreter's lock; under CPU load it passed a stream on in bursts
(a 2 ms-a-token server read as 0.76 ms a token). Here the stream never waits on the test's interpreter, as a real
proxy's would not; only the route look-up before it and the access line beside it do.

Only aiohttp: no import from this repository.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
              "modal-key", "modal-secret"}


def make_app(control: str) -> web.Application:
    sessions: dict[str, aiohttp.ClientSession] = {}

    async def session() -> aiohttp.ClientSession:
        if "s" not in sessions:
            sessions["s"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return sessions["s"]

    async def proxy(request: web.Request) -> web.StreamResponse:
        label, path = request.match_info["label"], "/" + request.match_info["tail"]
        http = await session()
        async with http.post(f"{control}/_proxy/route", json={
                "label": label, "path": path, "key": request.headers.get("Modal-Key"),
                "secret": request.headers.get("Modal-Secret")}) as answer:
            route = await answer.json()
        if "upstream" not in route:
            return web.Response(status=route["status"], text=route["text"])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        target = f"{route['upstream'].rstrip('/')}/{request.match_info['tail']}"
        try:
            async with http.request(request.method, target, params=request.query, headers=headers,
                                    data=body) as upstream:
                response = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
                await response.prepare(request)
                logged = asyncio.ensure_future(http.post(f"{control}/_proxy/access", json={
                    "label": label, "method": request.method, "path": path, "status": upstream.status}))
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                (await logged).release()
                await response.write_eof()
                return response
        except aiohttp.ClientConnectionError:
            return web.Response(status=503, text="modal-http: no replica answered")

    async def close(_app: web.Application) -> None:
        if "s" in sessions:
            await sessions["s"].close()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([web.route("*", "/srv/{label}/{tail:.*}", proxy)])
    app.on_cleanup.append(close)
    return app


async def serve(control: str) -> None:
    runner = web.AppRunner(make_app(control), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"LISTENING {site._server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the wire closes our stdin (or dies)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True, help="the wire's HTTP base URL")
    asyncio.run(serve(parser.parse_args().control))


if __name__ == "__main__":
    main()
