"""`invoke logs` and `invoke stop` at the wire: the real modal client's public log and stop API (App.lookup,
App.logs.tail/fetch/stream, App.stop) and its AppList, against the fake control plane's AppFetchLogs, AppCountLogs,
AppGetLogs, AppList and AppStop (tests/fakes/modal_wire/apps.py), with lines the test has the "containers" write."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from infra.control.resolve import resolve
from infra.control.settings import load_settings
from infra.perf.releases import ReleaseStore
from infra.runtime.errors import ConfigError, Refused
from infra.runtime.remote import MissingCredentials, ModalRemote
from stages import logs, status, stop
from stages.common import Context
from tests.conftest import wait_for

RECIPE = "qwen3-8b-low-latency"
APP = "sglang-qwen3-8b-low-latency"


def setup(env: str = "dev", **context):
    settings = load_settings(env, RECIPE)
    d = resolve(settings, RECIPE)
    return Context(settings=settings, remote=ModalRemote(), say=lambda _m: None, **context), d


def app_id(wire, env: str, name: str, *, live: bool | None = None) -> str:
    found = [a for a in wire.apps_named(env, name) if live is None or a["stopped"] is not live]
    return found[-1]["app_id"]


def test_logs_show_the_servers_and_the_last_jobs_lines_tail_and_since(wire):
    ctx, d = setup()
    ctx.remote.run_download(d)  # the jobs app: ephemeral, stopped when the job ended
    ctx.remote.deploy(d, "git-aaa")
    server, jobs = app_id(wire, "dev", APP), app_id(wire, "dev", f"{APP}-jobs")
    now = time.time()
    wire.log(jobs, "Fetching 4 files\n", "download complete\n", at=now - 600)
    wire.log(server, "server started\n", at=now - 3 * 3600)
    wire.log(server, "The server is fired up and ready to roll!\n", at=now - 60)
    wire.log(server, "POST /v1/chat/completions 200\n", at=now - 30, stderr=True)

    shown = logs.run(ctx, d, logs.Options())
    assert shown.status == "ran" and [a["role"] for a in shown.detail.apps] == ["server", "jobs"]
    server_block, jobs_block = shown.message.split("\n\n")
    assert server_block.splitlines()[0] == f"{APP} (server, deployed, {server}): 3 line(s), the last 100"
    assert [line[21:] for line in server_block.splitlines()[1:]] == [
        "stdout server started", "stdout The server is fired up and ready to roll!",
        "stderr POST /v1/chat/completions 200"]
    assert jobs_block.splitlines() == [
        f"{APP}-jobs (jobs, stopped, {jobs}): 2 line(s), the last 100",
        *(f"{datetime.fromtimestamp(now - 600 + i * 1e-6, UTC):%Y-%m-%d %H:%M:%S}Z stdout {text}"
          for i, text in enumerate(["Fetching 4 files", "download complete"]))]

    last = logs.run(ctx, d, logs.Options(tail=1)).detail.apps
    assert [[e["text"] for e in a["lines"]] for a in last] == [["POST /v1/chat/completions 200\n"],
                                                                ["download complete\n"]]
    recent = logs.run(ctx, d, logs.Options(since="1h")).detail.apps  # AppCountLogs, then AppFetchLogs per interval
    assert [[e["text"] for e in a["lines"]] for a in recent] == [
        ["The server is fired up and ready to roll!\n", "POST /v1/chat/completions 200\n"],
        ["Fetching 4 files\n", "download complete\n"]]


def test_logs_of_a_recipe_never_deployed_say_so(wire):
    ctx, d = setup()
    shown = logs.run(ctx, d, logs.Options())
    assert shown.message == (f"dev/{RECIPE}: no app {APP} or {APP}-jobs in Modal environment dev: nothing deployed or "
                             "run yet")


def test_follow_prints_new_lines_until_the_app_stops(wire):
    ctx, d = setup()
    ctx.remote.deploy(d, "git-aaa")
    server = app_id(wire, "dev", APP)
    wire.log(server, "already there\n")
    written: list[str] = []
    done: dict = {}
    follower = threading.Thread(target=lambda: done.update(r=logs.run(ctx, d, logs.Options(follow=True),
                                                                      write=written.append)))
    follower.start()
    wait_for(lambda: any(w.startswith("following") for w in written), timeout=30)
    wire.log(server, "a new request\n")
    wait_for(lambda: any(w.endswith("stdout a new request") for w in written), timeout=30)
    ModalRemote().stop_app(server)  # the stream's app_done ends it
    follower.join(60)
    assert not follower.is_alive()
    assert done["r"].message == f"{APP} stopped: no more lines"
    assert sum("already there" in w for w in written) == 1  # read once, not again from the stream


def test_logs_flags_are_checked_before_anything_is_read():
    with pytest.raises(ConfigError, match="^--follow prints lines as they come and --json prints one document"):
        logs.check(logs.Options(follow=True), as_json=True)
    with pytest.raises(ConfigError, match="^--tail 0: allowed: a whole number of lines, 1 or more$"):
        logs.check(logs.Options(tail=0), as_json=False)
    with pytest.raises(ConfigError, match="^--since 'yesterday': not a time"):
        logs.check(logs.Options(since="yesterday"), as_json=False)


def recorded_deploy(ctx, d, tag: str) -> None:
    """A deploy and its release in the manifest, as `invoke deploy` leaves them."""
    from infra.perf.releases import Release

    done = ctx.remote.deploy(d, tag)
    store = ReleaseStore(ctx.remote)
    store.record(d, store.read(d), Release(
        release_id=f"r-{tag}", kind="deploy", commit="a" * 40, dirty=False, tag=tag, deployment=d,
        version=done.version, url=done.url, app_id=done.app_id))


def test_stop_stops_the_server_records_it_and_a_deploy_starts_it_again(wire):
    ctx, d = setup()
    recorded_deploy(ctx, d, "git-aaa")
    server = app_id(wire, "dev", APP)
    done = stop.run(ctx, d)
    assert done.status == "ran" and done.detail.stopped == [{"app_id": server, "name": APP, "state": "deployed"}]
    assert done.message == (f"stopped {APP} ({server}, was deployed) in Modal environment dev; recorded in the release "
                            f"manifest; `invoke deploy --env dev --recipe {RECIPE}` starts it again")
    assert wire.apps_named("dev", APP)[-1]["stopped"] and ctx.remote.server_url(d) is None  # the name is free again
    stopped = ReleaseStore(ctx.remote).read(d).stopped
    assert stopped.apps == [f"{APP} ({server})"] and stopped.at <= time.time()
    shown = status.run(ctx, d, status.Options())  # the manifest says so until the next release
    assert (f"  STOPPED at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(stopped.at))}Z by {stopped.by} "
            f"({APP} ({server})): the endpoint does not answer") in shown.message
    again = stop.run(ctx, d)
    assert (again.status, again.message) == ("unchanged", f"dev/{RECIPE}: nothing to stop: no running {APP} or "
                                                          f"{APP}-jobs in Modal environment dev")
    recorded_deploy(ctx, d, "git-bbb")  # a new App under the same name; the new release clears `stopped`
    assert app_id(wire, "dev", APP, live=True) != server
    assert ReleaseStore(ctx.remote).read(d).stopped is None
    assert "STOPPED" not in status.run(ctx, d, status.Options()).message


def test_stop_in_prod_checks_credentials_then_asks_then_stops(wire, monkeypatch):
    from modal.client import _Client

    asked: list[str] = []
    ctx, d = setup("prod", interactive=True)
    ctx.remote.deploy(d, "git-aaa")
    monkeypatch.delenv("MODAL_TOKEN_ID")
    _Client._set_env_client(None)
    with pytest.raises(MissingCredentials):
        stop.run(ctx, d, confirm=asked.append)
    assert asked == []  # a "yes" is never followed by "credentials missing"
    monkeypatch.setenv("MODAL_TOKEN_ID", wire.token[0])
    _Client._set_env_client(None)
    with pytest.raises(Refused, match="^stopping guarded environment 'prod': not confirmed; nothing changed$"):
        stop.run(ctx, d, confirm=lambda q: asked.append(q) or "n")
    assert asked == [f"Stop {APP} in prod? Its endpoint stops answering until the next deploy. [y/N] "]
    assert not wire.apps_named("prod", APP)[-1]["stopped"]
    ctx.interactive = False
    with pytest.raises(Refused, match="^stopping guarded environment 'prod' needs confirmation: no terminal"):
        stop.run(ctx, d)
    ctx.yes = True
    assert stop.run(ctx, d).status == "ran" and wire.apps_named("prod", APP)[-1]["stopped"]


def test_logs_and_stop_through_the_cli(wire, wire_cli):
    remote = ModalRemote()
    remote.deploy(resolve(load_settings("dev", RECIPE), RECIPE), "git-aaa")
    wire.log(app_id(wire, "dev", APP), "ready\n")
    shown = wire_cli("logs", "--env", "dev", "--recipe", RECIPE)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.splitlines()[0].startswith(f"{APP} (server, deployed, ap-") and "stdout ready" in shown.stdout
    stopped = wire_cli("stop", "--env", "dev", "--recipe", RECIPE, "--json")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert __import__("json").loads(stopped.stdout)[0]["detail"]["stopped"][0]["name"] == APP
    dry = wire_cli("stop", "--env", "prod", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("stop (dry run, prod/")
