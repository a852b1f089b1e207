"""Cold starts: the two GPU-snapshot phases against a real server, the cold-start budget in `plan`."""

from __future__ import annotations

import json

import pytest

from infra.control import cold_start_figures as figures
from infra.control import plan, sglang_flags
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.control.state import StageState
from infra.runtime import lifecycle, sglang_args, spec
from infra.runtime.errors import ConfigError
from infra.runtime.kernels import kernel_fingerprint
from infra.runtime.lifecycle import Readiness
from tests.conftest import REPO, deployment, free_port, standin_env


def settings(env, *overrides):
    return load_settings(env, overrides=parse_overrides(list(overrides)))


def test_snapshot_phase_then_restore_phase_in_order(tmp_path):
    d = deployment("prod", "qwen3-8b-low-latency", gpu_snapshot=True, port=free_port())
    argv = sglang_args.launch_command(d)
    assert "--enable-memory-saver" in argv and "--enable-weights-cpu-backup" in argv
    record = tmp_path / "requests.jsonl"
    base = f"http://127.0.0.1:{d.server.port}"
    readiness = Readiness(timeout=20, poll_interval=0.2, warmup=d.recipe.warmup, model=d.recipe.model)

    server = lifecycle.start_for_snapshot(argv, base, readiness, env=standin_env(record=str(record)))
    try:
        snapshot_calls = len(record.read_text().splitlines())
        assert not lifecycle.is_healthy(base)  # memory released: what the snapshot captures
        lifecycle.restore_from_snapshot(base, readiness)
        assert lifecycle.is_healthy(base)
    finally:
        server.stop()
    paths = [json.loads(line)["path"] for line in record.read_text().splitlines()]
    chat = "/v1/chat/completions"
    before, after = paths[:snapshot_calls], paths[snapshot_calls + 1 :]  # minus our own health check
    # Snapshot phase: health checks, the three warm-ups, then the release, last: never a health check after it.
    assert before[-4:] == [chat, chat, chat, "/release_memory_occupation"] and before[0] == "/health"
    # Restore phase: resume first, then exactly one short generation.
    assert after[:2] == ["/resume_memory_occupation", chat] and after.count(chat) == 1


def test_snapshot_phase_fails_and_stops_the_server_when_release_is_refused(tmp_path):
    d = deployment("prod", "qwen3-8b-low-latency", gpu_snapshot=True, port=free_port())
    base = f"http://127.0.0.1:{d.server.port}"
    readiness = Readiness(timeout=20, poll_interval=0.2, warmup=d.recipe.warmup, model=d.recipe.model)
    with pytest.raises(lifecycle.ServerFailed, match="release_memory_occupation failed: HTTP 400"):
        lifecycle.start_for_snapshot(sglang_args.launch_command(d), base, readiness, env=standin_env(memory_status=400))
    assert not lifecycle.is_healthy(base, timeout=0.5)


def test_snapshot_refused_for_a_sglang_version_without_the_flags(monkeypatch):
    table = json.loads(json.dumps(sglang_flags._versions()))
    del table["0.5.6.post2"]["flags"]["--enable-weights-cpu-backup"]
    table["0.5.6.post2"]["endpoints"].remove("/resume_memory_occupation")
    monkeypatch.setattr(sglang_flags, "_versions", lambda: table)
    one_gpu = ("recipes.qwen3-8b-low-latency.gpu_count=1",)
    with pytest.raises(ConfigError) as err:
        resolve(settings("prod", "startup.gpu_snapshot=true", *one_gpu), "qwen3-8b-low-latency")
    assert str(err.value) == (
        'recipes."qwen3-8b-low-latency".gpu_snapshot = true: SGLang 0.5.6.post2 lacks /resume_memory_occupation, '
        "--enable-weights-cpu-backup; allowed: false for this recipe"
    )
    # Per recipe: the other recipe's version still has them.
    assert resolve(settings("prod", "startup.gpu_snapshot=true"), "qwen3.6-35b-vlm").startup.gpu_snapshot


def test_snapshots_are_refused_for_a_recipe_on_more_than_one_gpu():
    """Issue 15: Modal's multi-GPU SGLang example dropped memory snapshots; the 2-GPU recipe may not turn them on."""
    with pytest.raises(ConfigError) as err:
        resolve(settings("prod", "startup.gpu_snapshot=true"), "qwen3-8b-low-latency")
    assert str(err.value).startswith('recipes."qwen3-8b-low-latency".gpu_snapshot = true with 2 GPUs: Modal\'s '
                                     'multi-GPU '
                                     "SGLang example dropped memory snapshots")
    assert "allowed: false for recipes on more than one GPU" in str(err.value)


def test_plan_shows_snapshot_options_only_where_on():
    off = plan.plan_for(settings("prod"), resolve(settings("prod"), "qwen3.6-35b-vlm")).to_data()
    assert "enable_memory_snapshot" not in off["modal"]["server"]
    assert "--enable-memory-saver" not in off["launch_command"]
    s = settings("prod", "recipes.qwen3.6-35b-vlm.gpu_snapshot=true")
    on = plan.plan_for(s, resolve(s, "qwen3.6-35b-vlm")).to_data()
    server = on["modal"]["server"]
    assert (server["enable_memory_snapshot"], server["experimental_options"]) == (True, {"enable_gpu_snapshot": True})
    assert server["env"]["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
    assert "snapshot_restore_seconds" in on["cold_start"]
    assert any("alpha" in w for w in on["warnings"])
    other = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency")).to_data()
    assert "enable_memory_snapshot" not in other["modal"]["server"]


def test_cold_start_phase_by_phase_for_the_flow_the_pipeline_runs():
    """The estimate assumes the compile caches the pipeline's compile stage produces; each compiled phase also
    says what it costs without them (issue 15: plan tells the truth about cold starts, per phase), and every
    figure says where it was measured (issue 23)."""
    s = settings("prod", 'cold_start.image_size_gb={"lmsysorg/sglang:v0.5.10.post1-cu130-runtime" = 20.0}')
    d = resolve(s, "qwen3.6-35b-vlm")
    cold = plan.plan_for(s, d).to_data()["cold_start"]
    parts = cold["parts"]
    # SGLang 0.5.10 captures no piecewise graphs for a vision model; --skip-server-warmup removes SGLang's own warm-up.
    assert list(parts) == ["image_pull", "compile_cache_restore", "weights_read", "arguments", "scheduler_start",
                           "weights",
                           "kv_cache", "cuda_graphs", "draft_model", "draft_graphs", "draft_extend_graphs",
                           "http_server",
                           "healthy", "deep_gemm_jit", "first_warmup_request", "warmup"]
    assert cold["piecewise_graphs"].startswith("not captured: SGLang turns them off for multimodal models")
    assert parts["image_pull"]["seconds"] == 20.0  # 20 GB at 1 GB/s
    assert parts["weights_read"]["seconds"] == round(35.0 / 1.5, 1) and "nominal" in parts["weights_read"]["basis"]
    assert cold["compiled"] is False  # nothing recorded here: the caches are what `invoke compile` will produce
    assert parts["draft_graphs"] | {"basis": ""} == {"seconds": 7.313, "uncached_seconds": 21.796, "cached": False,
                                                    "basis": ""}
    assert "measured on 1×H200, SGLang 0.5.11, Qwen3-8B-FP8 shape" in parts["draft_graphs"]["basis"]
    assert "after `invoke compile`" in parts["draft_graphs"]["basis"]
    # DeepGEMM: the VLM's 9 GEMM shapes (its recipe's count) at the measured 107.4 s each, none when cached.
    assert (parts["deep_gemm_jit"]["seconds"],
            parts["deep_gemm_jit"]["uncached_seconds"]) == (0.0, round(9 * 107.375, 1))
    assert (parts["first_warmup_request"]["seconds"],
            parts["first_warmup_request"]["uncached_seconds"]) == (0.848, 137.876)
    assert cold["profile"] == {"name": "qwen3-8b-fp8-eagle3",
                               "source": "benchmarks/results/cold_start_real_shape_h200.json",
                               "measured_on": figures.QWEN3_8B_FP8_EAGLE3.measured_on,
                               "measured_with_this_model": False}
    assert cold["caveats"] == [
        "no start measured phase by phase with Qwen/Qwen3.6-35B-A3B-FP8: the phases of the nearest measured shape",
        "this deployment runs SGLang 0.5.10.post1 on H100!:1, TP 1: not measured there; the figures are used as they "
        "are"]
    assert cold["complete"] and cold["estimate_seconds"] == round(sum(p["seconds"] for p in parts.values()), 1)
    assert cold["uncached_estimate_seconds"] == round(
        sum(p.get("uncached_seconds", p["seconds"]) for p in parts.values()), 1)
    restore = parts["compile_cache_restore"]["seconds"]
    assert cold["launch_to_ready_seconds"] == round(cold["estimate_seconds"] - 20.0 - restore, 1)
    text = plan.render([plan.plan_for(s, d)])
    assert "beyond startup_timeout 900 s: deploy after `invoke compile` (the pipeline does)" in text
    assert "figures measured on 1×H200, SGLang 0.5.11" in text


def test_a_recipe_without_deepgemm_or_speculation_has_no_such_phase():
    s = settings("dev", "recipes.qwen3.6-35b-vlm.gpu_count=1")
    d = resolve(s, "qwen3.6-35b-vlm")
    d = d.with_recipe(d.recipe.model_copy(update=dict(speculative=None,
                                          image_env=d.recipe.image_env | {"SGLANG_ENABLE_JIT_DEEPGEMM": "0"})))
    parts = plan.cold_start(s, d, StageState("dev", "x")).to_data()["parts"]
    assert not {"deep_gemm_jit", "draft_model", "draft_graphs", "draft_extend_graphs"} & set(parts)
    assert "uncached_seconds" not in parts["first_warmup_request"]  # no speculative decode to compile


def test_which_sglang_versions_capture_piecewise_graphs_as_read_in_their_wheels():
    d = deployment("dev")
    version = lambda v, *flags: d.with_recipe(d.recipe.model_copy(update=dict(  # noqa: E731
        sglang_version=v, extra_flags=d.recipe.extra_flags + tuple((f, None) for f in flags))))
    assert plan.piecewise_graphs(d)[0] is False  # the recipe's 0.5.6.post2: opt-in
    assert plan.piecewise_graphs(version("0.5.6.post2", "--enable-piecewise-cuda-graph"))[0] is True
    assert plan.piecewise_graphs(version("0.5.10.post1"))[1].startswith(
        "not captured: SGLang 0.5.10 turns them off with "
                                                                         "speculative decoding")
    assert plan.piecewise_graphs(version("0.5.11"))[0] is True  # as measured on the H200
    assert plan.piecewise_graphs(version("0.5.11", "--disable-piecewise-cuda-graph"))[0] is False


def test_cold_start_uses_what_the_stages_recorded():
    s = settings("prod")
    d = resolve(s, "qwen3-8b-low-latency")
    state = StageState("prod", "qwen3-8b-low-latency")
    state.record("download", "fp", {"downloads": [{"repo": d.recipe.model, "commit": "a" * 40,
                                                   "size_bytes": 9_000_000_000},
                                                  {"repo": d.recipe.draft_model, "commit": "b" * 40,
                                                   "size_bytes": 1_500_000_000}]})
    state.record("compile", kernel_fingerprint(d), {})
    p = plan.plan_for(s, d)
    parts = p.cold_start.parts
    assert parts["weights_read"].seconds == 7.0
    assert "recorded by the download stage" in parts["weights_read"].basis
    assert parts["deep_gemm_jit"].cached is True
    assert "compile cache recorded here for this deployment's key" in parts["deep_gemm_jit"].basis
    assert p.draft_model.resolved_commit == "b" * 40
    assert "beyond startup_timeout" not in plan.render([p])  # compiled: no advice to compile


def test_plan_warns_when_startup_timeout_is_below_the_estimate_and_prod_has_no_warm_replica():
    s = settings("prod", "scaling.min_containers=0", "cold_start.margin=20")
    p = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency"))
    assert any(w.startswith("startup_timeout 1200 s is below the estimated cold start") for w in p.warnings)
    assert any("production environment 'prod' has min_containers = 0: every first request pays the full cold start" in w
               for w in p.warnings)
    dev = settings("dev")
    assert not any("min_containers = 0" in w
                   for w in plan.plan_for(dev, resolve(dev, "qwen3-8b-low-latency")).warnings)


# ---------------------------------------------------------------------------- calibration (issue 23 item 5)


def results(name: str) -> dict:
    return json.loads((REPO / "benchmarks" / "results" / name).read_text())


def test_every_figure_is_the_number_measured_in_the_file_it_cites():
    real = results("cold_start_real_shape_h200.json")
    before = {p["phase"]: p["seconds"] for p in real["before"]["timeline"]["phases"]}
    uncached = {p["phase"]: p["seconds"] for p in real["compile"]["server_timeline"]["phases"]}
    profile = figures.QWEN3_8B_FP8_EAGLE3
    assert profile.source == "benchmarks/results/cold_start_real_shape_h200.json"
    for name, figure in profile.phases:
        assert (figure.cached, figure.uncached) == (before[name], uncached[name]), name
    assert profile.first_request.cached == real["before"]["timings"]["warmup_s"][0]
    assert profile.first_request.uncached == real["compile"]["server_timings"]["warmup_s"][0]
    assert profile.restore.cached == real["before"]["restore"]["seconds"]
    assert profile.restored_mb == round(real["before"]["restore"]["bytes"] / 1e6, 1)
    jit = real["compile"]["compile_deep_gemm_timeline"]["deep_gemm"]
    assert profile.deep_gemm_per_shape.uncached == jit["seconds"] / len(jit["shapes"])
    assert (spec.DEEP_GEMM_JIT_SECONDS, spec.DEEP_GEMM_MEASURED_SHAPES) == (jit["seconds"], len(jit["shapes"]))
    assert spec.DEEP_GEMM_SLOWEST_SHAPE_SECONDS == round(max(s["seconds"] for s in jit["shapes"]), 1)
    assert spec.DEEP_GEMM_MEASURED_SECONDS == real["compile"]["compile_deep_gemm_s"]
    assert spec.UNCACHED_SERVER_START_SECONDS == round(real["compile"]["server_timings"]["ready_s"], 1)
    assert figures.SNAPSHOT_RESUME.cached == real["snapshot"]["restore_to_ready_s"]
    tiny = results("cold_start_h100.json")
    t = figures.TINY_QWEN3
    assert t.phases[0][1].cached == tiny["with"]["start_to_healthy_s"]
    assert t.phases[0][1].uncached == tiny["without"]["start_to_healthy_s"]
    assert (t.first_request.cached, t.first_request.uncached) == (tiny["with"]["first_speculative_request_s"],
                                                                  tiny["without"]["first_speculative_request_s"])
    assert (t.warmup_request.cached * 2, t.warmup_request.uncached * 2) == (tiny["with"]["rest_of_warmup_s"],
                                                                            tiny["without"]["rest_of_warmup_s"])
    assert t.restore.cached == tiny["restore"]["seconds"]


def gpu_suite_shapes() -> list[tuple[str, object, float, float]]:
    """(name, deployment, measured launch-to-ready with the caches, without them) for the GPU suite's shapes."""
    from tests.gpu import real_sglang, real_shape

    tiny, real = results("cold_start_h100.json"), results("cold_start_real_shape_h200.json")
    return [
        ("tiny Qwen3 + EAGLE-3 on an H100", real_sglang.tiny_deployment(port=30000),
         tiny["with"]["launch_to_ready_s"], tiny["without"]["launch_to_ready_s"]),
        # Uncached here: the compile job's own start, where compile_deep_gemm had run first (DeepGEMM cached).
        ("Qwen3-8B-FP8 shape + EAGLE-3 on an H200", real_shape.deployment(port=30000),
         real["before"]["timings"]["ready_s"], real["compile"]["server_timings"]["ready_s"]),
    ]


@pytest.mark.parametrize("shape", [0, 1])
def test_for_the_gpu_suites_shapes_the_estimate_is_within_25_percent_of_the_measured_start(shape):
    name, d, cached, uncached = gpu_suite_shapes()[shape]
    cold = plan.cold_start(settings("dev"), d, StageState("dev", "x"))
    deep_gemm = cold.parts["deep_gemm_jit"].uncached_seconds if "deep_gemm_jit" in cold.parts else 0.0
    estimates = {"cached": cold.launch_to_ready_seconds,
                 "uncached": cold.uncached_launch_to_ready_seconds - deep_gemm}  # as measured: DeepGEMM precompiled
    for kind, measured in (("cached", cached), ("uncached", uncached)):
        assert abs(estimates[kind] / measured - 1) <= 0.25, (name, kind, estimates[kind], measured)
    if shape == 1:  # and DeepGEMM's JIT is compile_deep_gemm's, per shape, for the model's 4 shapes
        assert deep_gemm == spec.DEEP_GEMM_JIT_SECONDS


# ---------------------------------------------------------------------------- the compile job (issue 24 item 2)


def test_the_compile_jobs_cpu_and_timeout_are_derived_from_the_measured_compile():
    eight, vlm = resolve(settings("prod"), "qwen3-8b-low-latency"), resolve(settings("prod"), "qwen3.6-35b-vlm")
    budget = spec.compile_budget(eight).to_data()
    # 628.8 s measured for 4 shapes: 199.3 s fixed + 4 × the slowest shape's 120.6 s = 681.7 s, twice that, rounded up.
    assert (budget["deep_gemm_expected_seconds"], budget["deep_gemm_kill_after_seconds"]) == (681.7, 1364)
    assert budget["timeout_seconds"] == 1364 + 1200 + spec.COMPILE_JOB_MARGIN == spec.compile_timeout(eight)
    assert spec.compile_budget(vlm).deep_gemm_expected_seconds == round(199.3 + 9 * 120.6, 1)
    jobs = spec.jobs(eight)["compile_kernels"]
    assert (jobs["cpu"], spec.jobs(vlm)["compile_kernels"]["cpu"]) == (5.0, 4.0)  # 3 + 1 per rank: TP 2 and TP 1
    assert jobs["timeout"] == budget["timeout_seconds"]
    assert "SGLANG_JIT_DEEPGEMM_COMPILE_WORKERS" not in jobs["env"]  # read nowhere in SGLang: not set
    p = plan.plan_for(settings("prod"), eight)
    assert p.to_data()["compile_job"] == budget
    sized = (f"               sized: cpu 5, timeout {budget['timeout_seconds']} s "
             "(compile_deep_gemm killed after 1364 s)")
    assert sized in plan.render([p])


def test_without_deepgemm_the_compile_job_bounds_only_its_server():
    d = resolve(settings("dev"), "qwen3-8b-low-latency")
    image_env = d.recipe.image_env | {"SGLANG_ENABLE_JIT_DEEPGEMM": "0"}
    d = d.with_recipe(d.recipe.model_copy(update=dict(image_env=image_env)))
    budget = spec.compile_budget(d).to_data()
    assert (budget["deep_gemm_shapes"], budget["deep_gemm_kill_after_seconds"]) == (0, 0)
    assert budget["timeout_seconds"] == d.recipe.startup_timeout + spec.COMPILE_JOB_MARGIN


def test_the_shipped_configuration_plans_without_warnings_that_are_false_for_the_pipeline():
    """Issue 13: the newcomer's first `invoke plan --env prod` warned that startup_timeout was below a cold start
    that assumed DeepGEMM JIT in the container, which the pipeline's compile stage prevents."""
    for env in ("dev", "staging", "prod"):
        s = settings(env)
        for recipe in ("qwen3-8b-low-latency", "qwen3.6-35b-vlm"):
            warnings = plan.plan_for(s, resolve(s, recipe)).warnings
            assert not any("startup_timeout" in w for w in warnings), (env, recipe, warnings)


def test_standing_cost_of_warm_replicas():
    """One 2×H100 replica in us-east, at the offline table: (2 × $3.9492 + 4 cores × $0.04716 + 16 GiB × $0.007992)
    × 1.75 (narrow region) = $14.376096/h; 720 h = $10,350.79 per 30 days (tests/test_costs.py checks the parts)."""
    s = settings("prod")
    cost = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency")).to_data()["cost"]
    assert cost["standing"] | {"replica": None} == {"warm_replicas": 1, "warm_gpus": 2, "gpu_hours_per_30_days": 1440,
                                                    "replica": None, "usd_per_hour": 14.38, "usd_per_30_days": 10350.79}
    assert cost["replica"]["usd_per_hour"] == pytest.approx(14.376096)
    assert cost["replica"]["region"] | {"source": None} == {"compute_region": "us-east", "kind": "narrow",
                                                            "multiplier": 1.75, "source": None}
    assert cost["rates"] == {"source": "offline table (modal.com/pricing, 2026-07-01)", "live": False, "overrides": {}}
    # A negotiated GPU rate replaces the table's for the GPUs only; CPU, memory and the multiplier stay.
    s = settings("prod", 'costs.gpu_hourly_usd={"H100!" = 2.0}', "scaling.min_containers=2")
    cost = plan.plan_for(s, resolve(s, "qwen3.6-35b-vlm")).to_data()["cost"]
    per_replica = (2.0 + 4 * 0.04716 + 32 * 0.007992) * 1.75
    assert (cost["standing"]["warm_gpus"], cost["standing"]["usd_per_hour"]) == (2, round(2 * per_replica, 2))
    assert cost["replica"]["parts"][0] | {"usd_per_hour": None} == {
        "resource": "H100", "quantity": 1, "unit": "GPU", "usd_per_unit_hour": 2.0, "usd_per_hour": None,
        "source": "settings (costs.gpu_hourly_usd.H100!)"}


def test_the_vision_recipes_measured_start_is_in_its_plan_as_measured():
    """The docs cite the vision recipe's launch (ready in 354.5 s): plan shows it, from the file it cites."""
    from infra.control.cold_start_figures import QWEN36_35B_VLM_UNCACHED as vlm

    measured = json.loads((REPO / vlm.source).read_text())["vlm"]
    assert vlm.seconds == measured["launch_to_ready_s"] and tuple(measured["warmup_s"]) == vlm.warmup_seconds
    assert vlm.healthy_seconds == next(p["end_s"] for p in measured["phases"] if p["phase"] == "healthy")
    settings = load_settings("prod")
    p = plan.plan_for(settings, resolve(settings, "qwen3.6-35b-vlm"))
    assert [m.seconds for m in p.cold_start.measured_starts] == [354.541]
    text = plan.render([p])
    assert "measured with this model: ready in 354.5 s (healthy 222.7 s, warm-ups 130.6 s, 1.2 s)" in text
    assert "nothing measured with Qwen/Qwen3.6-35B-A3B-FP8" not in text
    eight = plan.plan_for(settings, resolve(settings, "qwen3-8b-low-latency"))
    assert eight.cold_start.measured_starts == []
