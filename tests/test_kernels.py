"""The kernel compile job, run for real: `infra.kernels.compile_kernels` starts the stand-in
`python3 -m sglang.compile_deep_gemm` (tests/fakes/sglang_standin) as a real subprocess.

What must hold: the compiler sees exactly the server's arguments (else it compiles kernels
for shapes the server never uses) and writes where SGLang reads; a marker exists only after
a successful, committed compile, keyed by everything that changes the kernels; a failed,
hung or disabled compile never leaves one.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from infra import kernels, sglang_args
from infra.kernels import CompileFailed
from tests.conftest import changed, deployment, processes_mentioning, standin_env


@pytest.fixture
def d():
    return deployment()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "deep_gemm"


@pytest.fixture
def record(tmp_path):
    return tmp_path / "compile-record.json"


def compile_env(record, **extra: str) -> dict[str, str]:
    """The stand-in on PYTHONPATH, recording what it received into `record`."""
    env = standin_env()
    env["FAKE_COMPILE_RECORD"] = str(record)
    env.pop("SGLANG_ENABLE_JIT_DEEPGEMM", None)
    env.update(extra)
    return env


class VolumeCommits:
    """A `commit_volume` that notes, at each call, whether the marker existed and which kernels did."""

    def __init__(self, cache, d):
        self.cache = cache
        self.marker = kernels.marker_path(cache, d)
        self.calls: list[dict] = []

    def __call__(self) -> None:
        kernel_files = sorted(
            str(p.relative_to(self.cache)) for p in self.cache.rglob("*") if p.is_file() and kernels.MARKERS not in p.parts
        )
        self.calls.append({"marker": self.marker.exists(), "kernels": kernel_files})


def test_compiler_receives_the_server_arguments_and_writes_into_the_cache_dir(d, cache, record):
    result = kernels.compile_kernels(d, cache, env=compile_env(record))

    seen = json.loads(record.read_text())
    # Launch arguments minus host and port, plus --timeout: the same shapes the server will ask for.
    assert seen["argv"] == sglang_args.compile_command(d)[3:]
    assert seen["argv"][: len(sglang_args.server_args(d))] == sglang_args.server_args(d)
    launch = sglang_args.launch_command(d)[3:]
    assert seen["argv"][:-2] == launch[: launch.index("--host")]
    assert seen["argv"][-2:] == ["--timeout", str(sglang_args.COMPILE_TIMEOUT)]
    assert "--host" not in seen["argv"] and "--port" not in seen["argv"]
    # SGLang writes to $SGLANG_DG_CACHE_DIR: it must be the Volume, whatever the caller's env said.
    assert seen["SGLANG_DG_CACHE_DIR"] == str(cache)
    assert (cache / "kernels" / "fp8_gemm_nt.cubin").stat().st_size == 4096
    assert result["skipped"] is False
    assert result["argv"] == sglang_args.compile_command(d)


def test_cache_dir_overrides_a_different_sglang_dg_cache_dir_in_env(d, cache, record, tmp_path):
    kernels.compile_kernels(d, cache, env=compile_env(record, SGLANG_DG_CACHE_DIR=str(tmp_path / "elsewhere")))
    assert json.loads(record.read_text())["SGLANG_DG_CACHE_DIR"] == str(cache)
    assert not (tmp_path / "elsewhere").exists()


def test_marker_is_written_after_the_commit_and_holds_the_fingerprint(d, cache, record):
    commits = VolumeCommits(cache, d)

    result = kernels.compile_kernels(d, cache, env=compile_env(record), commit_volume=commits)

    assert [c["marker"] for c in commits.calls] == [False, True]
    assert commits.calls[0]["kernels"] == ["kernels/fp8_gemm_nt.cubin"]  # kernels durable before the claim
    marker = kernels.marker_path(cache, d)
    assert marker == cache / ".infra-complete" / f"qwen3-8b-low-latency-{kernels.kernel_fingerprint(d)}.json"
    content = json.loads(marker.read_text())
    assert content["fingerprint"] == kernels.kernel_fingerprint(d)
    assert content["key"] == json.loads(json.dumps(kernels.kernel_key(d)))
    assert content["argv"] == sglang_args.compile_command(d)
    assert content["files"] == 1  # the marker itself is not counted as a kernel
    assert {k: v for k, v in result.items() if k != "skipped"} == content
    assert sorted(p.name for p in marker.parent.iterdir()) == [marker.name]  # no temporary left


def test_second_run_finds_the_marker_and_starts_no_compiler(d, cache, record):
    first = kernels.compile_kernels(d, cache, env=compile_env(record))
    record.unlink()  # the stand-in rewrites it whenever it runs
    commits = VolumeCommits(cache, d)

    second = kernels.compile_kernels(d, cache, env=compile_env(record), commit_volume=commits)

    assert not record.exists()
    assert second["skipped"] is True
    assert second["fingerprint"] == first["fingerprint"]
    assert commits.calls == []


def test_failed_compile_raises_with_exit_code_and_compiler_output_and_leaves_no_marker(d, cache, record):
    commits = VolumeCommits(cache, d)

    with pytest.raises(CompileFailed) as err:
        kernels.compile_kernels(d, cache, env=compile_env(record, FAKE_COMPILE_FAIL="3"), commit_volume=commits)

    message = str(err.value)
    assert "exited with code 3" in message
    assert "RuntimeError: DeepGEMM JIT compilation failed: nvcc not found" in message
    assert record.exists()  # it really ran
    assert not kernels.marker_path(cache, d).exists()
    assert not (cache / kernels.MARKERS).exists()
    assert commits.calls == []

    # The next, successful run is not blocked by the failure.
    assert kernels.compile_kernels(d, cache, env=compile_env(record))["skipped"] is False
    assert kernels.marker_path(cache, d).exists()


def test_compile_running_past_kill_after_is_killed_and_leaves_no_marker(cache, record):
    tag = f"acme/hung-{uuid.uuid4().hex[:12]}"  # appears in its command line, so we can look for it
    d = deployment(model=tag)
    commits = VolumeCommits(cache, d)
    began = time.monotonic()

    with pytest.raises(CompileFailed) as err:
        kernels.compile_kernels(
            d, cache, env=compile_env(record, FAKE_COMPILE_SECONDS="60"), commit_volume=commits, kill_after=1.0
        )

    elapsed = time.monotonic() - began
    assert elapsed < 15, elapsed
    message = str(err.value)
    assert "still running after 1 s; killed" in message
    assert "Compiling DeepGEMM kernels..." in message  # its last words
    assert processes_mentioning(tag) == []
    assert not kernels.marker_path(cache, d).exists()
    assert commits.calls == []


def test_deepgemm_disabled_skips_without_running_anything(d, cache, record):
    result = kernels.compile_kernels(d, cache, env=compile_env(record, SGLANG_ENABLE_JIT_DEEPGEMM="0"))

    assert result["skipped"] is True
    assert "SGLANG_ENABLE_JIT_DEEPGEMM=0" in result["reason"]
    assert not record.exists()
    assert not kernels.marker_path(cache, d).exists()


def test_deepgemm_disabled_with_false_skips(d, cache, record):
    result = kernels.compile_kernels(d, cache, env=compile_env(record, SGLANG_ENABLE_JIT_DEEPGEMM="false"))
    assert result["skipped"] is True
    assert not record.exists()


CHANGES = {
    "tp_size": 4,
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


def test_a_changed_deployment_compiles_again_next_to_the_old_kernels(d, cache, record):
    kernels.compile_kernels(d, cache, env=compile_env(record))
    record.unlink()
    moved = changed(d, gpu_type="H200")

    result = kernels.compile_kernels(moved, cache, env=compile_env(record))

    assert result["skipped"] is False
    assert record.exists()  # the compiler ran for the new key
    assert kernels.marker_path(cache, d).exists() and kernels.marker_path(cache, moved).exists()
    # Back to the first deployment: still complete, nothing to do.
    record.unlink()
    assert kernels.compile_kernels(d, cache, env=compile_env(record))["skipped"] is True
    assert not record.exists()
