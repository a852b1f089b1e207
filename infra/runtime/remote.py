"""The network boundary: every call that reaches Modal goes through `ModalRemote`, and nothing else does.

Stages are given a `Remote` (this class) and never call the SDK themselves. A new Modal call is written in two places:
a method here, and the RPCs it makes in the fake control plane (tests/fakes/modal_wire), which the real `modal`
client, pinned in pyproject.toml, talks to in every test. Modal's SDK is imported lazily so that `plan` and `--help`
stay fast and work without credentials. Everything is modal 1.6.4's public API except app history, rollback and
the app listing, which exist only in Modal's CLI (infra/runtime/modal_rpc.py, the one place with private SDK names).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any, TypeVar

from infra.runtime import modal_rpc
from infra.runtime.current import COMMIT_TAG_VARIABLE
from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.runtime.errors import UserError
from infra.runtime.sentinel import RING_DICT, SPEC_VARIABLE, SentinelSpec
from infra.runtime.spec import SERVER_NAME

AUTOSCALER_SETTINGS = {"min_containers", "max_containers", "buffer_containers"}
LOCKS_DICT = "sglang-release-locks"  # a Modal Dict: atomic create-if-absent, good for short-lived locks
# Every server container's start timeline (infra/runtime/timeline.py), read by `invoke status`: a Dict, not the
# releases Volume, since many containers write at once, none mounts that Volume, and a Dict write needs no commit.
# Modal expires an entry 7 days after its last access; each release's summary is frozen into its manifest.
STARTS_DICT = "sglang-starts"
STARTS_KEPT = 20  # per bucket (one deployment of one app): the newest; each write drops the one this many before it
LIVE = ("deployed", "ephemeral", "detached", "initializing", "derived", "detached_disconnected")  # an App's states
T = TypeVar("T")


class _OnFirstUse:
    """The `modal` SDK, imported on first use: `plan` and `--help` stay fast and need no credentials."""

    def __getattr__(self, name: str) -> Any:
        import modal as sdk

        return getattr(sdk, name)


modal = _OnFirstUse()


class MissingCredentials(UserError):
    """No Modal token, or one Modal refuses: one message wherever it is noticed, and never the token itself."""

    MESSAGE = ("Modal credentials missing: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (CI: repository secrets) "
               "or run `modal token new` on a laptop; `invoke plan` works without them")

    def __init__(self, message: str = MESSAGE):
        super().__init__(message)


class Unreachable(UserError):
    """Modal's control plane did not answer: say where we tried and what to check, in seconds, not a minute."""


DEFAULT_CONNECT_TIMEOUT = 15.0  # seconds; settings: [client] connect_timeout
HINT = "check the network, any proxy (HTTPS_PROXY), and MODAL_SERVER_URL ([client] connect_timeout bounds the wait)"


def server_address() -> tuple[str, str, int]:
    """The control plane the client will call (MODAL_SERVER_URL, the profile, or Modal's default): url, host, port."""
    from modal.config import config

    url = config.get("server_url").split(",")[0].strip()
    parts = urllib.parse.urlsplit(url)
    return url, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def first_answer(url: str, timeout: float) -> None:
    """The control plane at `url` answers a first call within `timeout` seconds, or `Unreachable` says why in one line.
    The SDK bounds only the TCP connect (a server that never answers held it for minutes, an untrusted certificate
    read "Could not connect" after retries), so its first ClientHello is made here step by step (runtime/reach.py)."""
    import ssl

    import certifi

    from infra.runtime import reach

    if not url.startswith(("http://", "https://")):
        return  # a unix socket (inside some runtimes): nothing on the way to bound
    proxy = modal_rpc.proxy_for(url)
    try:
        # The client trusts certifi's bundle alone on an https control plane (grpclib's default context).
        reach.first_answer(url, timeout, trust=ssl.create_default_context(cafile=certifi.where()),
                           answer=lambda left: modal_rpc.hello(url, left), direct=proxy is None)
    except reach.NoAnswer as no:
        via = f" through the proxy {proxy}" if proxy else ""
        check = (f"a proxy that intercepts TLS? Modal's client trusts only certifi's CA bundle ({certifi.where()}), "
                 "not SSL_CERT_FILE: add the proxy's CA certificate to that file" if no.tls else HINT)
        raise Unreachable(f"cannot reach Modal's control plane at {url}{via}: {no.reason}; {check}; nothing was changed"
                          ) from None

class BillingUnavailable(UserError):
    """Modal would not give this workspace's rates or bill (a plan or role without billing access, a missing
    Environment): one line, so a caller can carry on without them where it may."""


@contextlib.contextmanager
def _billing_problems_explained(what: str) -> Iterator[None]:
    """Modal's refusals of a billing call, as `BillingUnavailable`; refused credentials stay `MissingCredentials`."""
    try:
        yield
    except modal.exception.AuthError:
        raise
    except modal.exception.Error as err:
        raise BillingUnavailable(f"Modal did not give {what}: {type(err).__name__}: {err}") from None


@contextlib.contextmanager
def _problems_explained() -> Iterator[None]:
    """Modal's AuthError becomes `MissingCredentials`; its ConnectionError (after retries) a line naming the server."""
    from modal.exception import AuthError

    try:
        yield
    except AuthError:
        raise MissingCredentials() from None
    except ConnectionError as exc:
        url = server_address()[0]
        raise Unreachable(f"cannot reach Modal's control plane at {url} ({exc}); {HINT}; nothing was changed") from None


def _explained(method: Callable[..., T]) -> Callable[..., T]:
    """A call to Modal: the control plane reached first (within the connect timeout), errors in one line."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with _problems_explained():
            self._reach()
            return method(self, *args, **kwargs)

    return call


def _unless_missing(call: Callable[[], T], missing: Any = None) -> T:
    """`call()`, or `missing` where Modal answers that the object does not exist (a read creates nothing)."""
    try:
        return call()
    except modal.exception.NotFoundError:
        return missing


def _log_line(entry) -> dict:
    """One `modal.types.LogEntry` as plain data: when (epoch seconds), stdout/stderr/system, the text, the container."""
    return {"at": entry.timestamp.timestamp(), "source": entry.source, "text": entry.message,
            "container": next((c for c in reversed(entry.context_ids) if c.startswith("ta-")), "")}


def _in_force(settings) -> dict:
    """Modal's ServerAutoscalerSettings as plain values: unset minimum and buffer are 0, an unset maximum is None."""
    return {"min_containers": settings.min_containers or 0, "max_containers": settings.max_containers,
            "buffer_containers": settings.buffer_containers or 0}


def starts_bucket(app_name: str, deployment_digest: str) -> str:
    """Where one deployment's starts are kept: a release's, or several releases' when they deployed the same thing."""
    return f"{app_name}/{deployment_digest}"


def _numbered(key: str, n: int) -> str:
    return f"{key}#{n}"


def _newest(entries, key: str) -> tuple[int, Any]:
    """The highest number written under `key` in a Dict and its entry (0, None when none). The entry under `key` is
    only a hint where to start (a writer that lost a race may have left an older one, a replaced lock a dict); the
    numbered keys are the truth, and no lock generation is ever deleted (Modal expires entries a week after use)."""
    n = entries.get(key, 0)
    n = n if isinstance(n, int) else 0
    entry = entries.get(_numbered(key, n)) if n else None
    while (newer := entries.get(_numbered(key, n + 1))) is not None:
        n, entry = n + 1, newer
    return n, entry


@contextlib.contextmanager
def _modal_output() -> Iterator[None]:
    """Modal's progress (spinners, build logs, "App deployed") on stderr: stdout carries only our result (`--json`).
    Process-wide, which suits the CLI: it runs one Modal operation at a time."""
    with contextlib.redirect_stdout(sys.stderr), modal.enable_output():
        yield


@contextlib.contextmanager
def _module_for(module: str, d: Deployment, commit: str | None = None) -> Iterator[ModuleType]:
    """infra.runtime.app / jobs for this deployment as its container imports it (a deploy's: with its git tag)."""
    with _imported_with(module, {DEPLOYMENT_VARIABLE: d.to_json(), "MODAL_ENVIRONMENT": d.modal.environment,
                                 COMMIT_TAG_VARIABLE: commit}) as imported:
        yield imported


@contextlib.contextmanager
def _imported_with(module: str, variables: dict[str, str | None]) -> Iterator[ModuleType]:
    """`module` run afresh with these variables set (None: unset), as its container imports it; then restored.
    Modal finds a Function by module and name, so app.py, jobs.py and sentinel_app.py define theirs on import, from a
    variable; importlib.reload is how this process defines them for another deployment (tests/test_modal_contract.py).
    """
    saved = {k: os.environ.get(k) for k in variables}
    try:
        _set_variables(variables)
        loaded = sys.modules.get(module)
        yield importlib.reload(loaded) if loaded is not None else importlib.import_module(module)
    finally:
        _set_variables(saved)


def _set_variables(variables: dict[str, str | None]) -> None:
    for key, value in variables.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass(frozen=True)
class App:
    """One App of a Modal Environment, as `modal app list` shows it (infra/runtime/modal_rpc.py `apps`)."""

    app_id: str
    name: str
    state: str  # deployed, stopped, ephemeral, ... (APP_STATE_* in lower case)
    created_at: float | None = None
    stopped_at: float | None = None
    running: int = 0

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass(frozen=True)
class Deployed:
    """What a deploy answered; `changed` is False where Modal skipped it as unchanged (the version is the live one)."""

    app_id: str
    url: str | None
    version: int | None
    changed: bool


class ModalRemote:
    """Talks to Modal with the SDK. Every method reports missing or refused credentials as `MissingCredentials`,
    and an unreachable control plane within `connect_timeout` seconds as `Unreachable`."""

    def __init__(self, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT):
        self.connect_timeout = connect_timeout
        self._reached = False

    def _reach(self) -> None:
        """Once per process: does Modal's control plane answer at all? Fails within `connect_timeout`, saying why."""
        if self._reached:
            return
        first_answer(server_address()[0], self.connect_timeout)
        self._reached = True

    def require_credentials(self) -> None:
        """A token from MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or the active profile of ~/.modal.toml (MODAL_CONFIG_PATH),
        or OAuth credentials: whatever the client itself would authenticate with (modal.config resolves all three)."""
        from modal.config import config

        token = config.get("token_id") and config.get("token_secret")
        oauth = config.get("oauth_refresh_token") and config.get("oauth_client_id")
        if not (token or oauth):
            raise MissingCredentials()

    @_explained
    def build_image(self, d: Deployment) -> str:
        from infra.runtime import modal_objects, spec

        builder = modal.App.lookup(d.builds_app_name, environment_name=d.modal.environment, create_if_missing=True)
        builder.set_tags(spec.tags(d, "builds"))  # its billing rows are then counted, and named, in `status --cost`
        with _modal_output():
            image = modal_objects.image(spec.server_image(d)).build(builder)
        return image.object_id

    @staticmethod
    def _job(d: Deployment, function: str, *args, **kwargs):
        """One Function of infra/runtime/jobs.py, in an ephemeral run of the jobs app."""
        with _module_for("infra.runtime.jobs", d) as jobs, _modal_output():
            with jobs.app.run(environment_name=d.modal.environment):
                return getattr(jobs, function).remote(*args, **kwargs)

    @_explained
    def run_download(self, d: Deployment) -> list[dict]:
        return self._job(d, "download_weights")

    @_explained
    def run_compile(self, d: Deployment, force: bool = False) -> dict:
        """The compile job; `force` compiles and republishes even where a marker says this key is done."""
        return self._job(d, "compile_kernels", force=force)

    @_explained
    def run_gpu_test(self, d: Deployment, shape: str) -> dict:
        """The acceptance suite at `shape` in the recipe's image on its GPUs (infra/runtime/acceptance.py)."""
        return self._job(d, "gpu_test", shape)

    @_explained
    def deploy(self, d: Deployment, tag: str) -> Deployed:
        before = self._latest_version(d)
        with _module_for("infra.runtime.app", d, commit=tag) as module, _modal_output():
            module.app.deploy(environment_name=d.modal.environment, tag=tag)
            url = module.SGLangServer.get_url()
            app_id = module.app.app_id
        version = self._latest_version(d)
        # modal's runner.py: a publish with a falsy `deployed_at` was a no-op and adds no version.
        return Deployed(app_id, url, version, changed=before is None or version != before)

    def _latest_version(self, d: Deployment) -> int | None:
        latest = self.history(d)[:1]
        return latest[0]["version"] if latest else None

    def server_url(self, d: Deployment) -> str | None:
        return self.endpoint_of(d.modal.environment, d.app_name)

    @_explained
    def history(self, d: Deployment) -> list[dict]:
        """Newest first: [{"version": 3, "tag": "git-...", "deployed_at": <epoch seconds>}]; [] if never deployed."""
        return sorted(modal_rpc.deployment_history(d.app_name, d.modal.environment),
                      key=lambda row: row["version"], reverse=True)

    @_explained
    def rollback(self, d: Deployment, version: int | None) -> None:
        """Redeploy `version` (default: the previous one) as a new version, as `modal app rollback` does."""
        target = f"v{version}" if version else "its previous version"
        try:
            rolled = modal_rpc.rollback(d.app_name, d.modal.environment, version)
        except (modal.exception.NotFoundError, modal.exception.InvalidError) as err:
            raise UserError(f"cannot roll {d.app_name} (Modal environment {d.modal.environment}) back to {target}: "
                            f"{err}") from None
        if not rolled:
            raise UserError(f"no deployed app {d.app_name} in Modal environment {d.modal.environment}: nothing to roll "
                            "back")

    @_explained
    def update_autoscaler(self, d: Deployment, **settings: int | None) -> dict:
        """Change the live Server's autoscaler until the next deploy: only the settings given, as Modal's
        `autoscaler.update` (None: 0 for min and buffer, no cap for max). Returns the settings in force after."""
        if not settings or set(settings) - AUTOSCALER_SETTINGS:
            raise TypeError(f"update_autoscaler: give some of {sorted(AUTOSCALER_SETTINGS)}; got {sorted(settings)}")
        server = modal.Server.from_name(d.app_name, SERVER_NAME, environment_name=d.modal.environment)
        try:
            return _in_force(server.autoscaler.update(**settings))
        except modal.exception.NotFoundError:
            raise UserError(f"no deployed server in app {d.app_name} in Modal environment {d.modal.environment}: "
                            f"deploy it first (`invoke deploy --env {d.env} --recipe {d.recipe.name}`)") from None

    @_explained
    def autoscaler(self, d: Deployment) -> dict | None:
        """The live Server's autoscaler settings in force (run-time overrides included); None if it is not deployed."""
        server = modal.Server.from_name(d.app_name, SERVER_NAME, environment_name=d.modal.environment)
        return _unless_missing(lambda: _in_force(server.autoscaler.settings()))

    @_explained
    def read_file(self, environment: str, volume: str, path: str) -> bytes | None:
        """The file's bytes, or None when the file or the whole Volume does not exist (a read creates nothing)."""
        vol = modal.Volume.from_name(volume, environment_name=environment)
        try:
            return _unless_missing(lambda: b"".join(vol.read_file(path)))
        except FileNotFoundError:
            return None

    @_explained
    def write_file(self, environment: str, volume: str, path: str, data: bytes) -> None:
        """Replaces the file in one batch: readers see the old or the new content, never a part."""
        vol = modal.Volume.from_name(volume, environment_name=environment, create_if_missing=True)
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), path)

    @_explained
    def acquire_lock(self, environment: str, name: str, holder: str, ttl: float) -> dict | None:
        """None when `holder` now holds lock `name`; otherwise the entry of whoever does.

        A Modal Dict's one conditional write is put-if-absent (no compare-and-swap), so each holding of the lock is a
        new *generation*, a key created with put-if-absent: exactly one taker creates generation N+1, and only after
        seeing generation N released or expired. Two takers of an expired lock race for that key; one loses.
        """
        locks = modal.Dict.from_name(LOCKS_DICT, environment_name=environment, create_if_missing=True)
        generation, entry = _newest(locks, name)
        if entry is not None and not entry.get("released") and entry.get("expires", 0) > time.time():
            return entry
        now = time.time()
        mine = {"holder": holder, "since": now, "expires": now + ttl, "generation": generation + 1}
        if locks.put(_numbered(name, generation + 1), mine, skip_if_exists=True):
            locks.put(name, generation + 1)  # where the next reader starts looking
            return None
        return locks.get(_numbered(name, generation + 1))

    @_explained
    def release_lock(self, environment: str, name: str, holder: str) -> None:
        """Mark `holder`'s generation released; nothing if the lock is not (or no longer) theirs."""
        locks = modal.Dict.from_name(LOCKS_DICT, environment_name=environment, create_if_missing=True)
        generation, entry = _newest(locks, name)
        if entry is not None and entry.get("holder") == holder and not entry.get("released"):
            # Only the creator of a generation ever writes its key, so this plain put is safe.
            locks.put(_numbered(name, generation), {**entry, "released": True})

    @_explained
    def record_start(self, environment: str, bucket: str, record: dict) -> int:
        """Add one start's record to `bucket`, keeping the newest STARTS_KEPT; returns its sequence number.

        Called from the server container (infra/runtime/startup.py), which never lets it fail a start. Each record is
        a key of its own, created with put-if-absent, so concurrent starts never overwrite each other (a writer that
        finds its number taken takes the next); each write drops the record STARTS_KEPT before its own, bounding the
        bucket without listing it. Keys and values travel cloudpickled: plain JSON-able data only.
        """
        starts = modal.Dict.from_name(STARTS_DICT, environment_name=environment, create_if_missing=True)
        n = _newest(starts, bucket)[0] + 1
        while not starts.put(_numbered(bucket, n), record, skip_if_exists=True):
            n += 1
        starts.put(bucket, n)  # where the next writer and reader start looking
        if n > STARTS_KEPT:
            starts.pop(_numbered(bucket, n - STARTS_KEPT), None)
        return n

    @_explained
    def recent_starts(self, environment: str, bucket: str) -> list[dict]:
        """The records in `bucket`, newest first; [] when there are none (reading creates nothing)."""
        starts = modal.Dict.from_name(STARTS_DICT, environment_name=environment)
        newest = _unless_missing(lambda: _newest(starts, bucket)[0], 0)
        found = (starts.get(_numbered(bucket, n)) for n in range(newest, max(newest - STARTS_KEPT, 0), -1))
        return [record for record in found if record is not None]

    @_explained
    def secret_exists(self, environment: str, name: str) -> bool:
        return _unless_missing(lambda: bool(modal.Secret.from_name(name, environment_name=environment).hydrate()),
                               False)

    @_explained
    def billing_rates(self) -> dict:
        """The workspace's current rates as Modal answers them (`Workspace.billing.rates()`): {"workspace",
        "rates": {name: decimal text}}, deprecated names left out as the SDK does (infra/control/costs.py reads it)."""
        with _billing_problems_explained("the workspace's billing rates"):
            workspace = modal.Workspace.from_context()
            rates = workspace.billing.rates()
            return {"workspace": workspace.name, "rates": {name: str(rates[name]) for name in rates}}

    @_explained
    def billing_report(self, environment: str, start: datetime, end: datetime, tag_names: Sequence[str]) -> list[dict]:
        """What Modal billed in one Modal Environment from `start` to `end` (UTC, whole hours), one row per object and
        hour (`Environment.billing.report`): its cost and cost by resource as decimal text, its tags among `tag_names`,
        the hour as epoch seconds."""
        with _billing_problems_explained(f"the billing report of Modal Environment '{environment}'"):
            items = modal.Environment.from_name(environment).billing.report(
                start=start, end=end, resolution="h", tag_names=list(tag_names))
        return [{"object_id": item.object_id, "description": item.description, "environment": item.environment_name,
                 "interval_start": item.interval_start.timestamp(), "cost": str(item.cost),
                 "cost_by_resource": {k: str(v) for k, v in item.cost_by_resource.items()}, "tags": dict(item.tags)}
                for item in items]

    @_explained
    def replicas(self, environment: str, app_name: str) -> int | None:
        """How many containers the app's server has now (None: not deployed), from `Function.get_current_stats()` on
        the Server's service Function: a read, so it never wakes a server that scaled to zero (a request to its URL
        would). The sentinel asks before it probes (infra/runtime/sentinel.py)."""
        server = modal.Function.from_name(app_name, SERVER_NAME, environment_name=environment)
        return _unless_missing(lambda: server.get_current_stats().num_total_runners)

    @_explained
    def endpoint_of(self, environment: str, app_name: str) -> str | None:
        """The URL of the app's server by the app's name (the sentinel knows no Deployment); None if not deployed."""
        return _unless_missing(modal.Server.from_name(app_name, SERVER_NAME, environment_name=environment).get_url)

    @_explained
    def read_ring(self, environment: str, keys: Sequence[str]) -> dict[str, object]:
        """The sentinel ring's entries under `keys` that exist (reading creates no Dict): one Dict get each."""
        ring = modal.Dict.from_name(RING_DICT, environment_name=environment)
        found = _unless_missing(lambda: [(key, ring.get(key)) for key in keys], [])
        return {key: value for key, value in found if value is not None}

    @_explained
    def write_ring(self, environment: str, key: str, value: dict) -> None:
        """One entry of the sentinel ring, replaced whole (plain JSON-able data: the client cloudpickles it)."""
        modal.Dict.from_name(RING_DICT, environment_name=environment, create_if_missing=True).put(key, value)

    @_explained
    def deploy_sentinel(self, spec: SentinelSpec) -> dict:
        """Deploy the sentinel's own app (infra/runtime/sentinel_app.py), imported as its container will import it."""
        variables = {SPEC_VARIABLE: spec.to_json(), "MODAL_ENVIRONMENT": spec.modal_environment}
        with _imported_with("infra.runtime.sentinel_app", variables) as module, _modal_output():
            module.app.deploy(environment_name=spec.modal_environment)
        return {"app_id": module.app.app_id, "app_name": spec.app_name}

    @_explained
    def apps(self, environment: str) -> list[App]:
        """Every App of a Modal Environment, the recently stopped included."""
        return [App(**app) for app in modal_rpc.apps(environment)]

    @_explained
    def stop_app(self, app_id: str) -> None:
        """Stop the App (`modal app stop`): its containers end, it takes no requests, its name no longer resolves."""
        modal.App.lookup(app_id).stop()

    @_explained
    def app_logs(self, app_id: str, since: datetime | None, until: datetime | None, tail: int) -> list[dict]:
        """The App's log lines, oldest first: from `since` to `until` (default now), or else its last `tail` lines
        (`App.logs.fetch` / `App.logs.tail`, what `modal app logs` calls)."""
        logs = modal.App.lookup(app_id).logs
        entries = logs.fetch(since=since, until=until) if since is not None else logs.tail(tail)
        return [_log_line(entry) for entry in entries]

    def follow_logs(self, app_id: str, idle_timeout: float | None) -> Iterator[dict]:
        """New log lines as they come (`App.logs.stream`, what `modal app logs --follow` does) until the App is done,
        no line came for `idle_timeout` seconds, or Ctrl-C."""
        with _problems_explained():
            self._reach()
            for entry in modal.App.lookup(app_id).logs.stream(timeout=idle_timeout):
                yield _log_line(entry)

    @contextlib.contextmanager
    def ephemeral(self, d: Deployment) -> Iterator[str]:
        """Run the app without deploying it (what `modal run` does); stopped on exit, Ctrl-C included. Modal's run
        context swallows the KeyboardInterrupt after stopping; it is raised again, so the caller stops too."""
        interrupted = False
        self._reach()
        with _problems_explained(), _module_for("infra.runtime.app", d) as module, _modal_output():
            with module.app.run(environment_name=d.modal.environment):
                try:
                    yield module.SGLangServer.get_url()
                except KeyboardInterrupt:
                    interrupted = True
                    raise
        if interrupted:
            raise KeyboardInterrupt


Remote = ModalRemote  # what stages are given (tests too: the real one, in front of tests/fakes/modal_wire)
