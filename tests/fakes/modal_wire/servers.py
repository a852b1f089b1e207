"""Servers (`@app.server`): their URLs, Modal's proxy in front of them, and their autoscaler settings.

What real Modal does, and the fake copies:
- A Server's URL is stable per Environment, App and Server name; a `modal run` (ephemeral) App
  gets its own URL (`-dev`), live only while the App runs. Requests to the URL reach the
  replicas of the version that is live now, so a rollback changes what answers, not the URL.
- Unless the Server is `unauthenticated=True`, the proxy refuses a request without a valid
  proxy-auth token in `Modal-Key` / `Modal-Secret` headers with a 401. The headers stop at the
  proxy. (The fake also notes, per request, which URL it reached and what credentials it carried:
  `ModalWire.proxied`, so tests can tell where credentials went.)
- `FunctionGetCurrentStats` (`Function.get_current_stats()`) counts the Function's containers (`num_total_tasks`),
  its queued inputs and those running; reading it starts nothing. The fake has no containers: it answers the warm
  floor in force (`min_containers`, as a Server that holds its floor has that many up), unless a test says how
  many replicas a Server's app has (`ModalWire.replicas`).
- `FunctionGetSchedulingParams` returns the autoscaler settings in force: the definition's
  static ones with any run-time override applied; `FunctionUpdateSchedulingParams` sets the
  fields the request carries and returns the settings now in force. A deploy (a new version
  going live, rollbacks included) drops the overrides; a skipped deploy is not one, as far as
  the fake knows. Fields never set are absent, not zero.

What the fake cannot tell: no container starts, so there are no replicas, no cold starts,
no scaling and no GPU placement. The URL forwards to whatever local OpenAI-compatible
server the test names for that App (tests/fakes/openai_server.py), streaming its answer
through unchanged. The proxy runs in its own process (proxy.py): it asks this module, per request, what answers at a
URL (`_route`) and reports the status for the access log (`_access`); the stream itself never passes through the test's
interpreter.
"""

from __future__ import annotations

import time

from aiohttp import web
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import LogLine

AUTOSCALER_FIELDS = ("min_containers", "max_containers", "buffer_containers", "scaleup_window", "scaledown_window",
                     "target_concurrency", "target_concurrency_float", "scaledown_rate_limit")

def merged(static: api_pb2.AutoscalerSettings, override: api_pb2.AutoscalerSettings) -> api_pb2.AutoscalerSettings:
    settings = api_pb2.AutoscalerSettings()
    settings.CopyFrom(static)
    for name in AUTOSCALER_FIELDS:
        if override.HasField(name):
            setattr(settings, name, getattr(override, name))
    return settings


class ServersMixin:
    # ------------------------------------------------------------------ URLs

    def server_url(self, function) -> str:
        app = self.state.apps[function.app_id]
        name = app.name or app.description
        ephemeral = app.state == api_pb2.APP_STATE_EPHEMERAL
        label = f"{app.environment}--{name}-{function.tag}" + ("-dev" if ephemeral else "")
        self.wire.routes[label] = (app.environment, name, function.tag, ephemeral)
        return f"{self.wire.proxy_url}/srv/{label}"

    def _serving(self, label: str) -> api_pb2.Function | None:
        """The definition that answers at `label` now: the live version's, or the running ephemeral App's."""
        route = self.wire.routes.get(label)
        if route is None:
            return None
        environment, name, tag, ephemeral = route
        if ephemeral:
            app = next((a for a in self.state.apps.values() if a.environment == environment and a.description == name
                        and a.state == api_pb2.APP_STATE_EPHEMERAL), None)
            function_id = app.function_ids.get(tag) if app else None
            return self.state.functions[function_id].definition if function_id else None
        app = self.state.deployed_app(environment, name)
        live = app.live if app else None
        if live is None or tag not in live.function_ids:
            return None
        return self.state.definitions[live.definition_ids[live.function_ids[tag]]]

    def proxy_routes(self) -> list[web.RouteDef]:
        """What the proxy process (proxy.py) asks before and while it forwards a request."""
        return [web.post("/_proxy/route", self._route), web.post("/_proxy/access", self._access)]

    async def _route(self, request: web.Request) -> web.Response:
        """What answers at a Server URL: a refusal ({"status", "text"}) or {"upstream": base URL}."""
        asked = await request.json()
        label, key, secret = asked["label"], asked["key"], asked["secret"]
        definition = self._serving(label)
        carried = "none" if not (key or secret) else "valid" if (key, secret) == self.wire.proxy_token else "invalid"
        self.wire.proxied.append({"label": label, "path": asked["path"], "credentials": carried,
                                  "authenticated": bool(definition and not definition.http_config.unauthenticated)})
        if definition is None:
            return web.json_response({"status": 404, "text": "modal-http: app for invoked web endpoint is stopped or "
                                                             "does not exist"})
        if not definition.http_config.unauthenticated:
            if not key or not secret:
                return web.json_response({"status": 401, "text": "modal-http: missing credentials for proxy "
                                                                 "authorization"})
            if (key, secret) != self.wire.proxy_token:
                return web.json_response({"status": 401, "text": "modal-http: invalid credentials for proxy "
                                                                 "authorization"})
        environment, name, _, _ = self.wire.routes[label]
        try:
            return web.json_response({"upstream": self.wire.upstream_for(environment, name)})
        except RuntimeError as exc:
            return web.json_response({"status": 500, "text": str(exc)})

    async def _access(self, request: web.Request) -> web.Response:
        """The replica's access line in its App's logs, as SGLang's uvicorn writes it (what `invoke logs` reads)."""
        served = await request.json()
        environment, name, _, _ = self.wire.routes[served["label"]]
        app = next((a for a in self.state.apps.values() if a.environment == environment
                    and name in (a.name, a.description) and a.state != api_pb2.APP_STATE_STOPPED), None)
        if app is not None:
            app.logs.append(LogLine(f"{len(app.logs) + 1:012d}", time.time(),
                                    f'INFO:     127.0.0.1:0 - "{served["method"]} {served["path"]} HTTP/1.1" '
                                    f'{served["status"]}\n', api_pb2.FILE_DESCRIPTOR_STDERR, "ta-replica"))
        return web.Response(status=204)

    # ------------------------------------------------------------------ autoscaler

    def _static(self, function) -> api_pb2.AutoscalerSettings:
        definition = self.state.live_definition(function)
        return definition.autoscaler_settings if definition else api_pb2.AutoscalerSettings()

    def _in_force(self, function) -> api_pb2.AutoscalerSettings:
        return merged(self._static(function), function.autoscaler_override)

    async def FunctionGetCurrentStats(self, stream) -> None:
        request: api_pb2.FunctionGetCurrentStatsRequest = await stream.recv_message()
        function = self.state.function(request.function_id)
        app = self.state.apps[function.app_id]
        floor = self._in_force(function).min_containers if function.definition is not None else 0
        replicas = self.wire.replicas.get((app.environment, app.name or app.description), floor)
        await stream.send_message(api_pb2.FunctionStats(
            backlog=0, num_total_tasks=replicas, num_running_inputs=0))

    async def FunctionGetSchedulingParams(self, stream) -> None:
        request: api_pb2.FunctionGetSchedulingParamsRequest = await stream.recv_message()
        function = self.state.function(request.function_id)
        await stream.send_message(api_pb2.FunctionGetSchedulingParamsResponse(
            autoscaler_configuration=api_pb2.AutoscalerConfiguration(
                settings=self._in_force(function), static_settings=self._static(function),
                override_settings=function.autoscaler_override,
            ),
        ))

    async def FunctionUpdateSchedulingParams(self, stream) -> None:
        request: api_pb2.FunctionUpdateSchedulingParamsRequest = await stream.recv_message()
        function = self.state.function(request.function_id)
        function.autoscaler_override = merged(function.autoscaler_override, request.settings)
        in_force = self._in_force(function)
        await stream.send_message(api_pb2.FunctionUpdateSchedulingParamsResponse(current_settings=in_force))
