"""The network boundary: every call that reaches Modal goes through `ModalRemote`, and nothing else does.

Stages receive a `Remote` and never import the SDK's network calls themselves, so
tests hand them `tests/fakes/modal_fake.FakeModal` (same methods, same
signatures, enforced by a test), which records every call and keeps Volumes,
Dicts and app versions on local disk. The stage logic under test is the real one.

Modal's SDK is imported lazily here so that `plan` and `--help` stay fast and
work without credentials.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Protocol

from infra.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.errors import UserError
from infra.secrets import scrub
from infra.spec import SERVER_NAME

LOCKS_DICT = "sglang-release-locks"  # a Modal Dict: atomic create-if-absent, good for short-lived locks


class Remote(Protocol):
    def require_credentials(self) -> None: ...
    def build_image(self, d: Deployment) -> str: ...
    def run_download(self, d: Deployment) -> list[dict]: ...
    def run_compile(self, d: Deployment) -> dict: ...
    def deploy(self, d: Deployment, tag: str) -> dict: ...
    def server_url(self, d: Deployment) -> str | None: ...
    def history(self, d: Deployment) -> list[dict]: ...
    def rollback(self, d: Deployment, version: int | None) -> None: ...
    def update_autoscaler(self, d: Deployment, min_containers: int) -> dict: ...
    def read_file(self, environment: str, volume: str, path: str) -> bytes | None: ...
    def write_file(self, environment: str, volume: str, path: str, data: bytes) -> None: ...
    def acquire_lock(self, environment: str, name: str, holder: str, ttl: float) -> dict | None: ...
    def release_lock(self, environment: str, name: str, holder: str) -> None: ...
    def secret_exists(self, environment: str, name: str) -> bool: ...
    def ephemeral(self, d: Deployment) -> contextlib.AbstractContextManager[str]: ...


class MissingCredentials(UserError):
    pass


def parse_history(text: str) -> list[dict]:
    """`modal app history --json` rows (snake_case keys of its table: version, time_deployed, tag...)."""
    return [
        {"version": int(str(row["version"]).lstrip("v")), "tag": row.get("tag") or "", "deployed_at": row.get("time_deployed")}
        for row in json.loads(text)
    ]


@contextlib.contextmanager
def _module_for(module: str, d: Deployment) -> Iterator[object]:
    """Import infra.app / infra.jobs for exactly this deployment, as the container will."""
    saved = {k: os.environ.get(k) for k in (DEPLOYMENT_VARIABLE, "MODAL_ENVIRONMENT")}
    os.environ[DEPLOYMENT_VARIABLE] = d.to_json()
    os.environ["MODAL_ENVIRONMENT"] = d.modal.environment
    sys.modules.pop(module, None)
    try:
        yield importlib.import_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ModalRemote:
    """Talks to Modal with the SDK (and, for app history and rollback, Modal's CLI)."""

    def require_credentials(self) -> None:
        from modal.config import config

        if not (config.get("token_id") and config.get("token_secret")):
            raise MissingCredentials(
                "Modal credentials missing: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (CI: repository secrets) "
                "or run `modal token new` on a laptop; `invoke plan` works without them"
            )

    def build_image(self, d: Deployment) -> str:
        import modal

        from infra import modal_objects, spec

        builder = modal.App.lookup(f"{d.modal.app_name}-builds", environment_name=d.modal.environment, create_if_missing=True)
        with modal.enable_output():
            image = modal_objects.image(spec.server_image(d)).build(builder)
        return image.object_id

    def run_download(self, d: Deployment) -> list[dict]:
        import modal

        with _module_for("infra.jobs", d) as jobs, modal.enable_output():
            with jobs.app.run(environment_name=d.modal.environment):
                return jobs.download_weights.remote()

    def run_compile(self, d: Deployment) -> dict:
        import modal

        with _module_for("infra.jobs", d) as jobs, modal.enable_output():
            with jobs.app.run(environment_name=d.modal.environment):
                return jobs.compile_kernels.remote()

    def deploy(self, d: Deployment, tag: str) -> dict:
        import modal

        with _module_for("infra.app", d) as module, modal.enable_output():
            module.app.deploy(environment_name=d.modal.environment, tag=tag)
            url = module.SGLangServer.get_url()
            app_id = module.app.app_id
        latest = self.history(d)[:1]
        return {"app_id": app_id, "url": url, "version": latest[0]["version"] if latest else None}

    def server_url(self, d: Deployment) -> str | None:
        import modal

        try:
            return modal.Server.from_name(d.modal.app_name, SERVER_NAME, environment_name=d.modal.environment).get_url()
        except modal.exception.NotFoundError:
            return None

    def history(self, d: Deployment) -> list[dict]:
        """Newest first: [{"version": 3, "tag": "...", "deployed_at": "..."}]."""
        return parse_history(self._cli("app", "history", d.modal.app_name, "--env", d.modal.environment, "--json"))

    def rollback(self, d: Deployment, version: int | None) -> None:
        args = ["app", "rollback", d.modal.app_name] + ([f"v{version}"] if version else []) + ["--env", d.modal.environment]
        self._cli(*args)

    def update_autoscaler(self, d: Deployment, min_containers: int) -> dict:
        import modal

        server = modal.Server.from_name(d.modal.app_name, SERVER_NAME, environment_name=d.modal.environment)
        settings = server.update_autoscaler(min_containers=min_containers)
        return {"min_containers": getattr(settings, "min_containers", min_containers)}

    def read_file(self, environment: str, volume: str, path: str) -> bytes | None:
        import modal

        vol = modal.Volume.from_name(volume, environment_name=environment, create_if_missing=True)
        try:
            return b"".join(vol.read_file(path))
        except (modal.exception.NotFoundError, FileNotFoundError):
            return None

    def write_file(self, environment: str, volume: str, path: str, data: bytes) -> None:
        """Replaces the file in one batch: readers see the old or the new content, never a part."""
        import modal

        vol = modal.Volume.from_name(volume, environment_name=environment, create_if_missing=True)
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), path)

    def acquire_lock(self, environment: str, name: str, holder: str, ttl: float) -> dict | None:
        import modal

        locks = modal.Dict.from_name(LOCKS_DICT, environment_name=environment, create_if_missing=True)
        entry = {"holder": holder, "since": time.time(), "expires": time.time() + ttl}
        if locks.put(name, entry, skip_if_exists=True):
            return None
        current = locks.get(name)
        if current and current.get("expires", 0) < time.time():  # a crashed holder's lock expires
            locks.pop(name, None)
            if locks.put(name, entry, skip_if_exists=True):
                return None
            current = locks.get(name)
        return current

    def release_lock(self, environment: str, name: str, holder: str) -> None:
        import modal

        locks = modal.Dict.from_name(LOCKS_DICT, environment_name=environment, create_if_missing=True)
        current = locks.get(name)
        if current and current.get("holder") == holder:
            locks.pop(name, None)

    def secret_exists(self, environment: str, name: str) -> bool:
        import modal

        try:
            modal.Secret.from_name(name, environment_name=environment).hydrate()
            return True
        except modal.exception.NotFoundError:
            return False

    @contextlib.contextmanager
    def ephemeral(self, d: Deployment) -> Iterator[str]:
        """Run the app without deploying it (what `modal run` does); stopped on exit, Ctrl-C included."""
        import modal

        with _module_for("infra.app", d) as module, modal.enable_output():
            with module.app.run(environment_name=d.modal.environment):
                yield module.SGLangServer.get_url()

    def _cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "modal", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"`modal {' '.join(args)}` failed: {scrub(done.stderr.strip() or done.stdout.strip())}")
        return done.stdout
