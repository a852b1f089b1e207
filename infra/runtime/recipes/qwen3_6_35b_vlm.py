"""Qwen3.6-35B-A3B-FP8, a vision-language reasoning model, on 1×H100.

Reproduces Modal's "Serve the Qwen 3.6 Vision-Language Model with SGLang" example
(shared/reference/002), constant for constant, with its latent defects fixed:

- The example passes `--tp` and `--speculative-algo`, prefixes of `--tp-size` and
  `--speculative-algorithm`; we emit full names, and launch with an argument list
  instead of a shell string.
- Its warm-up fetches an image from a CDN on every cold start; we ship a small image
  with the package and send it inline as a data URL.
- Its `timeout=15 * MINUTES` on `@app.cls` is what bounded @modal.enter (the health
  wait plus warm-up); on Servers that bound is `startup_timeout`, set to the same.
- With `--reasoning-parser qwen3` a default reply is all reasoning_content; the smoke
  test turns thinking off so it proves the answer path.

Compiled caches (infra/runtime/compile_cache.py) for SGLang 0.5.10.post1, all warmed by `invoke
compile` (with the warm-up image) and restored at start: deep_gemm (FP8 MoE and dense
GEMMs), triton (MoE, attention, mamba and MTP kernels), inductor, flashinfer, tvm-ffi,
cuda. SGLang's own root (sglang) is set but stays empty for this model: 0.5.10 turns
piecewise CUDA graphs off for multimodal models (server_args._handle_piecewise_cuda_graph).
"""

from infra.runtime.recipes.base import (
    HF_CACHE_PATH,
    MINUTES,
    GateWorkload,
    Recipe,
    SmokeTest,
    SpeculativeDecoding,
    Warmup,
)

RECIPE = Recipe(
    name="qwen3.6-35b-vlm",
    description="Qwen3.6-35B-A3B-FP8 vision-language model on 1×H100, MTP speculative decoding, reasoning and tool "
                "parsers",
    source="shared/reference/002 (Serve the Qwen 3.6 Vision-Language Model with SGLang)",
    # The official SGLang image with CUDA 13.
    sglang_image="lmsysorg/sglang:v0.5.10.post1-cu130-runtime",
    sglang_version="0.5.10.post1",
    pip_installs=(),
    image_env={
        "HF_HUB_CACHE": HF_CACHE_PATH,
        "HF_XET_HIGH_PERFORMANCE": "1",
        "SGLANG_ENABLE_JIT_DEEPGEMM": "1",
        # Pass image tensors between SGLang's processes over CUDA IPC, reusing handles.
        "SGLANG_USE_CUDA_IPC_TRANSPORT": "1",
        "SGLANG_USE_IPC_POOL_HANDLE_CACHE": "1",
    },
    # 35B parameters, 3B active per token; FP8 for faster cold starts and inference.
    model="Qwen/Qwen3.6-35B-A3B-FP8",
    model_revision="95a723d08a9490559dae23d0cff1d9466213d989",
    model_size_gb=35.0,
    # ~35 GB of weights fit comfortably in one H100's 80 GB.
    gpu_type="H100!",
    gpu_count=1,
    # One scheduler polling the GPU, plus the tokenizer, which also decodes and resizes every image: 4 cores.
    # The vision processor and image tensors in flight beside the CUDA context: 32 GiB. (Not requested by the
    # example; a GPU snapshot's CPU copy of the weights, startup.gpu_snapshot, needs the model's size more.)
    cpu=4.0,
    memory=32 * 1024,
    port=8000,
    target_concurrency=10,
    mem_fraction_static=0.8,
    # From the SGLang Cookbook for this model.
    extra_flags=(
        ("--enable-metrics", None),
        ("--context-length", "131072"),
        ("--mamba-scheduler-strategy", "extra_buffer"),  # exists from SGLang 0.5.10, not in 0.5.6
        ("--reasoning-parser", "qwen3"),
        ("--tool-call-parser", "qwen3_coder"),
        # SGLang's own warm-up (one short text /generate before "fired up") is redundant: the lifecycle warms up
        # with this recipe's requests, the image included. 0.5.10.post1 has the flag (http_server.py marks the
        # server up without the request); measured on 0.5.11 at the 8B shape: 1.5 s of every start.
        ("--skip-server-warmup", None),
        # Nothing about piecewise CUDA graphs: 0.5.10.post1 already turns them off for this recipe, twice over
        # (server_args._handle_piecewise_cuda_graph: for multimodal models, and with speculative decoding).
    ),
    # Multi-token prediction: the model drafts for itself, so no draft model.
    speculative=SpeculativeDecoding(
        algorithm="EAGLE",
        num_steps=3,
        eagle_topk=1,
        num_draft_tokens=4,
        # MTP drafts at most 3 tokens a step here (num_steps 3, topk 1), so at most 4 are accepted; the model's own
        # MTP head, when loaded, keeps well above 1.0, which is what a broken one gives. Not yet measured.
        min_accept_length=1.5,
    ),
    # Counted from the model's configuration, not measured (its one launch, 2026-12-02, ran DeepGEMM lazily, which
    # logs no shapes: benchmarks/results/gpu_2026-12-02_h200.json): 5 dense FP8 shapes,
    # the linear-attention in_proj_qkvz (N 12288, K 2048) and out_proj (2048, 4096), the full-attention qkv with its
    # output gate (9216, 2048) and o_proj (2048, 4096, the same), the shared expert's gate_up (1024, 2048) and down
    # (2048, 512); up to 4 more if SGLang runs the 256 routed experts on DeepGEMM's grouped kernels (contiguous and
    # masked layouts for gate_up and down), which was not established offline. The upper bound, 9, is taken.
    deep_gemm_shapes=9,
    # The example set none (0 s: in-flight requests were cut on every scale-down). SGLang
    # drains on a 5 s tick; 25 s drains up to 23 s of generation within Modal's 30 s exit window.
    exit_grace_period=25,
    startup_timeout=15 * MINUTES,
    readiness_timeout=10 * MINUTES,
    health_poll_interval=0.25,
    # The image and 64 generated tokens: the vision encoder, prefill and several MTP
    # draft/verify rounds all compile before the first user arrives.
    warmup=Warmup(count=2, prompt="What is this?", max_tokens=64, timeout=120, with_image=True),
    # With --reasoning-parser qwen3 a default request streams only reasoning_content; thinking
    # off makes the reply come back as content, so the smoke test proves the answer path.
    smoke=SmokeTest(
        prompt="What is this?", with_image=True, max_tokens=256,
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}},
    ),
    # The gate measures what users of a vision model send: text with an image, so the vision encoder's
    # time is part of every TTFT (the packaged image, inline; no outside CDN).
    gate_workload=GateWorkload(with_image=True),
)
