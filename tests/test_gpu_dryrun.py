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

from tests.conftest import FAKES, REPO


def dryrun_env(tmp_path, **fake) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_", "HF_"))}
    env["PATH"] = os.pathsep.join([str(FAKES / "gpu_dryrun" / "bin"), os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(FAKES / "sglang_standin"), str(FAKES / "gpu_dryrun" / "site"), str(REPO)])
    env["FAKE_GPU_DIR"] = str(tmp_path / "gpu")
    env["FAKE_SGLANG"] = json.dumps({"tokens": 4000, "itl": 0.001} | fake)
    env["HOME"] = str(tmp_path / "home")  # the cold-start benchmark clears per-user caches: not the developer's
    return env


def test_the_gpu_suite_runs_end_to_end_against_the_stand_ins(tmp_path):
    report = tmp_path / "report.json"
    env = dryrun_env(tmp_path) | {"GPU_SUITE_REPORT": str(report), "GPU_SUITE_HUB": str(tmp_path / "hub")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "tests/gpu"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "8 passed" in done.stdout
    numbers = json.loads(report.read_text())
    assert set(numbers) == {"crash_detection", "server_a", "readiness", "smoke_without_parser", "bench_vs_bench_serving",
                            "drain", "snapshot", "smoke_with_parser"}
    assert numbers["drain"]["tokens"] == 2000 and numbers["drain"]["drained"] is True
    assert numbers["snapshot"]["gpu_mib_resumed"] > numbers["snapshot"]["gpu_mib_released"]
    assert set(numbers["bench_vs_bench_serving"]) == {"c1", "c16"}


def test_the_cold_start_benchmark_runs_end_to_end_against_the_stand_in(tmp_path):
    out = tmp_path / "cold.json"
    env = dryrun_env(tmp_path, jit_seconds=1.5, first_request_seconds=1.5)
    done = subprocess.run(
        [sys.executable, "benchmarks/cold_start_gpu.py", "--hub", str(tmp_path / "hub"), "--volume", str(tmp_path / "volume"),
         "--root", str(tmp_path / "root"), "--json", str(out)],
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
