"""The Modal boundary at the wire: every `ModalRemote` method through the real `modal` client, against the fake
control plane of tests/fakes/modal_wire (gRPC on 127.0.0.1, real Volumes as directories, real job bodies).

The stage tests run the same ModalRemote in front of the same fake; these prove each method on its own.
Everything here runs with FORCE_COLOR=1 and TTY_COMPATIBLE=1 set (the `wire` fixture), and fails
if the client calls an RPC the fake does not implement. The task-level runs (`python -m invoke ...`)
are in tests/test_modal_workflows.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from datetime import UTC, datetime

import pytest
from modal_proto import api_pb2

from infra.runtime import weights
from infra.runtime.kernels import marker_path as kernel_marker
from infra.runtime.remote import LOCKS_DICT, STARTS_DICT, STARTS_KEPT, MissingCredentials, ModalRemote, starts_bucket
from tests.conftest import REPO, changed, deployment

APP = "sglang-qwen3-8b-low-latency"
HEADERS = {"Content-Type": "application/json"}
CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()


@pytest.fixture
def remote(wire) -> ModalRemote:
    return ModalRemote()


def post_chat(url: str, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=CHAT, headers=HEADERS | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# ---------------------------------------------------------------------------- the fake itself


def test_an_rpc_the_fake_does_not_implement_is_reported_by_name(wire):
    """What makes a client upgrade that changes the protocol fail loudly: the fixture asserts this list is empty."""
    import modal

    with pytest.raises(modal.exception.UnimplementedError, match="QueueGetOrCreate"):
        modal.Queue.from_name("q", environment_name="dev", create_if_missing=True).hydrate()
    assert wire.unimplemented() == ["QueueGetOrCreate"]
    wire.forget_unimplemented()


def test_the_fake_checks_the_token_like_modal_does(wire, monkeypatch):
    import modal
    from modal.client import _Client

    modal.Client.from_env().hello()
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-wrong")
    _Client._set_env_client(None)
    with pytest.raises(modal.exception.AuthError, match="invalid"):
        modal.Client.from_env().hello()


def test_the_fake_dict_is_what_locks_are_built_on(wire):
    """Put-if-absent is atomic create-if-absent; there is no compare-and-swap; a missing Dict is NOT_FOUND."""
    import modal

    with pytest.raises(modal.exception.NotFoundError, match="Dict 'locks' not found in environment 'dev'"):
        modal.Dict.from_name("locks", environment_name="dev").get("k")
    d = modal.Dict.from_name("locks", environment_name="dev", create_if_missing=True)
    assert d.put("k", {"holder": "a"}, skip_if_exists=True) is True
    assert d.put("k", {"holder": "b"}, skip_if_exists=True) is False
    assert d.get("k") == {"holder": "a"} and d.get("missing", 0) == 0
    assert d.pop("k") == {"holder": "a"} and d.pop("k", None) is None
    d.put("k", 2)
    assert wire.dict_entries("dev", "locks") == {"k": 2}


# ---------------------------------------------------------------------------- images and jobs


def test_build_image_builds_once_and_returns_the_image_id(wire, remote):
    d = deployment("dev")
    first = remote.build_image(d)
    assert first.startswith("im-")
    built = wire.rpcs().count("ImageJoinStreaming")
    assert remote.build_image(d) == first  # same layers: Modal finds the built image, nothing is rebuilt
    assert wire.rpcs().count("ImageJoinStreaming") == built
    other = remote.build_image(changed(d, pip_installs=("huggingface-hub==0.36.0", "orjson==3.10.0")))
    assert other != first


def test_download_runs_the_job_body_against_the_hub_into_the_weights_volume(wire, remote):
    d = deployment("dev")
    results = remote.run_download(d)
    assert [(r["repo"], r["skipped"]) for r in results] == [("Qwen/Qwen3-8B-FP8", False),
                                                            ("Tengyunw/qwen3_8b_eagle3", False)]
    assert results[0]["commit"] == d.recipe.model_revision and weights.COMMIT_RE.match(results[1]["commit"])
    cache = wire.volume_dir("dev", d.caches.weights_volume)
    assert weights.read_marker(cache, "Qwen/Qwen3-8B-FP8", d.recipe.model_revision)["files"] == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json"]
    # The job ran with the deployment in its environment (the Function's `env=`) and no HF token.
    job = wire.jobs[-1]
    assert job.function == "download_weights" and job.app_name == f"{APP}-jobs" and "HF_TOKEN" not in job.environ
    assert [r["skipped"] for r in remote.run_download(d)] == [True, True]  # completion markers found


def test_download_passes_the_hf_token_from_the_named_secret(wire, remote):
    d = deployment("staging")
    wire.create_secret("staging", "huggingface-secret", {"HF_TOKEN": "hf_wiretesttoken123"})
    remote.run_download(d)
    assert wire.jobs[-1].environ["HF_TOKEN"] == "hf_wiretesttoken123"
    assert wire.volume_dir("prod", d.caches.weights_volume) is not None  # staging downloads into prod's shared cache


def test_a_job_whose_named_secret_is_missing_does_not_start(wire, remote):
    """Modal resolves named Secrets when the App starts: the job never runs (what issue 11 item 2 is about)."""
    import modal

    with pytest.raises(modal.exception.NotFoundError, match="Secret 'huggingface-secret' not found in environment "
                                                            "'staging'"):
        remote.run_download(deployment("staging"))
    assert wire.jobs == [] and wire.app_states("staging", f"{APP}-jobs") == ["APP_STATE_STOPPED"]


def test_a_failing_job_raises_its_exception_and_stops_the_ephemeral_app(wire, remote):
    wire.set_failure("compile_kernels", RuntimeError("compile_deep_gemm exited with code 3"))
    with pytest.raises(RuntimeError, match="exited with code 3"):
        remote.run_compile(deployment("dev"))
    assert wire.app_states("dev", f"{APP}-jobs") == ["APP_STATE_STOPPED"]


def test_compile_runs_the_job_body_into_the_kernel_volume(wire, remote):
    d = deployment("dev")
    result = remote.run_compile(d)
    assert result["skipped"] is False and result["fingerprint"]
    assert kernel_marker(wire.volume_dir("dev", d.caches.kernels_volume), d).exists()
    assert remote.run_compile(d)["skipped"] is True
    forced = remote.run_compile(d, force=True)  # what a start that missed the caches asks for: compiled and republished
    assert forced["skipped"] is False and forced["completed_at"] > result["completed_at"]


# ---------------------------------------------------------------------------- deploy, history, rollback


def test_deploy_returns_url_and_version_and_reports_a_skipped_deploy(wire, remote):
    """Issue 11 item 4: Modal skips a deploy of an unchanged App (a falsy `deployed_at`); say so, don't invent a
    version."""
    d = deployment("dev")
    first = remote.deploy(d, "git-aaa")
    assert first.version == 1 and first.changed is True and first.app_id.startswith("ap-")
    assert first.url == remote.server_url(d)
    again = remote.deploy(d, "git-aaa")
    assert again == dataclasses.replace(first, changed=False)
    assert [v["version"] for v in wire.app_versions("dev", APP)] == [1]
    redeployed = remote.deploy(changed(d, max_containers=1), "git-bbb")
    assert (redeployed.version, redeployed.changed) == (2, True)
    # The tags Modal's billing report carries (infra/runtime/spec.py `tags`): the server App names the commit it runs.
    assert [v["app_tags"] for v in wire.app_versions("dev", APP)] == [
        {"env": "dev", "recipe": "qwen3-8b-low-latency", "role": "server", "commit": tag}
        for tag in ("git-aaa", "git-bbb")]


def test_history_newest_first_and_rollback_is_a_new_version(wire, remote):
    """Issue 11 item 1: read through the client's RPCs, not `modal app history --json`, which rich colours."""
    d = deployment("dev")
    assert remote.history(d) == []
    remote.deploy(d, "git-aaa")
    remote.deploy(changed(d, max_containers=1), "git-bbb")
    history = remote.history(d)
    assert [(h["version"], h["tag"]) for h in history] == [(2, "git-bbb"), (1, "git-aaa")]
    assert all(isinstance(h["deployed_at"], float) for h in history)
    remote.rollback(d, None)  # the previous version
    assert [(h["version"], h["tag"]) for h in remote.history(d)][:1] == [(3, "git-aaa")]
    remote.rollback(d, 2)
    assert [(v["version"], v["rollback_version"], v["live"]) for v in wire.app_versions("dev", APP)] == [
        (1, 0, False), (2, 0, False), (3, 1, False), (4, 2, True)]
    assert "python -m modal" not in " ".join(map(str, wire.jobs))  # no CLI subprocess anywhere
    with pytest.raises(Exception, match="v9"):
        remote.rollback(d, 9)


def test_rollback_of_an_app_never_deployed_is_refused_in_one_line(wire, remote):
    from infra.runtime.errors import UserError

    with pytest.raises(UserError, match=f"no deployed app {APP} in Modal environment dev"):
        remote.rollback(deployment("dev"), None)


def test_server_url_forwards_to_the_replica_and_enforces_proxy_auth(wire, remote, wire_session):
    dev, staging = deployment("dev"), deployment("staging")
    assert remote.server_url(dev) is None
    url = remote.deploy(dev, "git-aaa").url
    assert post_chat(url)[0] == 200  # dev: public
    secured = remote.deploy(staging, "git-aaa").url
    assert secured != url and remote.server_url(staging) == secured
    status, body = post_chat(secured)
    assert status == 401 and "missing credentials for proxy authorization" in body
    assert post_chat(secured, {"Modal-Key": "wk-wrong", "Modal-Secret": "ws-wrong"})[0] == 401
    key, secret = wire.proxy_token
    assert post_chat(secured, {"Modal-Key": key, "Modal-Secret": secret})[0] == 200


def test_update_autoscaler_uses_the_current_api_and_reports_the_settings_in_force(wire, remote):
    """Issue 11 item 3: `server.autoscaler.update` (no deprecation warning); settings read back, never None as a
    count."""
    prod = deployment("prod")
    remote.deploy(prod, "git-aaa")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        now = remote.update_autoscaler(prod, min_containers=2)
    assert now == {"min_containers": 2, "max_containers": 4, "buffer_containers": 0}
    assert wire.autoscaler("prod", APP)["min_containers"] == 2
    now = remote.update_autoscaler(prod, max_containers=3, buffer_containers=1)
    assert now == {"min_containers": 2, "max_containers": 3, "buffer_containers": 1}
    assert remote.autoscaler(prod) == now  # the settings in force, read back
    assert "FunctionGetSchedulingParams" in wire.rpcs()
    dev = deployment("dev")  # min_containers 0 is not even sent with the definition: Modal reports it unset
    remote.deploy(dev, "git-aaa")
    assert remote.update_autoscaler(dev, max_containers=1) == {"min_containers": 0, "max_containers": 1,
                                                               "buffer_containers": 0}
    remote.deploy(changed(prod, target_concurrency=8), "git-bbb")  # a deploy resets run-time changes
    assert remote.autoscaler(prod) == {"min_containers": 1, "max_containers": 4, "buffer_containers": 0}


def test_update_autoscaler_without_a_deployed_server_says_so(wire, remote):
    from infra.runtime.errors import UserError

    with pytest.raises(UserError, match=f"no deployed server in app {APP} in Modal environment prod"):
        remote.update_autoscaler(deployment("prod"), min_containers=2)
    assert remote.autoscaler(deployment("prod")) is None  # a read says "not deployed" without failing


def test_ephemeral_serves_while_open_and_stops_on_exit_and_on_error(wire, remote):
    d = deployment("dev")
    with remote.ephemeral(d) as url:
        assert url.endswith("-dev") and post_chat(url)[0] == 200
    assert post_chat(url)[0] == 404  # stopped
    with pytest.raises(KeyboardInterrupt):
        with remote.ephemeral(d):
            raise KeyboardInterrupt
    assert wire.app_states("dev", APP) == ["APP_STATE_STOPPED", "APP_STATE_STOPPED"]
    assert remote.history(d) == []  # nothing was deployed


# ---------------------------------------------------------------------------- Volumes


@pytest.mark.parametrize("version", [api_pb2.VOLUME_FS_VERSION_V1, api_pb2.VOLUME_FS_VERSION_V2], ids=["v1", "v2"])
def test_files_round_trip_in_both_volume_versions(wire, remote, version):
    wire.volume_version = version
    try:
        assert remote.read_file("dev", "sglang-releases", "releases/a.json") is None
        remote.write_file("dev", "sglang-releases", "releases/a.json", b'{"revision": 1}')
        remote.write_file("dev", "sglang-releases", "releases/a.json", b'{"revision": 2}')  # replaced, not refused
        assert remote.read_file("dev", "sglang-releases", "releases/a.json") == b'{"revision": 2}'
        assert remote.read_file("dev", "sglang-releases", "releases/b.json") is None
        big = bytes(range(256)) * 40_000  # ~10 MB: more than one 8 MiB block
        remote.write_file("dev", "sglang-releases", "big.bin", big)
        assert remote.read_file("dev", "sglang-releases", "big.bin") == big
        assert wire.volume_files("dev", "sglang-releases")["releases/a.json"] == b'{"revision": 2}'
    finally:
        wire.volume_version = api_pb2.VOLUME_FS_VERSION_V2
    expected = "VolumePutFiles" if version == api_pb2.VOLUME_FS_VERSION_V1 else "VolumePutFiles2"
    assert expected in wire.rpcs()


def test_reading_never_creates_a_volume(wire, remote):
    """Issue 11 item 6 (remote part): a read of a Volume that does not exist is None and creates nothing."""
    assert remote.read_file("prod", "sglang-releases", "releases/qwen3-8b-low-latency.json") is None
    assert remote.read_file("prod", "huggingface-cache", ".infra-complete/refs/x") is None
    assert wire.volumes() == []


# ---------------------------------------------------------------------------- start records


def test_start_records_round_trip_through_the_dict_bounded_per_deployment(wire, remote):
    """Issue 23: what a server container writes (infra/runtime/startup.py through `record_start`) is what `invoke
    status` reads (`recent_starts`), through the real client: values cloudpickled, the newest STARTS_KEPT kept."""
    bucket = starts_bucket(APP, "0123456789abcdef")
    assert remote.recent_starts("prod", bucket) == []  # no Dict yet: a read says so, and creates nothing
    assert wire.dict_entries("prod", STARTS_DICT) == {}
    for n in range(1, STARTS_KEPT + 4):
        assert remote.record_start("prod", bucket, {"n": n, "outcome": "ready",
                                                    "phases": [{"phase": "arguments"}]}) == n
    assert [r["n"] for r in remote.recent_starts("prod", bucket)] == list(range(STARTS_KEPT + 3, 3, -1))
    entries = wire.dict_entries("prod", STARTS_DICT)
    assert len(entries) == STARTS_KEPT + 1 and entries[bucket] == STARTS_KEPT + 3  # the records and the newest number
    other = starts_bucket(APP, "fedcba9876543210")  # another deployment (release) of the same app: its own bucket
    remote.record_start("prod", other, {"n": 1})
    assert remote.recent_starts("prod", other) == [{"n": 1}] and remote.recent_starts("dev", bucket) == []
    for rpc in ("DictGetOrCreate", "DictUpdate", "DictGet", "DictPop"):
        assert rpc in wire.rpcs()


def test_two_containers_starting_at_once_never_overwrite_each_others_record(wire, remote):
    bucket = starts_bucket(APP, "0123456789abcdef")
    results: list[int] = []
    threads = [threading.Thread(target=lambda i=i: results.append(ModalRemote().record_start("prod", bucket, {"i": i})))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    assert sorted(r["i"] for r in remote.recent_starts("prod", bucket)) == list(range(6))


def test_a_container_start_is_recorded_at_the_wire_and_read_back(wire, remote, tmp_path):
    """The container's path end to end: the stand-in SGLang starts through infra/runtime/startup.py, whose record goes
    through ModalRemote.record_start (as infra/runtime/app.py passes it) to the fake control plane."""
    from infra.runtime import compile_cache, sglang_args, startup, timeline
    from infra.runtime.lifecycle import Readiness
    from tests.conftest import free_port, standin_env

    d = deployment("dev", port=free_port())

    def write(record: dict) -> int:
        return ModalRemote().record_start(d.modal.environment, starts_bucket(d.app_name, record["deployment_digest"]),
                                          record)

    local = tmp_path / "local"
    started = startup.start(d, sglang_args.launch_command(d), f"http://127.0.0.1:{d.server.port}",
                            Readiness(timeout=30, poll_interval=0.1, warmup=d.recipe.warmup, model=d.recipe.model),
                            volume_root=tmp_path / "volume", local_root=local, write=write,
                            env=standin_env(sglang_log=True) | compile_cache.environment(local), wait_on_ready=30)
    started.server.stop(grace=0)
    assert not started.writer.is_alive()
    [back] = remote.recent_starts("dev", starts_bucket(d.app_name, timeline.deployment_digest(d.to_dict())))
    assert back == started.record.to_data() and back["outcome"] == "ready" and back["phases"][0]["phase"] == "arguments"


# ---------------------------------------------------------------------------- locks


def test_lock_is_exclusive_until_released(wire, remote):
    assert remote.acquire_lock("prod", "prod/r", "alice", 60) is None
    held = remote.acquire_lock("prod", "prod/r", "bob", 60)
    assert held["holder"] == "alice" and held["expires"] > time.time()
    remote.release_lock("prod", "prod/r", "bob")  # not bob's: no effect
    assert remote.acquire_lock("prod", "prod/r", "bob", 60)["holder"] == "alice"
    remote.release_lock("prod", "prod/r", "alice")
    assert remote.acquire_lock("prod", "prod/r", "bob", 60) is None
    assert remote.acquire_lock("prod", "other/r", "carol", 60) is None  # locks are per name
    assert remote.acquire_lock("dev", "prod/r", "dave", 60) is None  # and per Modal environment
    assert wire.dict_entries("prod", LOCKS_DICT)  # they live in the Modal Dict


def test_an_expired_lock_is_taken_over(wire, remote):
    assert remote.acquire_lock("prod", "prod/r", "crashed", 0.01) is None
    time.sleep(0.05)
    assert remote.acquire_lock("prod", "prod/r", "next", 60) is None
    assert remote.acquire_lock("prod", "prod/r", "third", 60)["holder"] == "next"
    remote.release_lock("prod", "prod/r", "crashed")  # the crashed holder coming back releases nothing
    assert remote.acquire_lock("prod", "prod/r", "third", 60)["holder"] == "next"


def test_two_concurrent_takers_of_an_expired_lock_never_both_win(wire, remote):
    """Issue 11 item 5: takeover with pop + put-if-absent let both takers win; one generation key has one creator."""

    async def jitter():  # let the two takers' RPCs interleave in every order
        import asyncio
        import random

        await asyncio.sleep(random.uniform(0, 0.004))

    for rpc in ("DictGet", "DictUpdate", "DictPop"):
        wire.before_rpc[rpc] = jitter
    both_won = []
    for round_ in range(40):
        name = f"prod/round-{round_}"
        assert remote.acquire_lock("prod", name, "crashed", 0.001) is None
        time.sleep(0.01)
        barrier, won = threading.Barrier(2), []

        def take(holder: str) -> None:
            barrier.wait()
            if remote.acquire_lock("prod", name, holder, 60) is None:
                won.append(holder)

        threads = [threading.Thread(target=take, args=(f"taker-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(won) != 1:
            both_won.append((round_, won))
    assert both_won == []


# ---------------------------------------------------------------------------- secrets and credentials


def test_secret_exists_only_once_created_in_that_environment(wire, remote):
    assert remote.secret_exists("staging", "huggingface-secret") is False
    wire.create_secret("staging", "huggingface-secret", {"HF_TOKEN": "hf_x12345678"})
    assert remote.secret_exists("staging", "huggingface-secret") is True
    assert remote.secret_exists("prod", "huggingface-secret") is False


EVERY_CALL = {
    "build_image": lambda r, d: r.build_image(d),
    "run_download": lambda r, d: r.run_download(d),
    "run_compile": lambda r, d: r.run_compile(d),
    "run_gpu_test": lambda r, d: r.run_gpu_test(d, "tiny"),
    "deploy": lambda r, d: r.deploy(d, "git-aaa"),
    "server_url": lambda r, d: r.server_url(d),
    "history": lambda r, d: r.history(d),
    "rollback": lambda r, d: r.rollback(d, None),
    "update_autoscaler": lambda r, d: r.update_autoscaler(d, min_containers=1),
    "autoscaler": lambda r, d: r.autoscaler(d),
    "read_file": lambda r, d: r.read_file("dev", "sglang-releases", "x"),
    "write_file": lambda r, d: r.write_file("dev", "sglang-releases", "x", b"x"),
    "acquire_lock": lambda r, d: r.acquire_lock("dev", "dev/x", "me", 60),
    "release_lock": lambda r, d: r.release_lock("dev", "dev/x", "me"),
    "record_start": lambda r, d: r.record_start("dev", "app/abc", {}),
    "recent_starts": lambda r, d: r.recent_starts("dev", "app/abc"),
    "secret_exists": lambda r, d: r.secret_exists("dev", "s"),
    "ephemeral": lambda r, d: r.ephemeral(d).__enter__(),
    "billing_rates": lambda r, d: r.billing_rates(),
    "billing_report": lambda r, d: r.billing_report("dev", datetime(2026, 11, 1, tzinfo=UTC),
                                                    datetime(2026, 11, 2, tzinfo=UTC),
                                                    ["env"]),
    "replicas": lambda r, d: r.replicas("dev", d.app_name),
    "endpoint_of": lambda r, d: r.endpoint_of("dev", d.app_name),
    "read_ring": lambda r, d: r.read_ring("dev", ["x#0"]),
    "write_ring": lambda r, d: r.write_ring("dev", "x#0", {}),
    "apps": lambda r, d: r.apps("dev"),
    "stop_app": lambda r, d: r.stop_app("ap-0123456789abcdefghijkl"),
    "app_logs": lambda r, d: r.app_logs("ap-0123456789abcdefghijkl", None, None, 10),
    "follow_logs": lambda r, d: next(r.follow_logs("ap-0123456789abcdefghijkl", 1)),
    "deploy_sentinel": lambda r, d: r.deploy_sentinel(__import__("infra.control.watching", fromlist=["x"]).spec_for(
        __import__("infra.control.settings", fromlist=["x"]).load_settings("dev"), [d])),
}


@pytest.mark.parametrize("problem", ["missing", "rejected"])
@pytest.mark.parametrize("method", sorted(EVERY_CALL))
def test_every_method_reports_missing_or_rejected_credentials_in_the_projects_one_message(
        wire, remote, monkeypatch, method, problem):
    """Issue 11 item 7 (remote part): Modal's raw AuthError never reaches the user."""
    from modal.client import _Client

    if problem == "missing":
        monkeypatch.delenv("MODAL_TOKEN_ID")
        monkeypatch.delenv("MODAL_TOKEN_SECRET")
    else:
        monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-not-the-right-secret")
    _Client._set_env_client(None)
    with pytest.raises(MissingCredentials, match="set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET .* or run `modal token "
                                                 "new`") as err:
        EVERY_CALL[method](ModalRemote(), deployment("dev"))
    assert "as-not-the-right-secret" not in str(err.value)
    assert set(EVERY_CALL) | {"require_credentials"} == {n for n in vars(ModalRemote) if not n.startswith("_")}


def test_require_credentials_counts_a_token_in_the_modal_config_file(wire, tmp_path):
    """A `modal token new` profile (MODAL_CONFIG_PATH / ~/.modal.toml) counts, and is what the client then uses."""
    config = tmp_path / "profile.toml"
    config.write_text(f'[wire]\ntoken_id = "{wire.token[0]}"\ntoken_secret = "{wire.token[1]}"\nactive = true\n')
    code = ("from infra.runtime.remote import ModalRemote; r = ModalRemote(); r.require_credentials(); "
            "print(r.secret_exists('dev', 'none'))")
    environ = {k: v for k, v in wire.cli_environ.items() if not k.startswith("MODAL_TOKEN")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **environ, "MODAL_CONFIG_PATH": str(config)})
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
    config.write_text("")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **environ, "MODAL_CONFIG_PATH": str(config)})
    assert done.returncode == 1 and "MissingCredentials: Modal credentials missing" in done.stderr
