"""The measured figures `plan`'s cold-start estimate is made of, each saying where and on what it was measured.

Two shapes have been measured from launch to ready through the project's own code (the compile job's
body, compile_cache.restore, lifecycle.start_and_warm), both with real SGLang 0.5.11, TP 1, dummy weights:

- TINY_QWEN3: the GPU suite's tiny Qwen3 (4 layers, hidden 256) + tiny EAGLE-3 drafter, one H100
  (benchmarks/results/cold_start_h100.json, 2026-11-23). Measured as whole spans only: launch to
  healthy, the first warm-up request, the rest of the warm-up.
- QWEN3_8B_FP8_EAGLE3: Qwen3-8B-FP8's real architecture + a full-width EAGLE-3 drafter (tests/gpu/real_shape.py),
  one H200 (benchmarks/results/cold_start_real_shape_h200.json, 2026-12-01). Measured phase by phase, the
  phases read from SGLang's log by infra/runtime/timeline.py: "cached" is a new container's start from the
  compile job's published tree with the recipe's arguments of the day ("before"); "uncached" is the
  compile job's own server start, with nothing cached but DeepGEMM (compile_deep_gemm ran first). DeepGEMM's
  JIT itself is compile_deep_gemm's per-shape time, parsed from its log.

tests/test_cold_start.py checks every figure against the file it cites, and that for both shapes the
estimate is within ±25% of the measured start, cached and uncached.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from infra.control.costs import Shown
from infra.runtime import spec

TINY_SOURCE = "benchmarks/results/cold_start_h100.json"
REAL_SOURCE = "benchmarks/results/cold_start_real_shape_h200.json"


@dataclass(frozen=True)
class Figure:
    """Seconds a phase took with the compile caches restored, and without them; where each number is in `source`."""

    cached: float
    uncached: float
    cached_at: str  # JSON path in the profile's source file
    uncached_at: str


@dataclass(frozen=True)
class Profile:
    name: str
    measured_on: str  # GPU, SGLang version, shape, tensor parallelism
    sglang_version: str
    source: str
    models: tuple[str, ...]  # the model ids this profile was measured with (or is the shape of)
    # Launch to healthy, phase by phase, in order (infra/runtime/timeline.MILESTONES' names, or a whole span).
    phases: tuple[tuple[str, Figure], ...]
    first_request: Figure  # the first warm-up request: with speculative decoding its first decode JIT-compiles
    warmup_request: Figure  # each later warm-up request
    restore: Figure  # the compile-cache copy from the Volume to local disk (cached: a tree; uncached: none)
    restored_mb: float  # the size of that tree
    # DeepGEMM's JIT of one GEMM shape when nothing was precompiled (None: this shape has no FP8 GEMMs); loading
    # compiled kernels is in `cuda_graphs`.
    deep_gemm_per_shape: Figure | None = None
    deep_gemm_shapes: int = 0  # how many GEMM shapes it was measured over
    piecewise_phase: str | None = None  # the phase that only versions capturing piecewise CUDA graphs have
    skipped_warmup_phase: str | None = None  # the phase --skip-server-warmup removes
    draft_phases: tuple[str, ...] = ()


def _phase(name: str, cached: float, uncached: float, *, cached_from: str = "before.timeline",
           uncached_from: str = "compile.server_timeline") -> tuple[str, Figure]:
    return name, Figure(cached, uncached, f"{cached_from}.phases[{name}]", f"{uncached_from}.phases[{name}]")


QWEN3_8B_FP8_EAGLE3 = Profile(
    name="qwen3-8b-fp8-eagle3",
    measured_on="1×H200, SGLang 0.5.11, Qwen3-8B-FP8 shape + full-width EAGLE-3 drafter, TP 1, dummy weights",
    sglang_version="0.5.11",
    source=REAL_SOURCE,
    models=("Qwen/Qwen3-8B-FP8", "infra-test/qwen3-8b-fp8-shape"),
    phases=(
        _phase("arguments", 22.07, 27.28),
        # The stand-in tokenizer loaded 3 times per process here; loading once as Qwen's does (2026-12-02) took
        # 3.2 s off scheduler_start and 7.0 s off draft_model: with a real tokenizer these two err ~10 s high.
        _phase("scheduler_start", 21.666, 33.358),  # imports of the spawned scheduler (~22 s), tokenizer, model
        _phase("weights", 2.503, 2.881),  # torch distributed init and model init; dummy weights load in 0.2 s
        _phase("kv_cache", 0.413, 0.557),
        _phase("cuda_graphs", 6.011, 10.413),  # 14 batch sizes; DeepGEMM's 4 shapes loaded inside (3.5 s cached)
        _phase("piecewise_graphs", 51.756, 62.236),  # 58 token counts, torch.compile'd: 0.5.10+ text models only
        _phase("draft_model", 8.995, 9.263),
        _phase("draft_graphs", 7.313, 21.796),
        _phase("draft_extend_graphs", 1.436, 2.321),
        _phase("http_server", 0.568, 0.873),
        _phase("fired_up", 1.533, 1.905),  # SGLang's own warm-up request: none with --skip-server-warmup
        _phase("healthy", 0.986, 1.221),
    ),
    first_request=Figure(0.848, 137.876, "before.timings.warmup_s[0]", "compile.server_timings.warmup_s[0]"),
    warmup_request=Figure(0.689, 0.705, "before.timings.warmup_s[1:] (mean)",
                          "compile.server_timings.warmup_s[1:] (mean)"),
    restore=Figure(0.102, 0.0, "before.restore.seconds", "(no tree: nothing copied)"),
    restored_mb=65.2,
    # The same measurement the compile job's timeout is derived from (infra/runtime/spec.py): one place for it.
    deep_gemm_per_shape=Figure(0.0, spec.DEEP_GEMM_JIT_SECONDS / spec.DEEP_GEMM_MEASURED_SHAPES,
                               "(loaded inside cuda_graphs)",
                               "compile.compile_deep_gemm_timeline.deep_gemm.seconds / its shapes"),
    deep_gemm_shapes=spec.DEEP_GEMM_MEASURED_SHAPES,
    piecewise_phase="piecewise_graphs",
    skipped_warmup_phase="fired_up",
    draft_phases=("draft_model", "draft_graphs", "draft_extend_graphs"),
)

TINY_QWEN3 = Profile(
    name="tiny-qwen3-eagle3",
    measured_on="1×H100, SGLang 0.5.11, the GPU suite's tiny Qwen3 (4 layers, hidden 256) + tiny EAGLE-3, TP 1, "
                "dummy weights",
    sglang_version="0.5.11",
    source=TINY_SOURCE,
    models=("infra-test/tiny-qwen3",),
    phases=(("launch_to_healthy", Figure(65.051, 148.721, "with.start_to_healthy_s", "without.start_to_healthy_s")),),
    first_request=Figure(0.384, 114.193, "with.first_speculative_request_s", "without.first_speculative_request_s"),
    warmup_request=Figure(0.2025, 0.3265, "with.rest_of_warmup_s / 2", "without.rest_of_warmup_s / 2"),
    restore=Figure(0.083, 0.0, "restore.seconds", "(no tree: nothing copied)"),
    restored_mb=54.0,
)

PROFILES = (QWEN3_8B_FP8_EAGLE3, TINY_QWEN3)


class MeasuredStart(Shown):
    """A whole start measured with a model that has no phase-by-phase profile: `plan` shows it beside the estimate
    made from the nearest profile, so a measurement the docs cite is never left out."""

    models: tuple[str, ...] = Field(exclude=True)
    seconds: float  # launch to ready
    healthy_seconds: float  # launch to SGLang's first healthy answer; the warm-up requests after it
    warmup_seconds: tuple[float, ...]
    what: str
    measured_on: str
    source: str
    at: str = Field(exclude=True)  # JSON path of `seconds` in `source`


VLM_SOURCE = "benchmarks/results/gpu_2026-12-02_h200.json"
# The vision recipe's own arguments on a stand-in at Qwen3.6-35B-A3B-FP8's shape (tests/gpu/real_shape.py
# vlm_config), nothing cached, DeepGEMM compiling lazily (SGLANG_JIT_DEEPGEMM_PRECOMPILE=0: only the shapes the start
# hit). Its compile job and a start from its caches were not run, so there is no cached figure to build phases from.
QWEN36_35B_VLM_UNCACHED = MeasuredStart(
    models=("Qwen/Qwen3.6-35B-A3B-FP8", "infra-test/qwen3.6-35b-a3b-fp8-shape"),
    seconds=354.541, healthy_seconds=222.659, warmup_seconds=(130.641, 1.24),
    what="a start without any cache (DeepGEMM compiling lazily), the recipe's arguments and image warm-ups",
    measured_on="1×H200, SGLang 0.5.11, stand-in at Qwen3.6-35B-A3B-FP8's shape, TP 1, dummy weights",
    source=VLM_SOURCE, at="vlm.launch_to_ready_s",
)
MEASURED_STARTS = (QWEN36_35B_VLM_UNCACHED,)


def measured_starts(model: str) -> list[MeasuredStart]:
    return [m for m in MEASURED_STARTS if model in m.models]
NEAREST = QWEN3_8B_FP8_EAGLE3  # for a model nothing was measured with: the measured shape closest to the recipes'

# A GPU snapshot restore (single GPU): SGLang takes its memory back and answers one generation. Measured on the H200
# at the real shape (snapshot.restore_to_ready_s: resume 1.35 s + first request 0.63 s). Modal's own restore of the
# container (CPU memory, GPU state) was not measured: it is the assumption MODAL_SNAPSHOT_RESTORE_SECONDS.
SNAPSHOT_RESUME = Figure(1.979, 1.979, "snapshot.restore_to_ready_s", "snapshot.restore_to_ready_s")
MODAL_SNAPSHOT_RESTORE_SECONDS = 20.0  # assumed, not measured: needs a real Modal snapshot restore


def profile_for(model: str) -> tuple[Profile, bool]:
    """The profile measured with this model (True), else the nearest measured one (False)."""
    for profile in PROFILES:
        if model in profile.models:
            return profile, True
    return NEAREST, False
