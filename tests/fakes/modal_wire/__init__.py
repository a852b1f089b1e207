"""A fake of Modal's control plane on 127.0.0.1 that the real `modal` client talks to over its own gRPC protocol.

The real client (pinned in pyproject.toml) is pointed at it with `MODAL_SERVER_URL`, a token
pair and an empty `MODAL_CONFIG_PATH` file (`ModalWire.environ()`), in this process or in a
subprocess such as `python -m invoke deploy`. It serves:

- gRPC (`grpc_url`): `modal_proto.api_grpc.ModalClientBase` with grpclib, one module per service
  area (apps.py, blobs.py, images.py, functions.py, volumes.py, dicts.py, secrets.py, servers.py, billing.py;
  core.py assembles them, state.py holds what they remember). Any other
  RPC is answered UNIMPLEMENTED and recorded by name (`unimplemented()`), so a client upgrade
  that changes the protocol fails the tests that hit it, by name.
- HTTP on a second port (`http_url`): the block URLs Volume reads and v2 uploads go to (blobs.py).
- Modal's web proxy in front of Servers (`proxy_url`, `/srv/<label>/...`), in its own process (proxy.py): it checks
  proxy-auth headers and forwards to a local OpenAI-compatible server, as servers.py decides per request.

The control plane runs in a background thread with its own event loop; the web proxy in a subprocess, so that a
stream it forwards never waits on the test's interpreter. State is in memory, except Volume
contents, which are real directories under `root` so that Function calls (run by the test's
runners, see functions.py) use them as a container would its mounted Volumes.

    with ModalWire(tmp_path) as wire:
        env = wire.environ(tmp_path / "modal.toml")      # for os.environ or a subprocess
        wire.create_secret("prod", "huggingface-secret", {"HF_TOKEN": "hf_..."})
        wire.runners["download_weights"] = lambda job: ...
        wire.default_upstream = "http://127.0.0.1:30000"
        ...
        assert wire.unimplemented() == []
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from secrets import token_hex
from typing import Any

import grpclib.server
from aiohttp import web
from grpclib import GRPCError, Status
from modal._serialization import deserialize
from modal._utils.grpc_utils import custom_detail_codec
from modal_proto import api_pb2

from tests.fakes.modal_wire.apps import AppsMixin
from tests.fakes.modal_wire.billing import RATES, BillingMixin, Charge
from tests.fakes.modal_wire.blobs import BlobsMixin
from tests.fakes.modal_wire.core import implemented_rpcs, servicer_class
from tests.fakes.modal_wire.dicts import DictsMixin
from tests.fakes.modal_wire.functions import FunctionsMixin, JobCall
from tests.fakes.modal_wire.images import ImagesMixin
from tests.fakes.modal_wire.secrets import SecretsMixin
from tests.fakes.modal_wire.servers import ServersMixin
from tests.fakes.modal_wire.state import LogLine, Secret, WireState, new_id
from tests.fakes.modal_wire.volumes import VolumesMixin

MIXINS = (AppsMixin, BlobsMixin, ImagesMixin, FunctionsMixin, VolumesMixin, DictsMixin, SecretsMixin, ServersMixin,
          BillingMixin)
Servicer = servicer_class(*MIXINS)
IMPLEMENTED_RPCS = implemented_rpcs(*MIXINS)

__all__ = ["IMPLEMENTED_RPCS", "JobCall", "ModalWire"]


class JobFailure:
    """An output a test fixed for a Function: raise this exception in the "container"."""

    def __init__(self, error: BaseException):
        self.error = error


class ModalWire:
    def __init__(self, root: str | Path, *, environments=("main", "dev", "staging", "prod"),
                 default_environment: str = "main", volume_version: int = api_pb2.VOLUME_FS_VERSION_V2):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state = WireState(self.root, set(environments), default_environment)
        self._environments = (set(environments), default_environment)
        self.volume_version = volume_version
        self.token = (f"ak-{token_hex(8)}", f"as-{token_hex(16)}")
        self.proxy_token = (f"wk-{token_hex(8)}", f"ws-{token_hex(16)}")
        self.runners: dict[str, Callable[[JobCall], Any]] = {}
        self.outputs: dict[str, Any] = {}  # Function name -> fixed return value (or JobFailure)
        self.upstreams: dict[tuple[str, str], str] = {}  # (environment, app name) -> base URL
        self.replicas: dict[tuple[str, str], int] = {}  # (environment, app name) -> containers its Server has up
        self.default_upstream: str | None = None
        self.routes: dict[str, tuple[str, str, str, bool]] = {}
        self.proxied: list[dict] = []  # every request to a Server URL: label, path, credentials (none/valid/invalid)
        self.before_rpc: dict[str, Callable[[], Awaitable[None]]] = {}  # RPC name -> hook (faults, delays)
        self.jobs: list[JobCall] = []
        self.cli_environ: dict[str, str] = {}  # what a test fixture gives its clients (tests/wire.py fills it)
        self.pending_blobs: dict[str, api_pb2.BlobCreateRequest] = {}  # blob id -> its BlobCreate, until uploaded
        self.rates: dict[str, str] = dict(RATES)  # what WorkspaceBillingRates answers (billing.py)
        self.deprecated_rates: dict[str, str] = {}  # rate name -> its deprecation warning
        self.charges: list[Charge] = []  # what WorkspaceBillingReport bills (`charge`)
        self.grpc_url = self.http_url = self.proxy_url = ""
        self._proxy: subprocess.Popen | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ModalWire:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="modal-wire", daemon=True)
        self._thread.start()
        if not started.wait(10) or not self.grpc_url:
            raise RuntimeError("the fake Modal control plane did not start")
        self._proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("proxy.py")),
                                        "--control", self.http_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self._proxy.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"the fake Modal web proxy did not start: {line!r}")
        self.proxy_url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def up() -> None:
            self.servicer = Servicer(self)
            self._grpc = grpclib.server.Server([self.servicer], status_details_codec=custom_detail_codec)
            await self._grpc.start("127.0.0.1", 0)
            self.grpc_url = f"http://127.0.0.1:{self._grpc._server.sockets[0].getsockname()[1]}"
            http = web.Application(client_max_size=64 * 1024 * 1024)
            http.add_routes([*self.servicer.http_routes(), *self.servicer.proxy_routes()])
            self._http = web.AppRunner(http, access_log=None)
            await self._http.setup()
            site = web.TCPSite(self._http, "127.0.0.1", 0)
            await site.start()
            self.http_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

        self._loop.run_until_complete(up())
        started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stdin.close()  # the proxy serves until its stdin closes
            try:
                self._proxy.wait(10)
            except subprocess.TimeoutExpired:
                self._proxy.kill()
                self._proxy.wait()
            self._proxy.stdout.close()
            self._proxy = None
        if self._loop is None:
            return

        async def down() -> None:
            self._grpc.close()
            await self._http.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> ModalWire:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self, root: str | Path) -> None:
        """Forget every object (a fresh workspace), keep the ports: one server can serve a whole test session."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        environments, default = self._environments

        def fresh():
            self.state = self.servicer.state = WireState(self.root, set(environments), default)
            self.servicer.rpc_log.clear()
            self.servicer.unimplemented.clear()

        self._on_loop(fresh)
        self.outputs.clear()
        self.upstreams.clear()
        self.replicas.clear()
        self.routes.clear()
        self.proxied.clear()
        self.before_rpc.clear()
        self.jobs.clear()
        self.rates = dict(RATES)
        self.deprecated_rates = {}
        self.charges = []

    def environ(self, config_path: str | Path) -> dict[str, str]:
        """The environment that points a real `modal` client here (the config file is created empty)."""
        Path(config_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config_path).touch()
        return {
            "MODAL_SERVER_URL": self.grpc_url,
            "MODAL_TOKEN_ID": self.token[0],
            "MODAL_TOKEN_SECRET": self.token[1],
            "MODAL_CONFIG_PATH": str(config_path),
        }

    # ------------------------------------------------------------------ what tests set

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop, between RPCs, and return its result."""

        async def call():
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def create_secret(self, environment: str, name: str, values: dict[str, str]) -> None:
        def create():
            self.state.environment(environment)
            existing = self.state.named_secret(environment, name)
            secret = Secret(existing.secret_id if existing else new_id("st"), environment, name, dict(values))
            self.state.secrets[secret.secret_id] = secret

        self._on_loop(create)

    def apps_named(self, environment: str, name: str) -> list[dict]:
        """Every App in `environment` deployed as or described by `name`, oldest first: app_id, state, stopped."""
        return self._on_loop(lambda: [
            {"app_id": a.app_id, "state": api_pb2.AppState.Name(a.state),
             "stopped": a.state == api_pb2.APP_STATE_STOPPED}
            for a in sorted(self.state.apps.values(), key=lambda a: a.created_at)
            if a.environment == environment and name in (a.name, a.description)])

    def log(self, app_id: str, *lines: str, at: float | None = None, stderr: bool = False, task_id: str = "ta-fake",
            running_tasks: int | None = None) -> None:
        """`lines` written by a container of App `app_id` at `at` (default: now), a microsecond apart."""
        def write():
            app = self.state.app(app_id)
            start = time.time() if at is None else at
            fd = api_pb2.FILE_DESCRIPTOR_STDERR if stderr else api_pb2.FILE_DESCRIPTOR_STDOUT
            for i, text in enumerate(lines):
                app.logs.append(LogLine(f"{len(app.logs) + 1:012d}", start + i * 1e-6, text, fd, task_id))
            if running_tasks is not None:
                app.running_tasks = running_tasks

        self._on_loop(write)

    def delete_secret(self, environment: str, name: str) -> None:
        def delete():
            if found := self.state.named_secret(environment, name):
                del self.state.secrets[found.secret_id]

        self._on_loop(delete)

    def charge(self, environment: str, app_name: str, hours: list[datetime], cost_by_resource: dict[str, str]) -> None:
        """Bill the App deployed as `app_name` (or, for a jobs App, the last one run under that name) for each hour,
        with the tags it carries now: what Modal's billing report will show for those hours."""

        def add():
            found = self.state.deployed_app(environment, app_name) or next(
                (a for a in sorted(self.state.apps.values(), key=lambda a: -a.created_at)
                 if a.environment == environment and app_name in (a.name, a.description)), None)
            if found is None:
                raise RuntimeError(f"no App {app_name!r} in Modal Environment {environment!r} to charge")
            tags = dict(found.live.tags) if found.live else dict(found.tags)
            for hour in hours:
                self.charges.append(Charge(environment, found.app_id, found.name or found.description, hour,
                                           {k: Decimal(v) for k, v in cost_by_resource.items()}, tags))

        self._on_loop(add)

    def fail(self, rpc: str, message: str, status: Status = Status.PERMISSION_DENIED) -> None:
        """Answer every later call of `rpc` with this error: how a test scripts a refusal or outage of Modal. The client
        raises what it maps the status to (PERMISSION_DENIED: modal.exception.PermissionDeniedError); a status it
        retries (UNAVAILABLE, INTERNAL) is retried first, as against Modal."""

        async def refuse() -> None:
            raise GRPCError(status, message)

        self.before_rpc[rpc] = refuse

    def set_output(self, function: str, value: Any) -> None:
        self.outputs[function] = value

    def set_failure(self, function: str, error: BaseException) -> None:
        self.outputs[function] = JobFailure(error)

    def upstream_for(self, environment: str, app_name: str) -> str:
        upstream = self.upstreams.get((environment, app_name), self.default_upstream)
        if upstream is None:
            raise RuntimeError(f"no upstream for {environment}/{app_name}: set wire.default_upstream or wire.upstreams")
        return upstream

    def run_job(self, job: JobCall) -> Any:
        """Called by the servicer in a worker thread for each Function input."""
        self.jobs.append(job)
        if job.function in self.outputs:
            fixed = self.outputs[job.function]
            if isinstance(fixed, JobFailure):
                raise fixed.error
            return fixed
        if job.function not in self.runners:
            raise RuntimeError(f"the fake has no runner for Function {job.function!r}")
        return self.runners[job.function](job)

    # ------------------------------------------------------------------ what tests inspect

    def rpcs(self) -> list[str]:
        return self._on_loop(lambda: list(self.servicer.rpc_log))

    def unimplemented(self) -> list[str]:
        """The RPCs the client called that the fake does not implement, in order (the fixture fails on any)."""
        return self._on_loop(lambda: list(self.servicer.unimplemented))

    def forget_unimplemented(self) -> None:
        """For the test of this mechanism itself."""
        self._on_loop(self.servicer.unimplemented.clear)

    def app_versions(self, environment: str, app_name: str) -> list[dict]:
        """The deployed App's history, oldest first: version, deployment tag, rollback_version, live, the App's tags."""

        def versions():
            app = self.state.deployed_app(environment, app_name)
            if app is None:
                return []
            return [{"version": v.version, "tag": v.tag, "rollback_version": v.rollback_version,
                     "live": v.version == app.live_version, "deployed_at": v.deployed_at, "app_tags": v.tags}
                    for v in app.history]

        return self._on_loop(versions)

    def app_states(self, environment: str, description: str) -> list[str]:
        """Every App created under this name in the Environment, oldest first, by state name."""
        return self._on_loop(lambda: [
            api_pb2.AppState.Name(a.state) for a in sorted(self.state.apps.values(), key=lambda a: a.created_at)
            if a.environment == environment and (a.description == description or a.name == description)
        ])

    def volume_dir(self, environment: str, name: str) -> Path | None:
        return self._on_loop(lambda: next(
            (v.root for v in self.state.volumes.values() if v.environment == environment and v.name == name), None))

    def volume_files(self, environment: str, name: str) -> dict[str, bytes]:
        root = self.volume_dir(environment, name)
        if root is None:
            return {}
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and not p.name.endswith(".upload")}

    def volumes(self) -> list[tuple[str, str]]:
        return self._on_loop(lambda: sorted((v.environment, v.name) for v in self.state.volumes.values()))

    def dict_entries(self, environment: str, name: str) -> dict[Any, Any]:
        def entries():
            found = next((d for d in self.state.dicts.values() if d.environment == environment and d.name == name),
                         None)
            return dict(found.entries) if found else {}

        return {deserialize(k, None): deserialize(v, None) for k, v in self._on_loop(entries).items()}

    def schedules(self, environment: str, app_name: str) -> dict[str, tuple[str, str] | None]:
        """The live version's Functions by name, with the (cron, time zone) each is scheduled on, if any."""

        def scheduled():
            app = self.state.deployed_app(environment, app_name)
            out = {}
            for name, function_id in (app.function_ids if app else {}).items():
                definition = self.state.live_definition(self.state.functions[function_id])
                cron = definition.schedule.cron if definition and definition.HasField("schedule") else None
                out[name] = (cron.cron_string, cron.timezone) if cron and cron.cron_string else None
            return out

        return self._on_loop(scheduled)

    def autoscaler(self, environment: str, app_name: str, server: str = "server") -> dict[str, Any]:
        """The settings in force for the live version's Server, as the fields that are set."""

        def settings():
            app = self.state.deployed_app(environment, app_name)
            function = self.state.functions[app.function_ids[server]]
            in_force = self.servicer._in_force(function)
            return {f.name: v for f, v in in_force.ListFields()}

        return self._on_loop(settings)
