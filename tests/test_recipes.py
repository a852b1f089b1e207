"""The two reference recipes, constant for constant, in every environment (shared/reference/000 and 002)."""

from __future__ import annotations

import pytest

from infra.control import sglang_flags
from infra.runtime import sglang_args, spec
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from tests.conftest import deployment

ENVS = ["dev", "staging", "prod"]


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("env", ENVS)
def test_qwen3_8b_low_latency_matches_reference_000(env):
    d = deployment(env, "qwen3-8b-low-latency")
    assert d.recipe.sglang_image == "lmsysorg/sglang:v0.5.6.post2-cu129-amd64-runtime"
    assert d.recipe.pip_installs == ("huggingface-hub==0.36.0",)
    assert d.recipe.image_env == {
        "HF_HUB_CACHE": "/root/.cache/huggingface",
        "HF_XET_HIGH_PERFORMANCE": "1",
        "SGLANG_ENABLE_JIT_DEEPGEMM": "1",
    }
    assert d.recipe.model == "Qwen/Qwen3-8B-FP8"
    assert d.recipe.model_revision == "220b46e3b2180893580a4454f21f22d3ebb187d3"
    assert (d.recipe.gpu_type, d.recipe.gpu_count, d.recipe.tp_size, d.recipe.gpu) == ("H100!", 2, 2, "H100!:2")
    spec_ = d.recipe.speculative
    assert (spec_.algorithm, spec_.draft_model, spec_.num_steps, spec_.eagle_topk, spec_.num_draft_tokens) == (
        "EAGLE3", "Tengyunw/qwen3_8b_eagle3", 6, 10, 32,
    )
    assert d.server.port == 8000 and d.recipe.target_concurrency == 10 and d.recipe.cuda_graph_max_bs == 20
    assert d.recipe.mem_fraction_static == 0.8
    # Regions are the environment's: staging and prod pin us-east (the reference's), dev runs anywhere.
    assert d.placement.compute_region == (None if env == "dev" else "us-east")
    assert d.placement.routing_region == "us-east"
    assert d.recipe.exit_grace_period == 25  # the reference's 5 s drained nothing: SGLang checks every 5 s
    assert d.recipe.health_poll_interval == 0.25
    assert (d.recipe.warmup.count, d.recipe.warmup.prompt, d.recipe.warmup.max_tokens, d.recipe.warmup.timeout,
            d.recipe.warmup.with_image) == (
        3, "Hello, how are you?", 64, 10, False,
    )
    mounts = {path: (v["name"], v["read_only"]) for path, v in spec.server(d)["volumes"].items()}
    assert mounts == {HF_CACHE_PATH: ("huggingface-cache", False), KERNELS_PATH: ("deepgemm-cache", True)}

    argv = sglang_args.launch_command(d)
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert flag_value(argv, "--model-path") == "Qwen/Qwen3-8B-FP8"
    assert flag_value(argv, "--revision") == "220b46e3b2180893580a4454f21f22d3ebb187d3"
    assert flag_value(argv, "--served-model-name") == "Qwen/Qwen3-8B-FP8"
    assert flag_value(argv, "--host") == "0.0.0.0"
    assert flag_value(argv, "--port") == "8000"
    assert flag_value(argv, "--tp-size") == "2"
    assert flag_value(argv, "--cuda-graph-max-bs") == "20"
    assert "--enable-metrics" in argv
    assert flag_value(argv, "--decode-log-interval") == "250"
    assert flag_value(argv, "--mem-fraction-static") == "0.8"
    assert flag_value(argv, "--speculative-algorithm") == "EAGLE3"
    assert flag_value(argv, "--speculative-draft-model-path") == "Tengyunw/qwen3_8b_eagle3"
    assert flag_value(argv, "--speculative-num-steps") == "6"
    assert flag_value(argv, "--speculative-eagle-topk") == "10"
    assert flag_value(argv, "--speculative-num-draft-tokens") == "32"
    assert "--mamba-scheduler-strategy" not in argv  # does not exist in SGLang 0.5.6


@pytest.mark.parametrize("env", ENVS)
def test_qwen3_6_35b_vlm_matches_reference_002(env):
    d = deployment(env, "qwen3.6-35b-vlm")
    assert d.recipe.sglang_image == "lmsysorg/sglang:v0.5.10.post1-cu130-runtime"
    assert d.recipe.pip_installs == ()
    assert d.recipe.image_env == {
        "HF_HUB_CACHE": "/root/.cache/huggingface",
        "HF_XET_HIGH_PERFORMANCE": "1",
        "SGLANG_ENABLE_JIT_DEEPGEMM": "1",
        "SGLANG_USE_CUDA_IPC_TRANSPORT": "1",
        "SGLANG_USE_IPC_POOL_HANDLE_CACHE": "1",
    }
    assert d.recipe.model == "Qwen/Qwen3.6-35B-A3B-FP8"
    assert d.recipe.model_revision == "95a723d08a9490559dae23d0cff1d9466213d989"
    assert (d.recipe.gpu_type, d.recipe.gpu_count, d.recipe.tp_size) == ("H100!", 1, 1)
    assert d.recipe.startup_timeout == 15 * 60  # the reference's container timeout, which bounded @enter
    assert d.recipe.readiness_timeout == 10 * 60
    assert d.placement.routing_region == "us-east" and d.recipe.target_concurrency == 10
    assert d.recipe.speculative.draft_model is None
    assert (d.recipe.warmup.count, d.recipe.warmup.prompt, d.recipe.warmup.max_tokens, d.recipe.warmup.timeout,
            d.recipe.warmup.with_image) == (
        2, "What is this?", 64, 120, True,
    )
    assert d.recipe.smoke.extra_body["chat_template_kwargs"] == {"enable_thinking": False}
    assert d.recipe.smoke.accept_reasoning_only is False
    argv = sglang_args.launch_command(d)
    expected = {
        "--tp-size": "1",
        "--cuda-graph-max-bs": "20",
        "--mem-fraction-static": "0.8",
        "--context-length": "131072",
        "--mamba-scheduler-strategy": "extra_buffer",
        "--reasoning-parser": "qwen3",
        "--tool-call-parser": "qwen3_coder",
        "--speculative-algorithm": "EAGLE",
        "--speculative-num-steps": "3",
        "--speculative-eagle-topk": "1",
        "--speculative-num-draft-tokens": "4",
        "--port": "8000",
        "--host": "0.0.0.0",
    }
    assert {flag: flag_value(argv, flag) for flag in expected} == expected
    assert "--enable-metrics" in argv
    assert "--speculative-draft-model-path" not in argv


def test_environment_specific_values():
    dev, staging, prod = (deployment(e, "qwen3-8b-low-latency") for e in ENVS)
    assert dev.scaling.min_containers == 0 and staging.scaling.min_containers == 0 and prod.scaling.min_containers == 1
    assert prod.placement.compute_region == "us-east" and prod.placement.routing_region == "us-east"
    # prod's GPU and region
    assert (staging.recipe.gpu, staging.placement.compute_region) == (prod.recipe.gpu, prod.placement.compute_region)
    assert not dev.auth.proxy_auth and staging.auth.proxy_auth and prod.auth.proxy_auth
    assert not dev.server.hf_hub_offline and staging.server.hf_hub_offline and prod.server.hf_hub_offline
    assert (dev.modal.environment, staging.modal.environment, prod.modal.environment) == ("dev", "staging", "prod")
    # staging and prod share one set of caches (promotion never re-downloads); dev has its own.
    assert (dev.modal.cache_environment, staging.modal.cache_environment,
            prod.modal.cache_environment) == ("dev", "prod", "prod")
    vlm = deployment("dev", "qwen3.6-35b-vlm")
    assert vlm.placement.compute_region is None  # dev sets no [placement]; staging/prod do
    assert deployment("prod", "qwen3.6-35b-vlm").placement.compute_region == "us-east"


@pytest.mark.parametrize("recipe", ["qwen3-8b-low-latency", "qwen3.6-35b-vlm"])
def test_only_full_flag_names_of_the_recipes_sglang_version(recipe):
    d = deployment("prod", recipe)
    known = sglang_flags.known_flags(d.recipe.sglang_version)
    flags = [a for a in sglang_args.launch_command(d) if a.startswith("--")]
    assert flags and all(f in known for f in flags)
    # The reference documents' abbreviations are argparse prefixes only, never emitted here.
    for abbreviation in ("--tp", "--mem-fraction", "--speculative-algo"):
        assert abbreviation not in flags
        assert abbreviation not in known


def test_mamba_flag_belongs_to_sglang_0_5_10_only():
    assert "--mamba-scheduler-strategy" in sglang_flags.known_flags("0.5.10.post1")
    assert "--mamba-scheduler-strategy" not in sglang_flags.known_flags("0.5.6.post2")


@pytest.mark.parametrize("recipe", ["qwen3-8b-low-latency", "qwen3.6-35b-vlm"])
@pytest.mark.parametrize("snapshot", [False, True])
def test_compile_arguments_equal_launch_arguments_minus_host_and_port(recipe, snapshot):
    d = deployment("prod", recipe, gpu_snapshot=snapshot)
    launch = sglang_args.launch_command(d)
    compile_ = sglang_args.compile_command(d)
    assert compile_[:3] == ["python3", "-m", "sglang.compile_deep_gemm"]
    host_port = launch.index("--host")
    assert launch[3:host_port] == compile_[3 : compile_.index("--timeout")]
    assert launch[host_port:] == ["--host", "0.0.0.0", "--port", "8000"]


def test_pinned_draft_revision_is_passed_to_sglang():
    d = deployment("dev", "qwen3-8b-low-latency")
    d = d.with_recipe(d.recipe.with_revisions(draft_revision="a" * 40))
    argv = sglang_args.launch_command(d)
    assert flag_value(argv, "--speculative-draft-model-revision") == "a" * 40
    assert "--speculative-draft-model-revision" in sglang_flags.known_flags(d.recipe.sglang_version)
