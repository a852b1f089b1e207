"""Cold start at the low-latency recipe's real shape, on a real GPU: opt-in (GPU_SUITE_REAL_SHAPE=1).

Runs benchmarks/cold_start_gpu.py --shape real (the compile job's body, then a new container's start through
infra/runtime/startup.py, the one infra/runtime/app.py runs) on the Qwen3-8B-FP8-shaped model and full-width
EAGLE-3 drafter of tests/gpu/real_shape.py, and asserts what the compile cache and the timeline promise at
that size:

- compile_deep_gemm exited 0 (warm_caches raises otherwise), its GEMM shapes were read from its output, and
  DeepGEMM kernels were published;
- a new container's start from the restored tree became ready, faster than the compile job's own start, with
  no cache miss, every expected phase of its timeline present, and phases that add up to its launch-to-ready;
- nothing escaped to a per-user default cache.

It takes ~17 minutes on one H200 (compile_deep_gemm alone ~10.5), so it is skipped, with the reason, unless a
CUDA GPU and SGLang are here AND GPU_SUITE_REAL_SHAPE=1. GPU_SUITE_REAL_SHAPE_UNCACHED=1 adds a start without
any cache (~12 more minutes: DeepGEMM compiles inside it). On a lent machine whose commands are limited to
minutes, run the benchmark itself detached instead (`--detach`, then `--poll`). GPU_SUITE_REPORT, if set,
names a JSON file that receives the results; GPU_SUITE_HUB and GPU_SUITE_CACHE_ROOT as in test_real_sglang.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from tests.gpu import real_sglang as real

REPO = Path(__file__).resolve().parents[2]


def _reason() -> str | None:
    if os.environ.get("GPU_SUITE_REAL_SHAPE") != "1" and real.SHAPE != "real":
        return ("real-shape cold start is opt-in: set GPU_SUITE_SHAPE=real or GPU_SUITE_REAL_SHAPE=1 "
                "(takes ~17 minutes of GPU time)")
    return real.unavailable_reason()


def only_for(recipe: str):
    """Under GPU_SUITE_RECIPE (invoke gpu-test --shape real), each recipe runs its own shape's test only."""
    return pytest.mark.skipif(real.SUITE_RECIPE not in (None, recipe),
                              reason=f"GPU_SUITE_RECIPE={real.SUITE_RECIPE}: this test is {recipe}'s shape")


REASON = _reason()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"real-shape cold start: {REASON}"),
    pytest.mark.timeout(3600),
]


def _benchmark():
    spec = importlib.util.spec_from_file_location("cold_start_gpu", REPO / "benchmarks" / "cold_start_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@only_for(real.RECIPE)
def test_compile_then_a_cached_start_at_the_real_shape(tmp_path):
    steps = ["compile", "cached"] + (["uncached"] if os.environ.get("GPU_SUITE_REAL_SHAPE_UNCACHED") == "1" else [])
    out = tmp_path / "run"
    argv = ["--shape", "real", "--steps", ",".join(steps), "--out", str(out), "--budget", "3300"]
    if hub := os.environ.get("GPU_SUITE_HUB"):
        argv += ["--hub", hub]
    if root := os.environ.get("GPU_SUITE_CACHE_ROOT"):  # default: the fixed root containers use (wiped first)
        argv += ["--root", root]
    _benchmark().main(argv)
    result = json.loads((out / "results.json").read_text())
    if path := os.environ.get("GPU_SUITE_REPORT"):
        Path(path).write_text(json.dumps(result, indent=1, default=str))
    compiled, cached = result["steps"]["compile"], result["steps"]["cached"]

    assert compiled.get("ok"), compiled.get("error")
    assert compiled["job_phases_s"].get("deep_gemm", 0) > 0, "compile_deep_gemm did not run"
    assert compiled["deep_gemm_shapes"] and compiled["deep_gemm_shapes"]["shapes"], "no GEMM shape read from its output"
    assert compiled["caches"]["deep_gemm"]["files"] > 0, "no DeepGEMM kernel was published"
    assert cached.get("ok"), cached.get("error")
    record = cached["record"]
    assert record["restore"]["restored"] is True and record["outcome"] == "ready"
    assert record["misses"] == {}, f"the start compiled what the compile job did not: {record['misses']}"
    assert record["missing"] == [], f"phases not seen in SGLang's log: {record['missing']}"
    assert record["phases"][-1]["end_s"] == pytest.approx(record["launch_to_ready_s"], abs=0.01)
    ready, compile_start = record["launch_to_ready_s"], compiled["server_timings"]["ready_s"]
    assert ready < compile_start, (f"cached start {ready:.1f} s is not faster than the compile job's start "
                                   f"{compile_start:.1f} s")
    assert compiled["escaped"] == {} and cached["escaped"] == {}, (compiled["escaped"], cached["escaped"])
    if "uncached" in steps:
        uncached = result["steps"]["uncached"]
        assert uncached.get("ok"), uncached.get("error")
        assert uncached["record"]["launch_to_ready_s"] > compile_start


@only_for("qwen3.6-35b-vlm")
def test_the_vision_recipe_launches_at_its_real_shape_and_answers_with_an_image(tmp_path):
    """The VLM recipe's own arguments on the Qwen3.6-35B-A3B-FP8 stand-in (tests/gpu/real_shape.py vlm_config), nothing
    cached, DeepGEMM compiling lazily: ready, then the recipe's smoke test with its image, as `invoke smoke` runs it.
    On one H200 (2026-12-02): ready in 354.5 s, smoke passed (benchmarks/results/gpu_2026-12-02_h200.json)."""
    out = tmp_path / "run"
    argv = ["--shape", "real", "--steps", "vlm", "--out", str(out), "--budget", "1200"]
    if hub := os.environ.get("GPU_SUITE_HUB"):
        argv += ["--hub", hub]
    if root := os.environ.get("GPU_SUITE_CACHE_ROOT"):
        argv += ["--root", root]
    _benchmark().main(argv)
    vlm = json.loads((out / "results.json").read_text())["steps"]["vlm"]
    assert vlm.get("ok"), vlm.get("error") or vlm.get("reason")
    assert vlm["record"]["outcome"] == "ready" and vlm["record"]["missing"] == [], vlm["record"]["missing"]
    assert vlm["smoke"]["passed"] is True, vlm["smoke"]
    assert "--mamba-scheduler-strategy" in vlm["argv"] and "--speculative-algorithm" in vlm["argv"]
