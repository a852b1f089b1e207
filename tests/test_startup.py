"""A container's observed start (infra/runtime/startup.py) with the stand-in SGLang, real subprocesses and real trees:
the compile job publishes, a new "container" restores, starts, warms up, looks for cache misses and records its
timeline through the boundary: the real ModalRemote and modal client in front of the fake control plane
(tests/wire.py)."""

from __future__ import annotations

import json

import pytest

from infra.runtime import compile_cache, kernels, lifecycle, remote, sglang_args, startup, timeline
from infra.runtime.lifecycle import Readiness
from infra.runtime.remote import ModalRemote
from tests.conftest import changed, deployment, free_port, standin_env


@pytest.fixture
def place(tmp_path, wire):
    return {"volume": tmp_path / "volume", "local": tmp_path / "local-disk" / "sglang-compile",
            "remote": ModalRemote()}


def readiness(d) -> Readiness:
    return Readiness(timeout=30, poll_interval=0.1, warmup=d.recipe.warmup, model=d.recipe.model, startup_budget=60)


def compile_for(d, place, **fake) -> dict:
    """The compile job for `d`, publishing to the stand-in Volume (the stand-in compiles only what it lacks)."""
    return kernels.compile_kernels(d, place["volume"], env=standin_env(**fake), local_root=place["local"],
                                   port=free_port())


def start(d, place, *, container_started=None, **fake) -> startup.Started:
    """A new container's start; the stand-in logs its start-up as SGLang does (`sglang_log`)."""
    modal: ModalRemote = place["remote"]
    fake = {"sglang_log": True} | fake

    def write(record: dict) -> int:
        bucket = remote.starts_bucket(d.app_name, record["deployment_digest"])
        return modal.record_start(d.modal.environment, bucket, record)

    return startup.start(d, sglang_args.launch_command(d), f"http://127.0.0.1:{d.server.port}", readiness(d),
                         volume_root=place["volume"], local_root=place["local"], write=write,
                         env=standin_env(**fake) | compile_cache.environment(place["local"]),  # as spec.server_env sets
                         container_started=container_started, wait_on_ready=10, environ={"MODAL_TASK_ID": "ta-test"})


def recorded(d, place) -> list[dict]:
    bucket = remote.starts_bucket(d.app_name, timeline.deployment_digest(d.to_dict()))
    return place["remote"].recent_starts(d.modal.environment, bucket)


def test_misses_are_new_files_by_cache_and_the_graph_dumps_sglang_rewrites_are_not(tmp_path):
    root = tmp_path / "root"
    compile_cache.prepare(root)
    (root / "triton" / "A").mkdir()
    (root / "triton" / "A" / "old.cubin").write_bytes(b"x" * 10)
    before = compile_cache.listing(root)
    (root / "triton" / "B").mkdir()
    for name in ("k.cubin", "k.json", "__grp__k.json"):
        (root / "triton" / "B" / name).write_bytes(b"y" * 100)
    (root / "triton" / "A" / "old.cubin").write_bytes(b"z" * 20)  # rewritten, not new: not a compile
    graphs = root / "sglang" / "torch_compile_cache" / "rank_0_0" / "backbone"
    graphs.mkdir(parents=True)
    (graphs / "computation_graph_1796164483.038941.py").write_text("# a readable dump, written at every start")
    (root / "flashinfer" / "x.lock").write_text("")
    found = compile_cache.misses(root, before)
    assert {k: v.to_data() for k, v in found.items()} == {
        "triton": {"files": 3, "bytes": 300,
                   "examples": ["triton/B/__grp__k.json", "triton/B/k.cubin", "triton/B/k.json"]}}
    assert compile_cache.describe_misses(found) == "triton 3 files (0.0 MB, e.g. triton/B/__grp__k.json)"


def test_a_start_from_the_published_caches_records_its_timeline_with_no_misses(place):
    d = deployment(port=free_port())
    compile_for(d, place, jit_seconds=0.2, first_request_seconds=0.2)
    started = start(d, place, jit_seconds=0.2, first_request_seconds=0.2)
    started.server.stop(grace=0)
    record = started.record.to_data()
    assert record["outcome"] == "ready" and record["misses"] == {} and record["missing"] == []
    assert record["restore"]["restored"] is True and record["restore"]["files"] > 0
    phases = [p["phase"] for p in record["phases"]]
    assert phases[:5] == ["arguments", "scheduler_start", "weights", "kv_cache", "cuda_graphs"]
    assert phases[-3:] == ["warmup_1", "warmup_2", "warmup_3"]
    assert record["notes"] == {"piecewise_graphs": "not captured: --disable-piecewise-cuda-graph is set"}
    assert record["deep_gemm"]["shapes"][0]["n"] == 6144
    assert record["container"] == "ta-test" and record["deployment_digest"] == timeline.deployment_digest(d.to_dict())
    assert record["total_s"] == pytest.approx(record["before_launch_s"] + record["launch_to_ready_s"], abs=0.01)
    assert recorded(d, place) == [json.loads(json.dumps(record))]


def test_a_start_that_compiles_is_a_miss_warned_about_and_ready_where_allowed(place, capsys):
    d = deployment(port=free_port())
    compile_for(d, place, jit_seconds=0.1)  # the compile job's warm-up never compiled the speculative kernel
    started = start(d, place, jit_seconds=0.1, first_request_seconds=0.2)  # ...so this start's first request does
    started.server.stop(grace=0)
    assert started.record.outcome == "ready"
    assert started.record.to_data()["misses"] == {"triton": {"files": 1, "bytes": 1024,
                                                              "examples": ["triton/standin-speculative.bin"]}}
    out = capsys.readouterr().out
    assert "WARNING compile-cache miss: SGLang compiled while starting (triton 1 files" in out
    assert "CACHE MISSES: triton 1 files" in timeline.describe(timeline.StartRecord.read(recorded(d, place)[0]))


def test_a_guarded_environment_refuses_to_go_ready_on_a_miss(place):
    d = changed(deployment("prod", port=free_port()), refuse_on_cache_miss=True)
    compile_for(d, place, jit_seconds=0.1)
    with pytest.raises(startup.CacheMissRefused) as err:
        start(d, place, jit_seconds=0.1, first_request_seconds=0.2)
    message = str(err.value)
    assert message.startswith("compile-cache miss: SGLang compiled while starting (triton 1 files")
    assert "refusing to go ready (startup.refuse_on_cache_miss = true in environment 'prod')" in message
    assert f"`invoke compile --env prod --recipe {d.recipe.name} --recompile`" in message
    assert not lifecycle.is_healthy(f"http://127.0.0.1:{d.server.port}", timeout=0.5)  # stopped, not serving
    [record] = recorded(d, place)
    assert record["outcome"] == "refused" and record["misses"]["triton"]["files"] == 1 and record["error"] == message


def test_the_settings_carry_the_refusal_to_the_container():
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings, parse_overrides
    from infra.runtime.deployment import Deployment

    assert resolve(load_settings("prod"), "qwen3-8b-low-latency").startup.refuse_on_cache_miss is True
    assert resolve(load_settings("staging"), "qwen3-8b-low-latency").startup.refuse_on_cache_miss is False
    s = load_settings("dev", overrides=parse_overrides(["startup.refuse_on_cache_miss=true"]))
    d = resolve(s, "qwen3.6-35b-vlm")
    assert Deployment.from_json(d.to_json()).startup.refuse_on_cache_miss is True  # what the container reads back
    data = d.to_dict()
    before_startup = {k: v for k, v in data.items() if k != "startup"} | {"gpu_snapshot": True,
                                                                          "refuse_on_cache_miss": True}
    assert Deployment.read(before_startup).startup == d.startup.model_copy(update={"gpu_snapshot": True})
    before_setting = {k: v for k, v in data.items() if k != "startup"} | {"gpu_snapshot": False}
    assert Deployment.read(before_setting).startup.refuse_on_cache_miss is False  # a manifest from before it


def test_a_start_that_dies_is_recorded_with_how_far_it_got(place):
    d = deployment(port=free_port())
    with pytest.raises(lifecycle.ServerFailed):
        start(d, place, exit_after=0.3, listen_after=5)
    [record] = recorded(d, place)
    assert record["outcome"] == "failed" and "SGLang exited with code 3" in record["error"]
    assert record["restore"]["restored"] is False and record["phases"][0]["phase"] == "arguments"
    assert record["total_s"] is None and record["reached_s"] is not None


def test_a_record_that_cannot_be_written_never_fails_the_start(place, capsys):
    d = deployment(port=free_port())

    def broken(record: dict) -> int:
        raise ConnectionError("Modal unreachable")

    started = startup.start(d, sglang_args.launch_command(d), f"http://127.0.0.1:{d.server.port}", readiness(d),
                            volume_root=place["volume"], local_root=place["local"], write=broken,
                            env=standin_env() | compile_cache.environment(place["local"]),
                            wait_on_ready=10)
    started.server.stop(grace=0)
    assert started.record.outcome == "ready"
    out = capsys.readouterr().out
    assert "start record not written (ConnectionError: Modal unreachable); the start itself is unaffected" in out


def test_a_slow_record_holds_the_start_up_at_most_its_wait():
    import threading

    release = threading.Event()
    thread = startup.write_in_background(lambda record: release.wait(30), {"x": 1}, wait=0.05)
    assert thread.is_alive()  # the start went on; the write finishes in the background
    release.set()
    thread.join(5)
    assert not thread.is_alive()


def test_only_the_newest_starts_of_a_deployment_are_kept(wire):
    modal = ModalRemote()
    for n in range(1, remote.STARTS_KEPT + 4):
        assert modal.record_start("dev", "sglang-x/abc", {"n": n}) == n
    kept = modal.recent_starts("dev", "sglang-x/abc")
    assert [r["n"] for r in kept] == list(range(remote.STARTS_KEPT + 3, 3, -1))
    assert modal.recent_starts("dev", "sglang-x/other") == []
