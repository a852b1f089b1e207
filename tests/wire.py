"""Fixtures that put the real `modal` client in front of the fake control plane (tests/fakes/modal_wire).

`wire_session` starts, once per test session, the fake control plane, a local Hugging Face
Hub serving the recipes' repositories at their pinned commits, and a local OpenAI-compatible
server that deployed Servers forward to. `wire` gives each test a fresh workspace on that
server and points this process's `modal` client at it (token, server URL, an empty config
file, FORCE_COLOR=1 and TTY_COMPATIBLE=1, as many CI systems set them); `wire_cli` runs
`python -m invoke ...` in a clean project copy with the same environment and the REAL
`ModalRemote`. Every test fails if the client called an RPC the fake
does not implement.

The fake runs the job bodies itself (`RUNNERS`), with the Function's Volumes as caches:
the same calls infra/runtime/jobs.py makes in the container, minus the Volume commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.runtime import kernels, weights
from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from tests.conftest import NO_BAKE, REPO, RunningServer, free_port, project_copy, standin_env
from tests.fakes.hub_server import FakeRepo, HubServer, make_repo
from tests.fakes.modal_wire import JobCall, ModalWire

COLOUR = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
RECIPES = ("qwen3-8b-low-latency", "qwen3.6-35b-vlm")
WEIGHT_BYTES = 64 * 1024  # small "weights": the download path is what is tested, not throughput


def recipe_repositories() -> list[FakeRepo]:
    """Every repository the recipes name, with its pinned commit as `main` (or a made-up commit if unpinned)."""
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings

    wanted: dict[str, str] = {}
    for recipe in RECIPES:
        for repo, revision in resolve(load_settings("dev", recipe), recipe).recipe.repositories():
            wanted.setdefault(repo, revision)
    repos = []
    for repo_id, revision in sorted(wanted.items()):
        made = make_repo(repo_id, big_file_size=WEIGHT_BYTES)
        if weights.COMMIT_RE.match(revision):  # serve the files under the commit the recipe pins
            made = FakeRepo(repo_id, {revision: made.files()}, {"main": revision})
        repos.append(made)
    return repos


def download_runner(hub_url: str):
    """infra/runtime/jobs.py `download_weights`, against the local Hub, into the weights Volume's directory."""

    def run(job: JobCall) -> list[dict]:
        d = Deployment.from_json(job.environ[DEPLOYMENT_VARIABLE])
        cache = job.volumes[HF_CACHE_PATH]
        return [weights.as_dict(weights.download(repo, revision, cache, endpoint=hub_url,
                                                 token=job.environ.get("HF_TOKEN")))
                for repo, revision in d.recipe.repositories()]

    return run


def compile_runner(job: JobCall, **standin: str) -> dict:
    """infra/runtime/jobs.py `compile_kernels`, with the stand-in SGLang (its variables: `standin`, e.g.
    FAKE_COMPILE_FAIL="3"), into the kernel Volume's directory."""
    d = Deployment.from_json(job.environ[DEPLOYMENT_VARIABLE])
    # The container's local disk (a folder beside the Volume's), and any free port: no compiled shape depends on them.
    local = job.volumes[KERNELS_PATH].parent / f"{job.volumes[KERNELS_PATH].name}-local"
    return kernels.compile_kernels(d, job.volumes[KERNELS_PATH], env=standin_env() | job.environ | standin,
                                   local_root=local,
                                   port=free_port(), force=job.kwargs.get("force", False))


# What builds an image, runs a job, deploys, rolls back, scales or writes a file: a command refused for bad input calls
# none of these (a lock taken and released, a read, is not a change).
MUTATING_RPCS = frozenset({"ImageGetOrCreate", "FunctionMap", "AppPublish", "AppRollback",
                           "FunctionUpdateSchedulingParams", "VolumePutFiles", "VolumePutFiles2"})


def client_environ(wire: ModalWire, folder: Path) -> dict[str, str]:
    """What points a real `modal` client (a test's, a command's) at `wire`: its URL, its token, an empty config file in
    `folder`, the proxy-auth pair, and colour forced as many CI systems force it."""
    return wire.environ(folder / "modal.toml") | COLOUR | {
        "MODAL_KEY": wire.proxy_token[0], "MODAL_SECRET": wire.proxy_token[1]}


def stage_world(wire: ModalWire, upstream: str) -> None:
    """The world the stage tests deploy staging and prod into: every Server forwards to `upstream` unless a test says
    otherwise, and both environments have the Modal Secret their settings name (secrets.hf_token_secret)."""
    wire.default_upstream = upstream
    for env in ("staging", "prod"):
        wire.create_secret(env, "huggingface-secret", {"HF_TOKEN": "hf_" + "x" * 30})


@dataclass
class WireSession:
    wire: ModalWire
    hub: HubServer
    upstream: RunningServer


@pytest.fixture(scope="session")
def wire_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("wire")
    hub = HubServer(*recipe_repositories()).start()
    upstream = RunningServer(["--tokens", "6"], root / "upstream-requests.jsonl")
    wire = ModalWire(root / "modal").start()
    try:
        yield WireSession(wire, hub, upstream)
    finally:
        wire.stop()
        upstream.stop()
        hub.stop()


@pytest.fixture
def wire(wire_session, tmp_path, monkeypatch) -> ModalWire:
    """A fresh fake workspace; this process's `modal` client points at it."""
    from modal._environments import ENVIRONMENT_CACHE
    from modal.client import _Client

    wire = wire_session.wire
    wire.reset(tmp_path / "modal-wire")
    wire.runners.update(download_weights=download_runner(wire_session.hub.url), compile_kernels=compile_runner)
    wire.default_upstream = wire_session.upstream.url
    wire.cli_environ = client_environ(wire, tmp_path)
    for name, value in wire.cli_environ.items():
        monkeypatch.setenv(name, value)
    _Client._set_env_client(None)  # a client from an earlier test may point elsewhere
    ENVIRONMENT_CACHE.clear()
    yield wire
    assert wire.unimplemented() == [], f"the client called RPCs the fake does not implement: {wire.unimplemented()}"


class WireCli:
    """`python -m invoke ...` in a clean checkout, with the real ModalRemote talking to the fake control plane."""

    def __init__(self, wire: ModalWire, tmp_path: Path):
        self.wire = wire
        self.tmp = tmp_path
        self.project = project_copy(tmp_path)

    def environ(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_", "HF_"))}
        return environ | {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join([str(self.project), str(REPO)]),
            "INFRA_STATE_DIR": str(self.tmp / "state"),
        } | NO_BAKE | self.wire.cli_environ | extra

    def __call__(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=self.project, env=self.environ(**extra),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )

    def json(self, *args: str, **extra: str) -> list[dict]:
        done = self(*args, "--json", **extra)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    def commit(self, message: str) -> None:
        """Commit everything changed in the project copy (plus a line in CHANGES), as a new release would."""
        (self.project / "CHANGES").write_text(message)
        for args in (["add", "-A"], ["-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q", "-m",
                                     message]):
            subprocess.run(["git", *args], cwd=self.project, check=True, capture_output=True)


@pytest.fixture
def cli(wire, tmp_path):
    """tests/conftest.Cli in front of this test's workspace."""
    from tests.conftest import Cli

    return Cli(tmp_path, wire)


@pytest.fixture
def wire_cli(wire, tmp_path) -> WireCli:
    return WireCli(wire, tmp_path)
