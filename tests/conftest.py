"""Shared fixtures: real local servers, real subprocesses, a repo-shaped temp config."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"
STANDIN = FAKES / "sglang_standin"


def pytest_configure(config):
    """Byte-compile the project once, before the workers start (in the controller, or in the only process).

    The suite starts several hundred interpreters (`invoke ...`, stand-in servers, jobs). Where PYTHONDONTWRITEBYTECODE
    is set, as on this workplace's machines, none of them writes the .pyc it compiles, so each recompiled every project
    module it imported: ~0.1 s of CPU per `invoke plan`, more for the tasks that import the Modal side. compileall
    writes them whatever that variable says; they are ignored by git."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import compileall

    for folder in ("infra", "stages", "tools", "tests", "benchmarks"):
        compileall.compile_dir(REPO / folder, quiet=1)
    compileall.compile_file(REPO / "tasks.py", quiet=1)


# prod bakes every promotion for minutes of real time (environments/prod.toml, docs/bake.md). The suite's world
# turns it off, with the reason its promotions record, as a person would; tests/test_bake.py bakes on a clock it
# controls. Every way the suite runs a command (in this process, `Cli`, `run_in_process`, tests/wire.py) gets it.
NO_BAKE = {"INFRA_RELEASE__BAKE_MINUTES": "0",
           "INFRA_RELEASE__BAKE_OFF_REASON": "the test suite's world (tests/test_bake.py bakes on its own clock)"}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test sees the developer's INFRA_* or MODAL_* variables, or writes local state into the repo."""
    for name in list(os.environ):
        if name.startswith(("INFRA_", "MODAL_", "HF_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INFRA_STATE_DIR", str(tmp_path / "state"))
    for name, value in NO_BAKE.items():
        monkeypatch.setenv(name, value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standin_env(**fake) -> dict[str, str]:
    """Environment for a subprocess that runs the stand-in `sglang` package with this venv's Python."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(STANDIN), str(REPO)])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["FAKE_SGLANG"] = json.dumps(fake)
    return env


def deployment(env: str = "dev", recipe: str = "qwen3-8b-low-latency", **changes):
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings

    return changed(resolve(load_settings(env), recipe), **changes)


def changed(d, **changes):
    """`d` with fields changed by their own names, wherever they live (the recipe, a part, the deployment)."""
    from pydantic import BaseModel

    for name, value in changes.items():
        if name in type(d).model_fields:
            d = d.model_copy(update={name: value})
            continue
        # The environment's parts before the recipe: a name in both (port, regions) is the environment's, as in resolve.
        for part in sorted(type(d).model_fields, key=lambda f: f == "recipe"):
            holder = getattr(d, part)
            if isinstance(holder, BaseModel) and name in type(holder).model_fields:
                d = d.model_copy(update={part: holder.model_copy(update={name: value})})
                break
        else:
            raise AttributeError(f"no field {name!r} in a Deployment")
    return d


@pytest.fixture
def subreaper():
    """Make this test process the reaper of orphaned descendants, so leftovers can be counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def process_state(pid: int) -> str | None:
    """'R', 'S', 'Z'... from the process table, or None when the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and process_state(int(entry.name)) not in (None, "Z"):
            found.append(int(entry.name))
    return found


class RunningServer:
    def __init__(self, args: list[str], record: Path):
        self.port = free_port()
        self.record_path = record
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKES / "openai_server.py"), "--port", str(self.port), "--record", str(record), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        line = self.proc.stdout.readline().decode()
        assert line.startswith("LISTENING"), line
        self.url = f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict]:
        if not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self.proc.stdout.close()


@pytest.fixture
def fake_server(tmp_path):
    """Start a fake OpenAI server with the given options: fake_server("--ttft", "0.1")."""
    servers = []

    def start(*args: str) -> RunningServer:
        server = RunningServer(list(args), tmp_path / f"requests-{len(servers)}.jsonl")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    return predicate()


def project_copy(tmp_path: Path) -> Path:
    """A clean git checkout of this project's code, as a team member's would be (whatever state ours is in)."""
    tree = tmp_path / "project"
    if tree.exists():
        return tree
    # The tests too: the acceptance suite's image mounts tests/gpu from the checkout (infra/runtime/spec.TEST_SOURCES),
    # and with a `tests` package in the copy, all of it must be there for the CLI's imports of tests.fakes.
    for part in ("infra", "stages", "tools", "environments", ".github", "tests"):
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "benchmarks", tree / "benchmarks", ignore=shutil.ignore_patterns("__pycache__", "results"))
    for part in ("tasks.py", "pyproject.toml"):
        shutil.copy(REPO / part, tree / part)
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q", "-m", "release A"]):
        subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True)
    return tree


class Cli:
    """Runs `python -m invoke ...` as a user would, in a clean checkout of this project, with the real ModalRemote in
    front of the fake control plane (`wire`, tests/wire.py): what reached Modal is `wire.rpcs()`."""

    def __init__(self, tmp_path: Path, wire=None):
        self.tmp = tmp_path
        self.wire = wire
        self.env: dict[str, str] = {}
        self.credentials = True  # False: no Modal token in the command's environment

    @property
    def project(self) -> Path:
        return project_copy(self.tmp)

    def __call__(self, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=self.project, env=self.environ(**extra_env),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )

    def in_process(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        """The same command in this process (run_in_process): no new interpreter, so a test that runs many commands
        is not a minute of interpreter starts on a loaded machine. Not thread-safe."""
        return run_in_process(list(args), self.environ(**extra_env), self.project)

    def rpcs(self) -> list[str]:
        """The RPCs that reached the (fake) control plane, in order."""
        return self.wire.rpcs() if self.wire else []

    def environ(self, **extra_env: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_", "HF_"))}
        environ |= {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join([str(self.project), str(REPO)]),  # our tests.fakes from REPO
            "INFRA_STATE_DIR": str(self.tmp / "state"),
        } | NO_BAKE
        return environ | self.modal_environ() | self.env | extra_env

    def modal_environ(self) -> dict[str, str]:
        """The control plane's address, a token (unless `credentials` is False) and an empty Modal config file; no
        proxy-auth pair (MODAL_KEY, MODAL_SECRET): a test that needs one sets it."""
        found = self.wire.environ(self.tmp / "modal.toml") if self.wire else {}
        return {k: v for k, v in found.items() if self.credentials or k not in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}


def run_in_process(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`invoke ARGS` in this process, as the CLI would run it (same tasks, same error handling), with `env` on top of
    a clean environment and `cwd` as the working folder: a fraction of a second instead of a new interpreter. For
    commands that need neither another checkout nor the real Modal client; not thread-safe (it sets os.environ)."""
    import contextlib
    import io

    from invoke import Collection, Program

    import tasks

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.clear()
        os.environ.update({k: v for k, v in saved_env.items()
                           if not k.startswith(("INFRA_", "MODAL_", "HF_"))} | NO_BAKE
                          | env)
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                Program(namespace=Collection.from_module(tasks), binary="invoke").run(["invoke", *args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["invoke", *args], code, out.getvalue(), err.getvalue())


# The fake Modal control plane and the real `modal` client in front of it (tests/wire.py). A GPU machine
# that runs only tests/gpu may lack the Modal client: there the wire fixtures are simply not defined.
try:
    import modal_proto  # noqa: F401
except ImportError:
    pass
else:
    from tests.wire import cli, wire, wire_cli, wire_session  # noqa: E402,F401  (fixtures)
