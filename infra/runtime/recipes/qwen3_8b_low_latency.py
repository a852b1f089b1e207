"""Low-latency Qwen3-8B-FP8 on 2×H100: tensor parallelism plus EAGLE-3 speculative decoding.

Reproduces Modal's "Low latency Qwen 3 8B with SGLang and Modal" example
(shared/reference/000), constant for constant, with its latent defects fixed:

- The example passes `--tp` and `--mem-fraction`, which argparse only accepts as
  prefixes of `--tp-size` and `--mem-fraction-static`; the day SGLang adds a flag
  sharing the prefix, the server refuses to start. We emit full names only.
- The example mounts its kernel cache at /root/.cache/deepgemm, but SGLang writes
  DeepGEMM kernels to $SGLANG_DG_CACHE_DIR (default ~/.cache/deep_gemm), so its
  cache Volume is never written. We set the variable, and with it every other cache.
- Its health wait (5 minutes) is known to be too short for a cold start that must
  capture CUDA graphs for the target, the EAGLE-3 drafter and 20 batch sizes across
  two GPUs; its container had Modal's default 300 s to finish @modal.enter anyway.
  We wait 15 minutes and give the container 20 (see `startup_timeout`).
- The draft model is unpinned in the example; here its revision is a setting and
  `plan` warns while it is unset.
- The example's `exit_grace_period` (5 s) drained nothing and its warm-up (16 tokens,
  10 s) failed on every cold container: the first EAGLE-3 decode compiles for ~100 s.

Compiled caches (infra/runtime/compile_cache.py) for SGLang 0.5.6.post2, all warmed by `invoke
compile` and restored at start: deep_gemm (FP8 GEMMs: this is an FP8 model on Hopper),
triton (attention and EAGLE-3 kernels, CUDA-graph capture of 20 batch sizes),
inductor (torch.compile'd helpers), flashinfer and tvm-ffi (JIT kernels), cuda (PTX).
SGLang's own root (sglang) holds nothing here: 0.5.6 compiles piecewise CUDA graphs only
with --enable-piecewise-cuda-graph, which this recipe does not set.
"""

from infra.runtime.recipes.base import (
    HF_CACHE_PATH,
    MINUTES,
    Recipe,
    SmokeTest,
    SpeculativeDecoding,
    Warmup,
)

RECIPE = Recipe(
    name="qwen3-8b-low-latency",
    description="Qwen3-8B-FP8 on 2×H100, tensor parallel 2, EAGLE-3 speculative decoding, low-latency routing",
    source="shared/reference/000 (Low latency Qwen 3 8B with SGLang and Modal)",
    # The SGLang team's image; its DeepGEMM kernels are JIT-compiled, not shipped.
    sglang_image="lmsysorg/sglang:v0.5.6.post2-cu129-amd64-runtime",
    sglang_version="0.5.6.post2",
    pip_installs=("huggingface-hub==0.36.0",),
    image_env={
        "HF_HUB_CACHE": HF_CACHE_PATH,  # read weights from the Volume, not the Hub
        "HF_XET_HIGH_PERFORMANCE": "1",  # saturate the network when we do download
        "SGLANG_ENABLE_JIT_DEEPGEMM": "1",  # DeepGEMM is SGLang's FP8 GEMM backend on Hopper
    },
    # A small model in FP8: fewer bytes to move from HBM to SRAM per generated token.
    model="Qwen/Qwen3-8B-FP8",
    model_revision="220b46e3b2180893580a4454f21f22d3ebb187d3",  # latest commit as of 2026-01-01
    model_size_gb=8.8,
    draft_size_gb=0.8,
    # Two H100s double the memory bandwidth for the large matmuls (≈30% faster in
    # practice, not 100%), one tensor-parallel shard each. "!" stops Modal from upgrading to an H200.
    gpu_type="H100!",
    gpu_count=2,
    # SGLang runs a scheduler per TP rank that polls its GPU without pause (a core each), plus the tokenizer
    # and detokenizer processes: 4 cores. Each rank holds a CUDA context and pinned buffers in host memory
    # (a few GiB each), the tokenizer its vocabulary: 16 GiB. The example requested neither (Modal's default,
    # 0.125 cores and 128 MiB); Modal bills the use above a request anyway, so the request names the floor.
    cpu=4.0,
    memory=16 * 1024,
    port=8000,
    target_concurrency=10,
    mem_fraction_static=0.8,  # leave room for the speculative model
    extra_flags=(
        ("--enable-metrics", None),  # expose Prometheus metrics for telemetry
        ("--decode-log-interval", "250"),  # log every 250 decoded tokens
        # SGLang's own warm-up (one 8-token /generate before "fired up") is redundant: the lifecycle warms up with
        # this recipe's requests right after, speculative decoding included. Measured at this shape on an H200
        # (SGLang 0.5.11): 1.5 s of every start (uvicorn up 122.7 s -> fired up 124.3 s); 0.5.6.post2 has the flag
        # (http_server.py: the server is marked up without the request).
        ("--skip-server-warmup", None),
        # Not --disable-piecewise-cuda-graph: 0.5.6.post2 captures no piecewise graphs unless asked
        # (--enable-piecewise-cuda-graph is opt-in there), so there is nothing to turn off. On 0.5.11, where they
        # are on by default, turning them off saved 33 s of a cached start at this shape (127.5 -> 94.7 s, with
        # --skip-server-warmup) but cost latency: TTFT p50 49.9 -> 80.8 ms at 1 stream, 167.8 -> 236.5 ms at 16;
        # TPOT p50 9.92 -> 11.33 ms and 20.74 -> 23.59 ms (benchmarks/results/cold_start_real_shape_h200.json).
    ),
    # EAGLE-3 with Tengyunw's drafter and the model's documented defaults: ≈30% more
    # single-user throughput. Not for compute-bound, large-batch workloads.
    speculative=SpeculativeDecoding(
        algorithm="EAGLE3",
        draft_model="Tengyunw/qwen3_8b_eagle3",
        draft_revision=None,  # unpinned upstream; pin it with a setting (see README)
        num_steps=6,
        eagle_topk=10,
        num_draft_tokens=32,
        # A matched EAGLE-3 drafter accepts several tokens per step on chat text (EAGLE-3's paper reports 4-6 for
        # 8B models at similar settings); a mismatched one ~1.0. 2.0 sits between them with room for the warm-up
        # prompt's shortness. Not yet measured with the real weights (no GPU run of --shape model so far).
        min_accept_length=2.0,
    ),
    # Measured: compile_deep_gemm at this model's shape (TP 1, SGLang 0.5.11) compiled 4 shapes, the dense FP8
    # projections qkv (N 6144, K 4096), o (4096, 4096), gate_up (24576, 4096), down (4096, 12288); the drafter is
    # BF16. At TP 2 each rank's shapes halve in N or K but stay 4, and only the node's first rank precompiles them
    # (srt/layers/deep_gemm_wrapper/compile_utils.py: _DO_COMPILE_ALL = _IS_FIRST_RANK_ON_NODE).
    deep_gemm_shapes=4,
    # The example's 5 s never drained anything: SGLang notices SIGTERM on a 5 s tick, so
    # in-flight requests need two ticks and more. 25 s (drain up to 23 s, then the group is
    # killed) fits Modal's 30 s for exit handlers. A scale-down holds the GPUs that long at most.
    exit_grace_period=25,
    startup_timeout=20 * MINUTES,
    readiness_timeout=15 * MINUTES,
    health_poll_interval=0.25,
    # 64 tokens, all generated: at 6 EAGLE-3 steps a round, at least 9 draft/verify rounds,
    # so the first speculative decode (which JIT-compiles, ~100 s cold) happens here, not
    # for the first user. The first request may use the rest of startup_timeout; later ones 10 s.
    warmup=Warmup(count=3, prompt="Hello, how are you?", max_tokens=64, timeout=10),
    smoke=SmokeTest(
        system_prompt="You are a pirate who can't help but drop sly reminders that he went to Harvard.",
        prompt="Explain the Singular Value Decomposition.",
        max_tokens=128,
    ),
)
