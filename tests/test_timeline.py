"""The start timeline (infra/runtime/timeline.py) read from real SGLang 0.5.11 output, captured on an H200.

The fixtures in tests/fixtures/sglang_logs/ are excerpts of the logs benchmarks/cold_start_gpu.py --shape real
wrote on 2026-12-01 (benchmarks/results/cold_start_real_shape_h200.json): whole lines, unaltered, each prefixed
with its seconds since launch, as the lifecycle timed them. Progress bars share lines with `\\r`; the harmless
`openai_harmony` traceback and the transformers tokenizer warning are in them. No wall clock is read here:
the (t, line) pairs carry the times.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_core import to_jsonable_python as plain

from infra.runtime import timeline
from infra.runtime.lifecycle import Timings
from tests.conftest import deployment

FIXTURES = Path(__file__).parent / "fixtures" / "sglang_logs"
# What the lifecycle measured of the same starts (results.json: phases.<name>.start.timings).
TIMINGS = {
    "0.5.11-h200-cached.log": Timings(healthy_s=125.25, warmup_s=[0.848, 0.717, 0.661], ready_s=127.476),
    "0.5.11-h200-cached-no-piecewise.log": Timings(healthy_s=92.444, warmup_s=[0.9, 0.705, 0.687], ready_s=94.736),
    "0.5.11-h200-compile-job-server.log": Timings(healthy_s=174.104, warmup_s=[137.876, 0.702, 0.707],
                                                  ready_s=313.389),
}


def read(name: str, log: timeline.StartLog | None = None) -> timeline.StartLog:
    log = log or timeline.StartLog(t0=0.0)
    for line in (FIXTURES / name).read_bytes().decode("utf-8").split("\n"):  # not read_text: it turns \r into \n
        if line:
            log.feed(float(line[:9]), line[10:])
    return log


def test_a_cached_start_with_piecewise_graphs_phase_by_phase():
    """SGLang 0.5.11 with the recipe's arguments of the day: 127.5 s to ready, 51.8 s of it piecewise CUDA graphs."""
    log = read("0.5.11-h200-cached.log")
    timings = TIMINGS["0.5.11-h200-cached.log"]
    assert log.milestones(timings) == {
        "arguments": 22.07, "scheduler_start": 43.736, "weights": 46.239, "kv_cache": 46.652, "cuda_graphs": 52.663,
        "piecewise_graphs": 104.419, "draft_model": 113.414, "draft_graphs": 120.727, "draft_extend_graphs": 122.163,
        "http_server": 122.731, "fired_up": 124.264, "healthy": 125.25,
    }
    phases = plain(timeline.segments(log.milestones(timings), timings.warmup_s, timings.ready_s))
    seconds = {p["phase"]: p["seconds"] for p in phases}
    assert seconds["piecewise_graphs"] == 51.756 and seconds["scheduler_start"] == 21.666
    assert [p["phase"] for p in phases][-3:] == ["warmup_1", "warmup_2", "warmup_3"]
    # Contiguous from launch to ready: the phases add up to the lifecycle's own launch-to-ready.
    assert phases[-1]["end_s"] == timings.ready_s
    assert sum(seconds.values()) == pytest.approx(timings.ready_s, abs=0.01)
    assert log.notes() == {} and log.unreadable == 0


def test_the_weights_of_target_and_drafter_are_told_apart():
    weights = plain(read("0.5.11-h200-cached.log").weights())
    assert weights == [{"at_s": 46.239, "elapsed_s": 0.21, "type": "Qwen3ForCausalLM"},
                       {"at_s": 108.688, "elapsed_s": 0.01, "type": "LlamaForCausalLMEagle3"}]


def test_deepgemm_loaded_from_the_cache_takes_about_a_second_per_shape():
    """Inside CUDA-graph capture: a `Try DeepGEMM JIT Compiling` line per GEMM shape (one appended to a progress
    bar after `\\r`), each ending where its warm-up bar reaches 100%."""
    deep_gemm = plain(read("0.5.11-h200-cached-no-piecewise.log").deep_gemm())
    assert [(s["n"], s["k"]) for s in deep_gemm["shapes"]] == [(6144, 4096), (4096, 4096), (24576, 4096), (4096, 12288)]
    assert all(0.5 < s["seconds"] < 2 for s in deep_gemm["shapes"])
    assert (deep_gemm["start_s"], deep_gemm["end_s"]) == (60.657, 65.277)


def test_deepgemm_jit_compiled_by_compile_deep_gemm_per_shape():
    """`python -m sglang.compile_deep_gemm` at the 8B shape, TP 1: four GEMM shapes, 47 to 121 s each."""
    log = read("0.5.11-h200-compile-deep-gemm.log")
    deep_gemm = plain(log.deep_gemm())
    assert [s["seconds"] for s in deep_gemm["shapes"]] == [101.148, 120.583, 46.469, 118.461]
    assert deep_gemm["seconds"] == 429.5
    assert [e for e in ("deep_gemm_compile_begin", "deep_gemm_compile_end") if log.first(e) is not None] == [
        "deep_gemm_compile_begin", "deep_gemm_compile_end"]


def test_piecewise_graphs_turned_off_is_a_note_not_a_missing_phase():
    log = read("0.5.11-h200-cached-no-piecewise.log")
    timings = TIMINGS["0.5.11-h200-cached-no-piecewise.log"]
    assert "piecewise_graphs" not in log.milestones(timings)
    assert log.notes() == {"piecewise_graphs": "not captured: --disable-piecewise-cuda-graph is set"}
    # With --skip-server-warmup SGLang says "fired up" before uvicorn's own line: a 0 s phase, not a negative one.
    seconds = timeline.StartRecord(phases=timeline.segments(log.milestones(timings), timings.warmup_s,
                                                            timings.ready_s)).phase_seconds()
    assert seconds["fired_up"] == 0.0 and seconds["draft_model"] == 10.483


def test_the_compile_jobs_uncached_start_shows_where_its_time_went():
    """DeepGEMM precompiled, everything else cold: the first speculative request compiled for 138 s."""
    log = read("0.5.11-h200-compile-job-server.log")
    timings = TIMINGS["0.5.11-h200-compile-job-server.log"]
    seconds = timeline.StartRecord(phases=timeline.segments(log.milestones(timings), timings.warmup_s,
                                                            timings.ready_s)).phase_seconds()
    assert seconds["warmup_1"] == 137.876
    assert seconds["draft_graphs"] == 21.796
    assert seconds["piecewise_graphs"] == 62.236


def test_tensor_parallel_ranks_other_than_zero_are_not_counted_twice():
    log = timeline.StartLog(t0=0.0)
    for t, line in [(1.0, "[2026-12-01 22:29:09 TP0] Load weight begin. avail mem=79.1 GB"),
                    (1.1, "[2026-12-01 22:29:09 TP1] Load weight begin. avail mem=79.1 GB"),
                    (2.0, "[2026-12-01 22:29:10 TP1] Load weight end. elapsed=0.9 s, type=Qwen3ForCausalLM, avail"),
                    (2.2, "[2026-12-01 22:29:10 TP0] Load weight end. elapsed=1.1 s, type=Qwen3ForCausalLM, avail"),
                    (9.0, "[2026-12-01 22:29:17 TP0] Load weight end. elapsed=0.1 s, type=LlamaForCausalLMEagle3, "
                          "avail")]:
        log.feed(t, line)
    assert [w.at_s for w in log.weights()] == [2.2, 9.0]


def test_unknown_and_broken_lines_never_break_a_start_and_missing_phases_are_named():
    log = timeline.StartLog(t0=0.0)
    for t, line in [(0.5, ""), (0.6, "\x00\x1b[A\r\r"), (0.7, "[2026-12-01 22:29:10] Load weight end. elapsed=abc s"),
                    (0.8, "[not a date] Capture cuda graph begin"),
                    (1.0, "[2026-12-01 22:29:10] server_args=ServerArgs(x=1)")]:
        log.feed(t, line)
    log.feed(2.0, None)  # type: ignore[arg-type]  # the parser's own failure: counted, not raised
    assert log.unreadable == 1 and log.lines == 6
    record = timeline.build_record(deployment=deployment("dev"), log=log,
                                   timings=Timings(healthy_s=5.0, warmup_s=[1.0], ready_s=6.0), started_at=0.0,
                                   before_launch_s=2.0, restore=None, misses=None, outcome="ready",
                                   expect=timeline.expected(True)).to_data()
    assert record["missing"] == ["cuda_graphs", "draft_extend_graphs", "draft_graphs", "draft_model", "fired_up",
                                 "http_server", "kv_cache", "scheduler_start", "weights"]
    assert [p["phase"] for p in record["phases"]] == ["arguments", "healthy", "warmup_1"]
    assert record["total_s"] == 8.0


def test_a_record_is_plain_data_and_summaries_give_median_and_worst():
    import json

    log = read("0.5.11-h200-cached.log")
    prod = deployment("prod")
    h200 = prod.with_recipe(prod.recipe.model_copy(update={"sglang_version": "0.5.11", "gpu_type": "H200",
                                                           "gpu_count": 1}))
    record = timeline.build_record(
        deployment=h200, log=log, timings=TIMINGS["0.5.11-h200-cached.log"], started_at=1796164414.0,
        before_launch_s=0.102, restore=timeline.Restore(restored=True, seconds=0.102, files=785, bytes=65232768,
                                                        fingerprint="21aefdcda304f29c"),
        misses={}, outcome="ready", expect=timeline.expected(True), environ={"MODAL_TASK_ID": "ta-1"})
    data = record.to_data()
    assert json.loads(json.dumps(data)) == data and timeline.StartRecord.read(data) == record  # what the Dict stores
    assert (record.total_s, record.missing, record.container, record.gpu) == (127.578, [], "ta-1", "H200:1")
    line = timeline.describe(record)
    assert line.startswith("2026-12-01 22:33 ready in 127.6 s (restore 0.1, arguments 22.1, scheduler_start 21.7")
    assert "DeepGEMM 3.5 for 4 shapes" in line
    others = [record.model_copy(update={"total_s": t}) for t in (90.0, 300.0)] + [
        record.model_copy(update={"outcome": "refused", "total_s": None})]
    assert timeline.summarise([record, *others]).to_data() == {
        "starts": 4, "ready": 3, "failed": 0, "refused": 1, "median_s": 127.6, "worst_s": 300.0, "with_misses": 0,
        "first_at": 1796164414.0, "last_at": 1796164414.0}


def test_the_deployment_digest_is_the_same_from_the_container_and_from_a_manifest():
    d = deployment("prod")
    import json

    from infra.runtime.deployment import Deployment

    in_container = Deployment.from_json(d.to_json()).to_dict()
    in_manifest = json.loads(json.dumps(d.to_dict(), indent=1, sort_keys=True))
    assert timeline.deployment_digest(in_container) == timeline.deployment_digest(in_manifest)
    assert timeline.deployment_digest(d.to_dict()) != timeline.deployment_digest(deployment("staging").to_dict())
