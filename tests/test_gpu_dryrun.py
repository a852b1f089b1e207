"""The GPU acceptance suite (tests/gpu) and benchmarks/cold_start_gpu.py, run end to end on CPU.

Where CI has no GPU they would only ever be skipped, and a broken fixture or a renamed
field would first show on a GPU machine, whose time is scarce. Here they run for real,
through the project's settings, launch command and lifecycle, against the stand-ins: the
`sglang` stand-in (launch_server, bench_serving), an `nvidia-smi` stand-in that reports
the GPU memory the live stand-in servers say they hold, and an empty `torch` marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FAKES, REPO


def dryrun_env(tmp_path, **fake) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_", "HF_"))}
    env["PATH"] = os.pathsep.join([str(FAKES / "gpu_dryrun" / "bin"), os.path.dirname(sys.executable),
                                   env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(FAKES / "sglang_standin"), str(FAKES / "gpu_dryrun" / "site"), str(REPO)])
    env["FAKE_GPU_DIR"] = str(tmp_path / "gpu")
    env["FAKE_SGLANG"] = json.dumps({"tokens": 4000, "itl": 0.001} | fake)
    env["HOME"] = str(tmp_path / "home")  # the cold-start benchmark clears per-user caches: not the developer's
    return env


@pytest.mark.timeout(300)  # two stand-in servers, invoke bench, bench_serving: ~110 s idle, more under load
def test_the_gpu_suite_runs_end_to_end_against_the_stand_ins(tmp_path):
    report = tmp_path / "report.json"
    env = dryrun_env(tmp_path) | {"GPU_SUITE_REPORT": str(report), "GPU_SUITE_HUB": str(tmp_path / "hub")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "tests/gpu"],
                          cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "8 passed" in done.stdout
    numbers = json.loads(report.read_text())
    assert set(numbers) == {"crash_detection", "server_a", "readiness", "smoke_without_parser",
                            "bench_vs_bench_serving",
                            "drain", "snapshot", "smoke_with_parser"}
    assert numbers["drain"]["tokens"] == 2000 and numbers["drain"]["drained"] is True
    assert numbers["snapshot"]["gpu_mib_resumed"] > numbers["snapshot"]["gpu_mib_released"]
    assert set(numbers["bench_vs_bench_serving"]) == {"c1", "c16"}


@pytest.mark.timeout(600)  # a hang guard: a pytest process running two stand-in starts and a compile job
def test_the_opt_in_real_shape_test_runs_against_the_stand_ins(tmp_path):
    report = tmp_path / "real-shape.json"
    env = dryrun_env(tmp_path, jit_seconds=0.5, first_request_seconds=0.5, sglang_log=True) | {
        "GPU_SUITE_REAL_SHAPE": "1", "GPU_SUITE_REPORT": str(report), "GPU_SUITE_HUB": str(tmp_path / "hub"),
        "GPU_SUITE_CACHE_ROOT": str(tmp_path / "root"), "FAKE_COMPILE_SECONDS": "0.3"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "tests/gpu/test_real_shape.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=540)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert json.loads(report.read_text())["steps"]["cached"]["record"]["outcome"] == "ready"


@pytest.mark.timeout(420)  # a server start and 14 tool runs, each a process: minutes on a CI machine under load
def test_the_bench_comparison_starts_a_server_and_gives_bench_serving_exactly_the_requests_invoke_bench_sent(tmp_path):
    """benchmarks/bench_vs_bench_serving.py --launch (issue 32 item 3) against the stand-ins: one server started through
    the project's lifecycle, an unmeasured warm-up, then per repeat and level the radix cache flushed, invoke bench,
    the cache flushed, bench_serving replaying the file invoke bench wrote (no warm-up on either side); then both on the
    zero-latency loopback server; medians, ratios and the client overhead attributed."""
    record, out = tmp_path / "received.jsonl", tmp_path / "bvb"
    env = dryrun_env(tmp_path, record=str(record))
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_vs_bench_serving.py", "--launch", "tiny", "--out", str(out), "--root",
         str(tmp_path / "root"), "--concurrency", "1,4", "--requests", "4,8", "--repeats", "2", "--max-tokens", "16",
         "--prompt-tokens", "8"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert set(result["levels"]) == {"1", "4"} and set(result["loopback"]) == {"1", "4"}
    for c, level in result["levels"].items():
        assert level["repeats"] == 2 and level["failed"] == 0, c
        assert set(level["ratio"]) >= {"ttft_p50_ms", "tpot_p50_ms", "output_tok_s"}
        assert level["ratio"]["tpot_p50_ms"] > 0
        assert set(level["attribution"]) == {"ttft_p50_ms", "tpot_p50_ms", "itl_p50_ms"}
        floor = result["loopback"][c]
        assert floor["ours"]["client_cpu_ms_per_request"] is not None and floor["theirs"]["ttft_p50_ms"] > 0
    # What the server received, cut at each cache flush: the warm-up, then (invoke bench, bench_serving) pairs.
    received = [json.loads(line) for line in record.read_text().splitlines()]
    segments: list[list[dict]] = [[]]
    for r in received:
        if r["path"] == "/flush_cache":
            segments.append([])
        elif r["path"] == "/v1/chat/completions":
            segments[-1].append(r["body"])
    assert len(segments) == 1 + 2 * 2 * 2  # warm-up, then 2 repeats x 2 levels x 2 tools
    # the recipe's warm-up, then invoke bench's readiness probe and 8 unmeasured requests
    assert len(segments[0]) >= 1 + 8
    for i, n in zip(range(1, len(segments), 2), [4, 8, 4, 8]):
        ours, theirs = segments[i][1:], segments[i + 1]  # invoke bench's first request is its readiness probe
        assert len(ours) == len(theirs) == n  # no warm-up on either side
        assert sorted(json.dumps(b["messages"]) for b in ours) == sorted(json.dumps(b["messages"]) for b in theirs)
        assert {b["max_tokens"] for b in ours} == {b["max_completion_tokens"] for b in theirs} == {16}
        for body in ours + theirs:
            assert body["temperature"] == 0
            assert body["ignore_eos"] is True
            assert body["stream_options"] == {"include_usage": True}
        assert len({json.dumps(b["messages"]) for b in ours}) == n  # distinct prompts: no prefix hit within a run
    assert "within +-10%" in done.stdout and "ratio without it" in done.stdout
    assert (out / "DONE").exists() and (out / "table.txt").read_text().startswith("invoke bench / sglang.bench_serving")


def test_the_cold_start_benchmark_runs_end_to_end_against_the_stand_in(tmp_path):
    out = tmp_path / "cold.json"
    env = dryrun_env(tmp_path, jit_seconds=1.5, first_request_seconds=1.5)
    done = subprocess.run(
        [sys.executable, "benchmarks/cold_start_gpu.py", "--hub", str(tmp_path / "hub"), "--volume",
         str(tmp_path / "volume"),
         "--root", str(tmp_path / "root"), "--out", str(tmp_path / "run"), "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    # The stand-in "compiles" only what it does not find in the caches the variables point to.
    assert result["without"]["start_to_healthy_s"] >= 1.5 and result["without"]["first_speculative_request_s"] >= 1.5
    assert result["ratio"]["launch_to_ready_plus_restore"] < 0.5
    assert result["restore"]["restored"] is True
    assert result["escaped_without"] == {} and result["escaped_with"] == {}
    assert "launch to ready + restore, ratio" in done.stdout


def test_the_real_shape_benchmark_every_step_detached_and_polled_against_the_stand_in(tmp_path):
    """Issue 23 item 1: the real shape's models built at their real widths, the compile job, a start from the published
    caches and the optional ones (no piecewise graphs, no caches at all, a GPU snapshot, the VLM), each recorded by
    infra/runtime/startup.py and printed from that record; run detached, its log polled."""
    run = tmp_path / "run"
    env = dryrun_env(tmp_path, jit_seconds=0.3, first_request_seconds=0.3, sglang_log=True)
    command = [sys.executable, "benchmarks/cold_start_gpu.py", "--shape", "real", "--out", str(run),
               "--steps", "compile,cached,no-piecewise,uncached,snapshot,vlm", "--root", str(tmp_path / "root")]
    started = subprocess.run([*command, "--detach"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0 and "started in the background" in started.stdout, started.stderr
    polled = ""
    for _ in range(20):  # as a GPU machine's caller would: one bounded command after another
        done = subprocess.run([*command[:2], "--poll", str(run), "--for", "15"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
        polled += done.stdout
        if "== finished" in done.stdout:
            break
    assert "== finished" in polled and '"compile": "ok"' in polled, polled[-3000:]
    result = json.loads((run / "results.json").read_text())
    steps = result["steps"]
    assert {name: step.get("ok") for name, step in steps.items()} == {
        "compile": True, "cached": True, "no-piecewise": True, "uncached": True, "snapshot": True, "vlm": True}
    compiled = steps["compile"]
    assert compiled["deep_gemm_shapes"]["shapes"][0]["n"] == 6144  # compile_deep_gemm's output, read per shape
    assert [p["phase"] for p in compiled["server_timeline"]][:2] == ["arguments", "scheduler_start"]
    assert compiled["compile_budget"]["deep_gemm_kill_after_seconds"] == 1364
    cached = steps["cached"]["record"]
    assert cached["outcome"] == "ready" and cached["misses"] == {} and cached["restore"]["restored"] is True
    assert cached["missing"] == [] and cached["phases"][0]["phase"] == "arguments"
    for variant in ("no-piecewise", "snapshot"):  # other keys, given the recipe's tree: what they lack would be misses
        record = steps[variant]["record"]
        assert record["restore"]["fingerprint"] == compiled["fingerprint"] and record["misses"] == {}, variant
    uncached = steps["uncached"]["record"]
    assert uncached["restore"]["restored"] is False and set(uncached["misses"]) >= {"deep_gemm", "triton"}
    assert steps["snapshot"]["restore_record"]["kind"] == "snapshot_restore"
    vlm = steps["vlm"]  # launched with DeepGEMM compiling lazily, then the recipe's smoke test with its image
    assert vlm["env_beyond_the_image"] == {"SGLANG_JIT_DEEPGEMM_PRECOMPILE": "0"}
    assert "--mm-attention-backend" in vlm["argv"] and vlm["smoke"]["passed"] is True
    assert result["models"]["target"].endswith("8b3f0c1e5d7a9b2c4e6f8a0b1c3d5e7f9a2b4c6d")
    recorded = [json.loads(line) for line in (run / "starts.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in recorded] == ["start", "start", "start", "snapshot_boot", "snapshot_restore", "start"]
    log = (run / "logs" / "cached.log").read_text().splitlines()
    assert float(log[0].split()[0]) >= 0 and any("Capture cuda graph end" in line for line in log)
    assert "compile job" in polled and "cached: " in polled  # the phase table and each start's line


def test_the_gpu_suite_picks_server_ports_no_outgoing_connection_can_hold():
    """SGLang binds its HTTP port last: a port in the ephemeral range can meanwhile become some connection's source
    port (it happened to the compile job's server on the H200, 2026-12-02). Ports and their gRPC twins stay below it."""
    from tests.gpu import real_sglang as real

    ephemeral = real.ephemeral_ports()
    ports = {real.free_port() for _ in range(50)}
    assert all(p not in ephemeral and p + 10000 not in ephemeral and p + 10000 <= 55535 for p in ports)
    assert len(ports) > 10  # still chosen at random: parallel starts do not collide
