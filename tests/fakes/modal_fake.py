"""An in-process stand-in for the Modal boundary (infra/runtime/remote.py) that records every call.

Being retired: every other test runs the real ModalRemote in front of the wire fake (tests/wire.py). Left for
tests/test_promotion_gate.py alone, whose timing floors need the servers' own streams (the wire's in-process Server
proxy passes a stream on in bursts under load).

Everything Modal would keep is kept on local disk under one root, so separate
processes (the CLI in a subprocess, two concurrent promotions) share it:

    <root>/volumes/<modal env>/<volume>/...   Volumes as real directories
    <root>/apps/<modal env>/<app>.json         deployed versions (Modal keeps app history)
    <root>/locks/<modal env>/<name>            Dict entries created only if absent (O_EXCL)
    <root>/starts/<modal env>/<bucket>/<n>.json  start records (the `sglang-starts` Dict), the newest STARTS_KEPT
    <root>/calls.jsonl                         every call, in order

The download and compile jobs run their real bodies (infra/runtime/weights.py against a
local Hub when `hub` is set, infra/runtime/kernels.py against the stand-in sglang package)
with the Volume directories as their caches. Endpoint URLs point at a real local
server (`endpoint`). Faults are injected per method with `fail`.

Configured by arguments.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from infra.runtime import spec
from infra.runtime.deployment import Deployment
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH


class FakeModal:
    def __init__(
        self,
        root: str | Path,
        *,
        endpoint: str | None = None,
        hub: str | None = None,
        secrets: list[tuple[str, str]] | None = None,
        fail: dict[str, str] | None = None,
        credentials: bool = True,
        compile_env: dict[str, str] | None = None,
        gpu_suite: dict[str, str] | None = None,
    ):
        self.root = Path(root)
        self.endpoint = endpoint or "http://127.0.0.1:9"
        self.hub = hub
        self.secrets = {tuple(s) for s in (secrets or [])}
        self.fail = fail if fail is not None else {}
        self.credentials = credentials
        self.compile_env = compile_env
        # The acceptance suite's Function runs real pytest here: {"project": folder, "suite": path in it} (default:
        # this repository's tests/gpu, which skips every test on a machine without a GPU).
        self.gpu_suite = gpu_suite or {}
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def calls_path(self) -> Path:
        return self.root / "calls.jsonl"

    def calls(self) -> list[dict]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines()]

    def call_names(self) -> list[str]:
        return [c["method"] for c in self.calls()]

    def _call(self, method: str, **args) -> None:
        with self.calls_path.open("a") as f:
            f.write(json.dumps({"method": method, "args": args, "t": time.time()}, default=str) + "\n")
        if message := self.fail.get(method):
            raise RuntimeError(message)

    def volume_dir(self, environment: str, volume: str) -> Path:
        path = self.root / "volumes" / environment / volume
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _app_file(self, d: Deployment) -> Path:
        return self.root / "apps" / d.modal.environment / f"{d.app_name}.json"

    def versions(self, d: Deployment) -> list[dict]:
        path = self._app_file(d)
        return json.loads(path.read_text()) if path.exists() else []

    def _save_versions(self, d: Deployment, versions: list[dict]) -> None:
        path = self._app_file(d)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(versions, indent=1))

    # ------------------------------------------------------------------ the Remote protocol

    def require_credentials(self) -> None:
        if not self.credentials:
            from infra.runtime.remote import MissingCredentials

            raise MissingCredentials()

    def build_image(self, d: Deployment) -> str:
        self._call("build_image", app=d.app_name, image=d.recipe.sglang_image, environment=d.modal.environment)
        digest = hashlib.sha256(json.dumps(spec.server_image(d)).encode()).hexdigest()
        return f"im-{digest[:20]}"

    def run_download(self, d: Deployment) -> list[dict]:
        self._call("run_download", app=d.app_name, environment=d.modal.environment, model=d.recipe.model)
        from infra.runtime import weights

        cache = self.volume_dir(d.modal.cache_environment, d.caches.weights_volume)
        wanted = d.recipe.repositories()
        if self.hub:
            return [weights.as_dict(weights.download(r, rev, cache, endpoint=self.hub)) for r, rev in wanted]
        # Without a Hub: behave like a download that wrote markers for synthetic commits.
        results = []
        for repo, revision in wanted:
            commit = revision if weights.COMMIT_RE.match(revision) else hashlib.sha1(repo.encode()).hexdigest()
            marker = weights.marker_path(cache, repo, commit)
            skipped = marker.exists()
            if not skipped:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps({"repo": repo, "commit": commit, "files": ["config.json"],
                                              "size_bytes": 1000}))
                if revision != commit:
                    ref = weights.ref_path(cache, repo, revision)
                    ref.parent.mkdir(parents=True, exist_ok=True)
                    ref.write_text(commit)
            results.append({"repo": repo, "requested": revision, "commit": commit,
                            "files": ["config.json"], "size_bytes": 1000, "skipped": skipped})
        return results

    def run_compile(self, d: Deployment, force: bool = False) -> dict:
        self._call("run_compile", app=d.app_name, environment=d.modal.environment, gpu=d.recipe.gpu, force=force)
        from infra.runtime import kernels

        cache = self.volume_dir(d.modal.cache_environment, d.caches.kernels_volume)
        # The container's local disk, and any free port: host and port change no compiled shape.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return kernels.compile_kernels(d, cache, env=self.compile_env, local_root=self.root / "compile-local",
                                       port=port,
                                       force=force)

    def run_gpu_test(self, d: Deployment, shape: str) -> dict:
        self._call("run_gpu_test", app=d.app_name, environment=d.modal.environment, gpu=d.recipe.gpu, shape=shape)
        from infra.runtime import acceptance
        from infra.runtime.deployment import DEPLOYMENT_VARIABLE

        project = self.gpu_suite.get("project") or str(Path(__file__).resolve().parents[2])
        env = dict(os.environ) | {DEPLOYMENT_VARIABLE: d.to_json()}
        suite = self.gpu_suite.get("suite", acceptance.SUITE)
        return acceptance.run_suite(shape, d.recipe.name, project=project, suite=suite, env=env).model_dump()

    def deploy(self, d: Deployment, tag: str) -> dict:
        self._call("deploy", app=d.app_name, environment=d.modal.environment, tag=tag,
                   min_containers=d.scaling.min_containers, compute_region=d.placement.compute_region)
        versions = self.versions(d)
        version = len(versions) + 1
        versions.insert(0, {"version": version, "tag": tag, "deployment": d.to_dict(), "deployed_at": time.time()})
        self._save_versions(d, versions)
        self._app_file(d).with_suffix(".stopped").unlink(missing_ok=True)  # a deploy starts a stopped app again
        self._reset_autoscaler(d)
        return {"app_id": self._app_id(d.app_name), "url": self.endpoint, "version": version,
                "changed": True}

    def server_url(self, d: Deployment) -> str | None:
        self._call("server_url", app=d.app_name, environment=d.modal.environment)
        return self.endpoint if self.versions(d) else None

    def history(self, d: Deployment) -> list[dict]:
        self._call("history", app=d.app_name, environment=d.modal.environment)
        return [{"version": v["version"], "tag": v["tag"], "deployed_at": v["deployed_at"]} for v in self.versions(d)]

    def rollback(self, d: Deployment, version: int | None) -> None:
        self._call("rollback", app=d.app_name, environment=d.modal.environment, version=version)
        versions = self.versions(d)
        if len(versions) < 2 and version is None:
            raise RuntimeError(f"App '{d.app_name}' has no previous version to roll back to")
        target = versions[1] if version is None else next(v for v in versions if v["version"] == version)
        # Modal records a rollback as a new version with the old definition.
        versions.insert(0, {**target, "version": len(versions) + 1, "rollback_of": target["version"],
                            "deployed_at": time.time()})
        self._save_versions(d, versions)
        self._reset_autoscaler(d)

    def update_autoscaler(self, d: Deployment, **settings: int | None) -> dict:
        """As Modal: the given settings override the deployed ones until the next deploy or rollback."""
        self._call("update_autoscaler", app=d.app_name, environment=d.modal.environment, **settings)
        path = self._app_file(d).with_suffix(".autoscaler.json")
        overrides = (json.loads(path.read_text()) if path.exists() else {}) | settings
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(overrides))
        return self._in_force(d)

    def autoscaler(self, d: Deployment) -> dict | None:
        self._call("autoscaler", app=d.app_name, environment=d.modal.environment)
        return self._in_force(d) if self.versions(d) else None

    def _in_force(self, d: Deployment) -> dict:
        path = self._app_file(d).with_suffix(".autoscaler.json")
        overrides = json.loads(path.read_text()) if path.exists() else {}
        deployed = (self.versions(d) or [{}])[0].get("deployment", {}).get("scaling") or vars(d.scaling)
        in_force = {k: deployed.get(k) for k in ("min_containers", "max_containers", "buffer_containers")} | overrides
        return {"min_containers": in_force["min_containers"] or 0, "max_containers": in_force["max_containers"],
                "buffer_containers": in_force["buffer_containers"] or 0}

    def _reset_autoscaler(self, d: Deployment) -> None:
        """A deploy or rollback puts the deployed settings back (Modal drops run-time overrides)."""
        self._app_file(d).with_suffix(".autoscaler.json").unlink(missing_ok=True)

    def read_file(self, environment: str, volume: str, path: str) -> bytes | None:
        self._call("read_file", environment=environment, volume=volume, path=path)
        target = self.volume_dir(environment, volume) / path
        return target.read_bytes() if target.exists() else None

    def write_file(self, environment: str, volume: str, path: str, data: bytes) -> None:
        self._call("write_file", environment=environment, volume=volume, path=path, size=len(data))
        target = self.volume_dir(environment, volume) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # readers see the old or the new document

    def acquire_lock(self, environment: str, name: str, holder: str, ttl: float) -> dict | None:
        self._call("acquire_lock", environment=environment, name=name, holder=holder)
        path = self.root / "locks" / environment / name.replace("/", "__")
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"holder": holder, "since": time.time(), "expires": time.time() + ttl}
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return json.loads(path.read_text() or "{}")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(entry))
        return None

    def release_lock(self, environment: str, name: str, holder: str) -> None:
        self._call("release_lock", environment=environment, name=name, holder=holder)
        path = self.root / "locks" / environment / name.replace("/", "__")
        if path.exists() and json.loads(path.read_text() or "{}").get("holder") == holder:
            path.unlink()

    def _starts_dir(self, environment: str, bucket: str) -> Path:
        return self.root / "starts" / environment / bucket.replace("/", "__")

    def record_start(self, environment: str, bucket: str, record: dict) -> int:
        from infra.runtime.remote import STARTS_KEPT

        self._call("record_start", environment=environment, bucket=bucket, outcome=record.get("outcome"))
        folder = self._starts_dir(environment, bucket)
        folder.mkdir(parents=True, exist_ok=True)
        n = max((int(p.stem) for p in folder.glob("*.json")), default=0) + 1
        written = folder / f".{os.getpid()}-{time.monotonic_ns()}.tmp"
        written.write_text(json.dumps(record))
        while True:  # created only if absent, whole, as the Dict's put-if-absent
            try:
                os.link(written, folder / f"{n}.json")
                break
            except FileExistsError:
                n += 1
        written.unlink()
        (folder / f"{n - STARTS_KEPT}.json").unlink(missing_ok=True)
        return n

    def recent_starts(self, environment: str, bucket: str) -> list[dict]:
        self._call("recent_starts", environment=environment, bucket=bucket)
        folder = self._starts_dir(environment, bucket)
        paths = sorted(folder.glob("*.json"), key=lambda p: int(p.stem), reverse=True) if folder.is_dir() else []
        return [json.loads(p.read_text()) for p in paths]

    def secret_exists(self, environment: str, name: str) -> bool:
        self._call("secret_exists", environment=environment, name=name)
        return (environment, name) in self.secrets

    # ------------------------------------------------------------------ the sentinel

    def replicas(self, environment: str, app_name: str) -> int | None:
        """Replicas up: `set_replicas`'s per app name (default 1) once the app was deployed, else None."""
        self._call("replicas", environment=environment, app=app_name)
        if not (self.root / "apps" / environment / f"{app_name}.json").exists():
            return None
        return int(self._config().get("replicas", {}).get(app_name, 1))

    def endpoint_of(self, environment: str, app_name: str) -> str | None:
        self._call("endpoint_of", environment=environment, app=app_name)
        return self.endpoint if (self.root / "apps" / environment / f"{app_name}.json").exists() else None

    def _ring_path(self, environment: str, key: str) -> Path:
        return self.root / "ring" / environment / (key.replace("/", "__") + ".json")

    def read_ring(self, environment: str, keys) -> dict:
        self._call("read_ring", environment=environment, keys=len(keys))
        return {k: json.loads(p.read_text()) for k in keys if (p := self._ring_path(environment, k)).exists()}

    def write_ring(self, environment: str, key: str, value: dict) -> None:
        self._call("write_ring", environment=environment, key=key)
        path = self._ring_path(environment, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))

    def deploy_sentinel(self, spec) -> dict:
        self._call("deploy_sentinel", app=spec.app_name, environment=spec.modal_environment,
                   interval=spec.settings.interval_seconds, recipes=[t.recipe for t in spec.targets])
        path = self.root / "sentinels" / spec.modal_environment / f"{spec.app_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec.to_json())
        return {"app_id": f"ap-{spec.app_name}", "app_name": spec.app_name}

    # ------------------------------------------------------------------ apps, logs, stop

    def _app_id(self, app_name: str) -> str:
        return f"ap-{hashlib.sha1(app_name.encode()).hexdigest()[:12]}"

    def apps(self, environment: str) -> list[dict]:
        """The deployed apps of `<root>/apps/<env>/`, stopped where `stop_app` left a `.stopped` file beside them."""
        self._call("apps", environment=environment)
        folder = self.root / "apps" / environment
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            stopped = path.with_suffix(".stopped")
            found.append({"app_id": self._app_id(path.stem), "name": path.stem,
                          "state": "stopped" if stopped.exists() else "deployed", "created_at": path.stat().st_mtime,
                          "stopped_at": float(stopped.read_text()) if stopped.exists() else None, "running": 0})
        return found

    def stop_app(self, app_id: str) -> None:
        self._call("stop_app", app_id=app_id)
        for path in (self.root / "apps").glob("*/*.json"):
            if self._app_id(path.stem) == app_id:
                path.with_suffix(".stopped").write_text(str(time.time()))

    def _log_lines(self, app_id: str) -> list[dict]:
        path = self.root / "logs" / f"{app_id}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def app_logs(self, app_id: str, since, until, tail: int) -> list[dict]:
        self._call("app_logs", app_id=app_id, since=since, until=until, tail=tail)
        lines = self._log_lines(app_id)
        if since is not None:
            end = (until.timestamp() if until else time.time())
            return [line for line in lines if since.timestamp() <= line["at"] < end]
        return lines[-tail:]

    def follow_logs(self, app_id: str, idle_timeout: float | None) -> Iterator[dict]:
        self._call("follow_logs", app_id=app_id, idle_timeout=idle_timeout)
        yield from self._log_lines(app_id)

    def write_log(self, app_name: str, text: str, *, at: float | None = None, source: str = "stdout") -> None:
        """A line the app's container wrote (what `app_logs` reads back)."""
        path = self.root / "logs" / f"{self._app_id(app_name)}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"at": time.time() if at is None else at, "source": source, "text": text,
                                "container": "ta-fake"}) + "\n")

    def _config(self) -> dict:
        path = self.root / "config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def set_replicas(self, app_name: str, n: int) -> None:
        data = self._config()
        data.setdefault("replicas", {})[app_name] = n
        (self.root / "config.json").write_text(json.dumps(data))

    # ------------------------------------------------------------------ billing

    @property
    def _billing_path(self) -> Path:
        return self.root / "billing.json"

    def set_billing(self, *, rates: dict | None = None, rows: dict[str, list[dict]] | None = None) -> None:
        """What `billing_rates` answers ({"workspace", "rates": {name: text}}) and `billing_report`'s rows per Modal
        Environment (each a dict as ModalRemote.billing_report returns them)."""
        data = json.loads(self._billing_path.read_text()) if self._billing_path.exists() else {}
        data |= {k: v for k, v in (("rates", rates), ("rows", rows)) if v is not None}
        self._billing_path.write_text(json.dumps(data))

    def _billing(self) -> dict:
        return json.loads(self._billing_path.read_text()) if self._billing_path.exists() else {}

    def billing_rates(self) -> dict:
        """Modal's published per-second prices unless a test set others (infra/control/costs.py's table)."""
        self._call("billing_rates")
        from infra.control.costs import PER_SECOND

        return self._billing().get("rates") or {"workspace": "fake",
                                                "rates": {k: f"{v:.8f}" for k, v in PER_SECOND.items()}}

    def billing_report(self, environment: str, start, end, tag_names) -> list[dict]:
        self._call("billing_report", environment=environment, start=start.isoformat(), end=end.isoformat(),
                   tag_names=list(tag_names))
        rows = self._billing().get("rows", {}).get(environment, [])
        return [r | {"tags": {k: v for k, v in r.get("tags", {}).items() if k in tag_names or "*" in tag_names}}
                for r in rows if start.timestamp() <= r["interval_start"] < end.timestamp()]

    @contextlib.contextmanager
    def ephemeral(self, d: Deployment) -> Iterator[str]:
        self._call("ephemeral_start", app=d.app_name, environment=d.modal.environment)
        try:
            yield self.endpoint
        finally:
            self._call("ephemeral_stop", app=d.app_name, environment=d.modal.environment)


__all__ = ["FakeModal", "HF_CACHE_PATH", "KERNELS_PATH"]
