"""The compile job, run for real: `infra.runtime.kernels.compile_kernels` starts the stand-in
`python3 -m sglang.compile_deep_gemm` and then the stand-in `sglang.launch_server`
(tests/fakes/sglang_standin) through the lifecycle, as real subprocesses.

What must hold: the compiler and the server see exactly the deployment's arguments (else
they compile for shapes the server never uses) and compile where every server will read
(the fixed local root); the server is warmed up (speculative path included) and stopped;
the tree is published under its key and committed before a marker exists; a failed, hung
or disabled step never leaves one; and a server that restores the tree finds every kernel.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from infra.runtime import compile_cache, kernels, lifecycle, sglang_args
from infra.runtime.kernels import CompileFailed
from tests.conftest import (
    changed,
    deployment,
    free_port,
    processes_mentioning,
    reap_children,
    standin_env,
)

FIXTURES = Path(__file__).parent / "fixtures" / "records"


@pytest.fixture
def d():
    return deployment(port=free_port())


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "volume"


@pytest.fixture
def local(tmp_path):
    return tmp_path / "local-disk" / "sglang-compile"


@pytest.fixture
def record(tmp_path):
    return tmp_path / "compile-record.json"


def compile_env(record, tmp_path=None, **extra: str) -> dict[str, str]:
    """The stand-ins on PYTHONPATH: the compiler records what it received into `record`; the
    server simulates SGLang's JIT (writes a kernel into each cache; the first request compiles)."""
    env = standin_env(jit_seconds=0, first_request_seconds=0.2,
                      record=str(record.with_name("requests.jsonl")))
    env["FAKE_COMPILE_RECORD"] = str(record)
    env["FAKE_SGLANG_ARGV"] = str(record.with_name("server-argv.json"))
    env["FAKE_SGLANG_JIT_LOG"] = str(record.with_name("jit.jsonl"))
    env.pop("SGLANG_ENABLE_JIT_DEEPGEMM", None)
    env.update(extra)
    return env


def run(d, cache, local, record, **options):
    env = options.pop("env", None) or compile_env(record)
    on_line = options.pop("on_line", None)
    if on_line is None:
        return kernels.compile_kernels(d, cache, env=env, local_root=local, port=d.server.port, **options)
    return kernels.warm_caches(
        key=kernels.kernel_key(d), marker=kernels.marker_path(cache, d), compile_argv=sglang_args.compile_command(d),
        launch_argv=sglang_args.launch_command(d), volume_root=cache, local_root=local, env=env, on_line=on_line,
        readiness=lifecycle.Readiness(timeout=20, poll_interval=0.1, warmup=d.recipe.warmup, model=d.recipe.model))


def published(cache, d) -> list[str]:
    tree = compile_cache.published_dir(cache, kernels.kernel_fingerprint(d))
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()) if tree.exists() else []


class VolumeCommits:
    """A `commit_volume` that notes, at each call, whether the marker existed and what was published."""

    def __init__(self, cache, d):
        self.cache, self.d = cache, d
        self.marker = kernels.marker_path(cache, d)
        self.calls: list[dict] = []

    def __call__(self) -> None:
        self.calls.append({"marker": self.marker.exists(), "published": published(self.cache, self.d)})


def test_compiler_receives_the_server_arguments_and_compiles_into_the_local_root(d, cache, local, record):
    result = run(d, cache, local, record)

    seen = json.loads(record.read_text())
    # Launch arguments minus host and port, plus --timeout: the same shapes the server will ask for.
    assert seen["argv"] == sglang_args.compile_command(d)[3:]
    assert seen["argv"][: len(sglang_args.server_args(d))] == sglang_args.server_args(d)
    launch = sglang_args.launch_command(d)[3:]
    assert seen["argv"][:-2] == launch[: launch.index("--host")]
    assert seen["argv"][-2:] == ["--timeout", str(sglang_args.COMPILE_TIMEOUT)]
    assert "--host" not in seen["argv"] and "--port" not in seen["argv"]
    # DeepGEMM compiles into the fixed local root (the path servers restore to), then it is published.
    assert seen["SGLANG_DG_CACHE_DIR"] == str(local / "deep_gemm")
    assert "deep_gemm/kernels/fp8_gemm_nt.cubin" in published(cache, d)
    assert result["skipped"] is False and result["deep_gemm"] is True
    assert result["argv"] == sglang_args.compile_command(d)


def test_the_real_server_is_started_with_the_launch_arguments_warmed_up_and_stopped(d, cache, local, record):
    result = run(d, cache, local, record)

    assert json.loads(record.with_name("server-argv.json").read_text()) == sglang_args.launch_command(d)[3:]
    chats = [json.loads(line) for line in record.with_name("requests.jsonl").read_text().splitlines()]
    chats = [c for c in chats if c["path"] == "/v1/chat/completions"]
    # The recipe's warm-up, then a concurrent burst: every request generates all its tokens.
    assert len(chats) == d.recipe.warmup.count + min(kernels.BURST, d.recipe.target_concurrency)
    assert all(c["body"]["ignore_eos"] is True and c["body"]["max_tokens"] == d.recipe.warmup.max_tokens for c in chats)
    # What the stand-in compiled while starting and on the first (speculative) request is all published.
    files = published(cache, d)
    for c in compile_cache.CACHES:
        assert any(f.startswith(c.folder + "/") for f in files), (c.name, files)
    assert "triton/standin-speculative.bin" in files
    assert "key.json" in files
    assert result["caches"]["total"]["files"] == len(files) - 1
    assert result["server_timings"]["warmup_s"][0] >= 0.2  # the first request compiled
    assert processes_mentioning(f"--port {d.server.port}") == []  # stopped, nothing left


def test_the_record_says_where_the_uncached_start_went_read_from_sglangs_own_output(d, cache, local, record):
    """The compile job's server is a start without the caches: its timeline (infra/runtime/timeline.py) and
    compile_deep_gemm's time per GEMM shape are in the job's record, which `invoke compile --json` prints."""
    lines: list[tuple[str, str]] = []
    env = compile_env(record) | {"FAKE_SGLANG": json.dumps({"sglang_log": True, "jit_seconds": 0,
                                                            "first_request_seconds": 0.2})}
    result = run(d, cache, local, record, env=env, on_line=lambda step, t, line: lines.append((step, line)))
    assert [p["phase"]
            for p in result["server_timeline"]][:5] == ["arguments", "scheduler_start", "weights", "kv_cache",
                                                                    "cuda_graphs"]
    assert result["server_timeline"][-1]["end_s"] == result["server_timings"]["ready_s"]
    assert result["deep_gemm_shapes"]["shapes"][0] | {"seconds": 0} == {"kernel": "GEMM_NT_F8F8BF16", "n": 6144,
                                                                      "k": 4096, "groups": 1, "seconds": 0}
    assert {step for step, _ in lines} == {"compile_deep_gemm", "server"}


def test_compile_deep_gemm_is_bounded_by_the_budget_derived_from_measured_compiles(d):
    from infra.runtime import spec

    assert spec.compile_budget(d).deep_gemm_kill_after_seconds == 1364  # see tests/test_cold_start.py


def test_a_server_that_restores_the_tree_finds_every_kernel(d, cache, local, record, tmp_path, subreaper):
    run(d, cache, local, record)
    jit_log = record.with_name("jit.jsonl")
    assert json.loads(jit_log.read_text().splitlines()[-1])["hits"] == []  # the compile job compiled everything
    shutil.rmtree(local)  # a new container: nothing on local disk

    restored = compile_cache.restore(cache, kernels.kernel_fingerprint(d), local)
    assert restored.restored is True and restored.files > 0
    env = compile_env(record) | compile_cache.environment(local)
    readiness = lifecycle.Readiness(timeout=20, poll_interval=0.1, warmup=d.recipe.warmup, model=d.recipe.model)
    server = lifecycle.start_and_warm(sglang_args.launch_command(d), f"http://127.0.0.1:{d.server.port}", readiness,
                                      env=env)
    server.stop(grace=0)
    reap_children()
    last = json.loads(jit_log.read_text().splitlines()[-1])
    assert last["misses"] == [] and len(last["hits"]) == len(compile_cache.CACHES)  # nothing compiled again


def test_marker_is_written_after_the_commit_and_holds_the_key(d, cache, local, record):
    commits = VolumeCommits(cache, d)

    result = run(d, cache, local, record, commit_volume=commits)

    assert [c["marker"] for c in commits.calls] == [False, True]
    assert "deep_gemm/kernels/fp8_gemm_nt.cubin" in commits.calls[0]["published"]  # durable before the claim
    marker = kernels.marker_path(cache, d)
    assert marker == cache / ".infra-complete" / f"qwen3-8b-low-latency-{kernels.kernel_fingerprint(d)}.json"
    content = json.loads(marker.read_text())
    assert content["fingerprint"] == kernels.kernel_fingerprint(d)
    assert content["key"] == json.loads(json.dumps(kernels.kernel_key(d)))
    assert content["argv"] == sglang_args.compile_command(d)
    assert content["launch_argv"] == sglang_args.launch_command(d)
    assert {k: v for k, v in result.items() if k != "skipped"} == content
    assert sorted(p.name for p in marker.parent.iterdir()) == [marker.name]  # no temporary left
    key = json.loads((compile_cache.published_dir(cache, content["fingerprint"]) / "key.json").read_text())
    assert key["key"] == content["key"]


def test_second_run_finds_the_marker_and_starts_nothing(d, cache, local, record):
    first = run(d, cache, local, record)
    record.unlink()  # the stand-in rewrites it whenever it runs
    record.with_name("server-argv.json").unlink()
    commits = VolumeCommits(cache, d)

    second = run(d, cache, local, record, commit_volume=commits)

    assert not record.exists() and not record.with_name("server-argv.json").exists()
    assert second["skipped"] is True
    assert second["fingerprint"] == first["fingerprint"]
    assert commits.calls == []


def test_failed_compile_raises_with_exit_code_and_compiler_output_and_leaves_no_marker(d, cache, local, record):
    commits = VolumeCommits(cache, d)

    with pytest.raises(CompileFailed) as err:
        run(d, cache, local, record, env=compile_env(record, FAKE_COMPILE_FAIL="3"), commit_volume=commits)

    message = str(err.value)
    assert "exited with code 3" in message
    assert "RuntimeError: DeepGEMM JIT compilation failed: nvcc not found" in message
    assert record.exists()  # it really ran
    assert not record.with_name("server-argv.json").exists()  # and nothing after it
    assert not kernels.marker_path(cache, d).exists()
    assert not (cache / kernels.MARKERS).exists() and published(cache, d) == []
    assert commits.calls == []

    # The next, successful run is not blocked by the failure.
    assert run(d, cache, local, record)["skipped"] is False
    assert kernels.marker_path(cache, d).exists()


def test_a_server_that_dies_while_starting_fails_the_job_and_publishes_nothing(d, cache, local, record, subreaper):
    commits = VolumeCommits(cache, d)
    env = compile_env(record) | {"FAKE_SGLANG": json.dumps({"exit_after": 0.3, "exit_code": 5, "listen_after": 5})}
    with pytest.raises(CompileFailed, match=r"did not start and warm up.*exited with code 5"):
        run(d, cache, local, record, env=env, commit_volume=commits)
    assert published(cache, d) == [] and commits.calls == []
    assert not kernels.marker_path(cache, d).exists()
    reap_children()
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_compile_running_past_kill_after_is_killed_and_leaves_no_marker(cache, local, record):
    tag = f"acme/hung-{uuid.uuid4().hex[:12]}"  # appears in its command line, so we can look for it
    d = deployment(model=tag, port=free_port())
    commits = VolumeCommits(cache, d)
    began = time.monotonic()

    with pytest.raises(CompileFailed) as err:
        run(d, cache, local, record, env=compile_env(record, FAKE_COMPILE_SECONDS="60"), commit_volume=commits,
            kill_after=1.0)

    elapsed = time.monotonic() - began
    assert elapsed < 40, elapsed  # killed after 1 s, not waited for (60 s)
    message = str(err.value)
    assert "still running after 1 s; killed" in message
    assert "Compiling DeepGEMM kernels..." in message  # its last words
    assert processes_mentioning(tag) == []
    assert not kernels.marker_path(cache, d).exists()
    assert commits.calls == []


def test_deepgemm_disabled_runs_no_compiler_but_still_warms_the_server(d, cache, local, record):
    result = run(d, cache, local, record, env=compile_env(record, SGLANG_ENABLE_JIT_DEEPGEMM="0"))

    assert result["skipped"] is False and result["deep_gemm"] is False
    assert not record.exists()  # compile_deep_gemm never ran
    assert record.with_name("server-argv.json").exists()  # the server did
    assert "triton/standin-speculative.bin" in published(cache, d)
    assert kernels.marker_path(cache, d).exists()


def test_deepgemm_disabled_with_false_runs_no_compiler(d, cache, local, record):
    run(d, cache, local, record, env=compile_env(record, SGLANG_ENABLE_JIT_DEEPGEMM="false"))
    assert not record.exists()


CHANGES = {
    "gpu_count": 4,
    "gpu_type": "H200",
    "model_revision": "0123456789abcdef0123456789abcdef01234567",
    "sglang_image": "lmsysorg/sglang:v0.5.7-cu129-amd64-runtime",
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_kernel_key_changes_with_what_changes_the_kernels(d, field):
    other = changed(d, **{field: CHANGES[field]})  # kernel_key does not validate

    assert kernels.kernel_fingerprint(other) != kernels.kernel_fingerprint(d)
    assert kernels.marker_path("/cache", other) != kernels.marker_path("/cache", d)


def test_each_change_gets_its_own_fingerprint(d):
    prints = {kernels.kernel_fingerprint(changed(d, **{f: v})) for f, v in CHANGES.items()}
    assert len(prints | {kernels.kernel_fingerprint(d)}) == len(CHANGES) + 1


@pytest.mark.parametrize("changes", [{"min_containers": 3}, {"port": 9000}, {"scaledown_window": 1200}])
def test_kernel_key_ignores_what_does_not_change_the_kernels(d, changes):
    """Scaling and the listening port leave the compiled kernels valid: no recompile for them."""
    assert kernels.kernel_fingerprint(changed(d, **changes)) == kernels.kernel_fingerprint(d)


def test_a_changed_deployment_compiles_again_next_to_the_old_kernels(d, cache, local, record):
    run(d, cache, local, record)
    record.unlink()
    moved = changed(d, gpu_type="H200")

    result = run(moved, cache, local, record)

    assert result["skipped"] is False
    assert record.exists()  # the compiler ran for the new key
    assert kernels.marker_path(cache, d).exists() and kernels.marker_path(cache, moved).exists()
    # Back to the first deployment: still complete, nothing to do.
    assert published(cache, d) and published(cache, moved)  # two keys, two trees
    record.unlink()
    assert run(d, cache, local, record)["skipped"] is True
    assert not record.exists()


def test_a_marker_written_before_the_timeline_was_recorded_still_skips_the_job(d, cache, local, record):
    """The marker's layout before `server_timeline` and `deep_gemm_shapes` (infra/runtime/kernels.py at f964f2f^):
    read with those empty, everything it held kept, nothing compiled."""
    old = json.loads((FIXTURES / "compile_marker_before_timeline.json").read_text())
    marker = kernels.marker_path(cache, d)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps(old | {"written_by": "a newer version"}))
    result = run(d, cache, local, record)
    assert not record.exists()  # the compiler never ran
    assert result["skipped"] is True and result["server_timeline"] == [] and result["deep_gemm_shapes"] is None
    assert {k: result[k] for k in old} == old and "written_by" not in result
    assert kernels.CompileRecord.read(old).server_timings.ready_s == 313.389
