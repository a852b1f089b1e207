"""The two reference recipes, constant for constant, in every environment (shared/reference/000 and 002)."""

from __future__ import annotations

import pytest

from infra import sglang_args
from infra.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from tests.conftest import deployment

ENVS = ["dev", "staging", "prod"]


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("env", ENVS)
def test_qwen3_8b_low_latency_matches_reference_000(env):
    d = deployment(env, "qwen3-8b-low-latency")
    assert d.sglang_image == "lmsysorg/sglang:v0.5.6.post2-cu129-amd64-runtime"
    assert d.pip_installs == ("huggingface-hub==0.36.0",)
    assert d.image_env == {
        "HF_HUB_CACHE": "/root/.cache/huggingface",
        "HF_XET_HIGH_PERFORMANCE": "1",
        "SGLANG_ENABLE_JIT_DEEPGEMM": "1",
    }
    assert d.model == "Qwen/Qwen3-8B-FP8"
    assert d.model_revision == "220b46e3b2180893580a4454f21f22d3ebb187d3"
    assert (d.gpu_type, d.gpu_count, d.tp_size, d.gpu) == ("H100!", 2, 2, "H100!:2")
    spec = d.speculative
    assert (spec.algorithm, spec.draft_model, spec.num_steps, spec.eagle_topk, spec.num_draft_tokens) == (
        "EAGLE3", "Tengyunw/qwen3_8b_eagle3", 6, 10, 32,
    )
    assert d.port == 8000 and d.target_concurrency == 10 and d.cuda_graph_max_bs == 20
    assert d.mem_fraction_static == 0.8
    assert d.compute_region == "us-east" and d.routing_region == "us-east"
    assert d.exit_grace_period == 25  # the reference's 5 s drained nothing: SGLang checks every 5 s
    assert d.health_poll_interval == 0.25
    assert (d.warmup.count, d.warmup.prompt, d.warmup.max_tokens, d.warmup.timeout, d.warmup.with_image) == (
        3, "Hello, how are you?", 64, 10, False,
    )
    assert d.volume_mounts == {HF_CACHE_PATH: "huggingface-cache", KERNELS_PATH: "deepgemm-cache"}

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
    assert d.sglang_image == "lmsysorg/sglang:v0.5.10.post1-cu130-runtime"
    assert d.pip_installs == ()
    assert d.image_env == {
        "HF_HUB_CACHE": "/root/.cache/huggingface",
        "HF_XET_HIGH_PERFORMANCE": "1",
        "SGLANG_ENABLE_JIT_DEEPGEMM": "1",
        "SGLANG_USE_CUDA_IPC_TRANSPORT": "1",
        "SGLANG_USE_IPC_POOL_HANDLE_CACHE": "1",
    }
    assert d.model == "Qwen/Qwen3.6-35B-A3B-FP8"
    assert d.model_revision == "95a723d08a9490559dae23d0cff1d9466213d989"
    assert (d.gpu_type, d.gpu_count, d.tp_size) == ("H100!", 1, 1)
    assert d.startup_timeout == 15 * 60  # the reference's container timeout, which bounded @enter
    assert d.readiness_timeout == 10 * 60
    assert d.routing_region == "us-east" and d.target_concurrency == 10
    assert d.speculative.draft_model is None
    assert (d.warmup.count, d.warmup.prompt, d.warmup.max_tokens, d.warmup.timeout, d.warmup.with_image) == (
        2, "What is this?", 64, 120, True,
    )
    assert d.smoke.extra_body["chat_template_kwargs"] == {"enable_thinking": False}
    assert d.smoke.accept_reasoning_only is False
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
    assert dev.min_containers == 0 and staging.min_containers == 0 and prod.min_containers == 1
    assert prod.compute_region == "us-east" and prod.routing_region == "us-east"
    assert (staging.gpu, staging.compute_region) == (prod.gpu, prod.compute_region)  # prod's GPU and region
    assert not dev.proxy_auth and staging.proxy_auth and prod.proxy_auth
    assert not dev.hf_hub_offline and staging.hf_hub_offline and prod.hf_hub_offline
    assert (dev.modal_environment, staging.modal_environment, prod.modal_environment) == ("dev", "staging", "prod")
    # staging and prod share one set of caches (promotion never re-downloads); dev has its own.
    assert (dev.cache_environment, staging.cache_environment, prod.cache_environment) == ("dev", "prod", "prod")
    vlm = deployment("dev", "qwen3.6-35b-vlm")
    assert vlm.compute_region is None  # the reference does not pin it; staging/prod do
    assert deployment("prod", "qwen3.6-35b-vlm").compute_region == "us-east"


@pytest.mark.parametrize("recipe", ["qwen3-8b-low-latency", "qwen3.6-35b-vlm"])
def test_only_full_flag_names_of_the_recipes_sglang_version(recipe):
    d = deployment("prod", recipe)
    known = sglang_args.known_flags(d.sglang_version)
    flags = sglang_args.flags_in(sglang_args.launch_command(d))
    assert flags and all(f in known for f in flags)
    # The reference documents' abbreviations are argparse prefixes only, never emitted here.
    for abbreviation in ("--tp", "--mem-fraction", "--speculative-algo"):
        assert abbreviation not in flags
        assert abbreviation not in known


def test_mamba_flag_belongs_to_sglang_0_5_10_only():
    assert "--mamba-scheduler-strategy" in sglang_args.known_flags("0.5.10.post1")
    assert "--mamba-scheduler-strategy" not in sglang_args.known_flags("0.5.6.post2")


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
    d = deployment("dev", "qwen3-8b-low-latency").with_revisions(draft_revision="a" * 40)
    argv = sglang_args.launch_command(d)
    assert flag_value(argv, "--speculative-draft-model-revision") == "a" * 40
    assert "--speculative-draft-model-revision" in sglang_args.known_flags(d.sglang_version)
