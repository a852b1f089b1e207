"""Cold starts: the two GPU-snapshot phases against a real server, the cold-start budget in `plan`."""

from __future__ import annotations

import json

import pytest

from infra.control import plan, sglang_flags
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.control.state import StageState
from infra.runtime import lifecycle, sglang_args
from infra.runtime.errors import ConfigError
from infra.runtime.kernels import kernel_fingerprint
from infra.runtime.lifecycle import Readiness
from tests.conftest import deployment, free_port, standin_env


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
    one_gpu = ("recipes.qwen3-8b-low-latency.gpu_count=1", "recipes.qwen3-8b-low-latency.tp_size=1")
    with pytest.raises(ConfigError) as err:
        resolve(settings("prod", "cold_start.gpu_snapshot=true", *one_gpu), "qwen3-8b-low-latency")
    assert str(err.value) == (
        'recipes."qwen3-8b-low-latency".gpu_snapshot = true: SGLang 0.5.6.post2 lacks /resume_memory_occupation, '
        "--enable-weights-cpu-backup; allowed: false for this recipe"
    )
    # Per recipe: the other recipe's version still has them.
    assert resolve(settings("prod", "cold_start.gpu_snapshot=true"), "qwen3.6-35b-vlm").gpu_snapshot


def test_snapshots_are_refused_for_a_recipe_on_more_than_one_gpu():
    """Issue 15: Modal's multi-GPU SGLang example dropped memory snapshots; the 2-GPU recipe may not turn them on."""
    with pytest.raises(ConfigError) as err:
        resolve(settings("prod", "cold_start.gpu_snapshot=true"), "qwen3-8b-low-latency")
    assert str(err.value).startswith('recipes."qwen3-8b-low-latency".gpu_snapshot = true with 2 GPUs: Modal\'s multi-GPU '
                                     "SGLang example dropped memory snapshots")
    assert "allowed: false for recipes on more than one GPU" in str(err.value)


def test_plan_shows_snapshot_options_only_where_on():
    off = plan.plan_for(settings("prod"), resolve(settings("prod"), "qwen3.6-35b-vlm"))
    assert "enable_memory_snapshot" not in off["modal"]["server"] and "--enable-memory-saver" not in off["launch_command"]
    s = settings("prod", "recipes.qwen3.6-35b-vlm.gpu_snapshot=true")
    on = plan.plan_for(s, resolve(s, "qwen3.6-35b-vlm"))
    server = on["modal"]["server"]
    assert (server["enable_memory_snapshot"], server["experimental_options"]) == (True, {"enable_gpu_snapshot": True})
    assert server["env"]["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
    assert "snapshot_restore_seconds" in on["cold_start"]
    assert any("alpha" in w for w in on["warnings"])
    other = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency"))
    assert "enable_memory_snapshot" not in other["modal"]["server"]


def test_cold_start_phase_by_phase_for_the_flow_the_pipeline_runs():
    """The estimate assumes the compile caches the pipeline's compile stage produces; each compiled phase also
    says what it costs without them (issue 15: plan tells the truth about cold starts, per phase)."""
    s = settings("prod", 'cold_start.image_size_gb={"lmsysorg/sglang:v0.5.10.post1-cu130-runtime" = 20.0}')
    d = resolve(s, "qwen3.6-35b-vlm")
    cold = plan.plan_for(s, d)["cold_start"]
    parts = cold["parts"]
    assert list(parts) == ["image_pull", "weights", "compile_cache_restore", "server_boot", "cuda_graphs", "jit",
                           "deepgemm", "first_speculative_request", "warmup"]
    assert parts["image_pull"]["seconds"] == 20.0  # 20 GB at 1 GB/s
    assert parts["weights"]["seconds"] == round(35.0 / 1.5, 1) and "nominal" in parts["weights"]["basis"]
    assert cold["compiled"] is False  # nothing recorded here: the caches are what `invoke compile` will produce
    for name, uncached in (("jit", 75.0), ("deepgemm", plan.DEEPGEMM_COLD_SECONDS), ("first_speculative_request", 115.0)):
        assert parts[name]["cached"] is False and parts[name]["uncached_seconds"] == uncached
        assert "after `invoke compile`" in parts[name]["basis"]
    assert (parts["jit"]["seconds"], parts["deepgemm"]["seconds"], parts["first_speculative_request"]["seconds"]) == (0.0, 5.0, 0.5)
    assert cold["complete"] and cold["estimate_seconds"] == round(sum(p["seconds"] for p in parts.values()), 1)
    assert cold["uncached_estimate_seconds"] == round(
        sum(p.get("uncached_seconds", p["seconds"]) for p in parts.values()), 1)
    text = plan.render([plan.plan_for(s, d)])
    assert "beyond startup_timeout 900 s: deploy after `invoke compile` (the pipeline does)" in text


def test_a_recipe_without_deepgemm_or_speculation_has_no_such_phase():
    s = settings("dev", "recipes.qwen3.6-35b-vlm.gpu_count=1")
    d = resolve(s, "qwen3.6-35b-vlm")
    d = d.with_recipe(d.recipe.model_copy(update=dict(speculative=None,
                                          image_env=d.recipe.image_env | {"SGLANG_ENABLE_JIT_DEEPGEMM": "0"})))
    parts = plan.cold_start(s, d, StageState("dev", "x"))["parts"]
    assert "deepgemm" not in parts and "first_speculative_request" not in parts


def test_cold_start_uses_what_the_stages_recorded():
    s = settings("prod")
    d = resolve(s, "qwen3-8b-low-latency")
    state = StageState("prod", "qwen3-8b-low-latency")
    state.record("download", "fp", {"downloads": [{"repo": d.recipe.model, "commit": "a" * 40, "size_bytes": 9_000_000_000},
                                                  {"repo": d.recipe.draft_model, "commit": "b" * 40, "size_bytes": 1_500_000_000}]})
    state.record("compile", kernel_fingerprint(d), {})
    p = plan.plan_for(s, d)
    parts = p["cold_start"]["parts"]
    assert parts["weights"]["seconds"] == 7.0 and "recorded by the download stage" in parts["weights"]["basis"]
    assert parts["deepgemm"]["cached"] is True and "compile cache recorded here for this deployment's key" in parts["deepgemm"]["basis"]
    assert p["draft_model"]["resolved_commit"] == "b" * 40
    assert "beyond startup_timeout" not in plan.render([p])  # compiled: no advice to compile


def test_plan_warns_when_startup_timeout_is_below_the_estimate_and_prod_has_no_warm_replica():
    s = settings("prod", "scaling.min_containers=0", "cold_start.cuda_graph_seconds=1000")
    p = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency"))
    assert any(w.startswith("startup_timeout 1200 s is below the estimated cold start") for w in p["warnings"])
    assert any("production environment 'prod' has min_containers = 0: every first request pays the full cold start" in w
               for w in p["warnings"])
    dev = settings("dev")
    assert not any("min_containers = 0" in w for w in plan.plan_for(dev, resolve(dev, "qwen3-8b-low-latency"))["warnings"])


def test_the_shipped_configuration_plans_without_warnings_that_are_false_for_the_pipeline():
    """Issue 13: the newcomer's first `invoke plan --env prod` warned that startup_timeout was below a cold start
    that assumed DeepGEMM JIT in the container, which the pipeline's compile stage prevents."""
    for env in ("dev", "staging", "prod"):
        s = settings(env)
        for recipe in ("qwen3-8b-low-latency", "qwen3.6-35b-vlm"):
            warnings = plan.plan_for(s, resolve(s, recipe))["warnings"]
            assert not any("startup_timeout" in w for w in warnings), (env, recipe, warnings)


def test_standing_cost_of_warm_replicas():
    """One 2×H100 replica in us-east, at the offline table: (2 × $3.9492 + 4 cores × $0.04716 + 16 GiB × $0.007992)
    × 1.75 (narrow region) = $14.376096/h; 720 h = $10,350.79 per 30 days (tests/test_costs.py checks the parts)."""
    s = settings("prod")
    cost = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency"))["cost"]
    assert cost["standing"] | {"replica": None} == {"warm_replicas": 1, "warm_gpus": 2, "gpu_hours_per_30_days": 1440,
                                                    "replica": None, "usd_per_hour": 14.38, "usd_per_30_days": 10350.79}
    assert cost["replica"]["usd_per_hour"] == pytest.approx(14.376096)
    assert cost["replica"]["region"] | {"source": None} == {"compute_region": "us-east", "kind": "narrow",
                                                            "multiplier": 1.75, "source": None}
    assert cost["rates"] == {"source": "offline table (modal.com/pricing, 2026-07-01)", "live": False, "overrides": {}}
    # A negotiated GPU rate replaces the table's for the GPUs only; CPU, memory and the multiplier stay.
    s = settings("prod", 'costs.gpu_hourly_usd={"H100!" = 2.0}', "scaling.min_containers=2")
    cost = plan.plan_for(s, resolve(s, "qwen3.6-35b-vlm"))["cost"]
    per_replica = (2.0 + 4 * 0.04716 + 32 * 0.007992) * 1.75
    assert (cost["standing"]["warm_gpus"], cost["standing"]["usd_per_hour"]) == (2, round(2 * per_replica, 2))
    assert cost["replica"]["parts"][0] | {"usd_per_hour": None} == {
        "resource": "H100", "quantity": 1, "unit": "GPU", "usd_per_unit_hour": 2.0, "usd_per_hour": None,
        "source": "settings (costs.gpu_hourly_usd.H100!)"}
