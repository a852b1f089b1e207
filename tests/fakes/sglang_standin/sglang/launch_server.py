"""Stand-in for `python -m sglang.launch_server`: accepts SGLang's arguments, serves the fake server.

FAKE_SGLANG (JSON) sets the fake server's behaviour; FAKE_SGLANG_ARGV, if set, names
a file that receives the argument list, so tests see the exact command line.

It behaves as SGLang does where the lifecycle depends on it:
- shutdown: a child "scheduler" process; SIGTERM to the parent drains in-flight
  requests, polled every `drain_poll` seconds (SGLang: 5; here 0.5 unless FAKE_SGLANG
  says otherwise); a dead scheduler makes the parent kill itself, cutting streams;
- its log, when FAKE_SGLANG says `"sglang_log": true`: the lines with which SGLang 0.5.11 marks the
  steps of its start (server_args, weights, KV cache, CUDA-graph capture with DeepGEMM inside, the
  drafter's, the HTTP server), in SGLang's format, so infra/runtime/timeline.py reads a stand-in
  start as it reads a real one (off by default: error messages quote the last lines);
- JIT caches: at start it looks in each cache SGLang's stack compiles into (the same
  variables and defaults: $SGLANG_DG_CACHE_DIR, $TRITON_CACHE_DIR, ...) for its kernel
  file; if any is missing it "compiles" for `jit_seconds` and writes them. The first
  chat request "compiles the speculative decode" for `first_request_seconds` unless
  its kernel is in the Triton cache. Only when FAKE_SGLANG names `jit_seconds`. `FAKE_SGLANG_JIT_LOG`, if set, names a
  JSON-lines
  file that receives {pid, hits, misses} per start.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from openai_server import Behaviour, hold_gpu_memory, serve  # noqa: E402

STANDIN_DEFAULTS = {"drain_poll": 0.5, "scheduler": True}
HOME = os.path.expanduser("~")
# Where each part of SGLang's stack compiles to, and its default (see infra/runtime/compile_cache.py for the sources).
JIT_CACHES = {
    "SGLANG_DG_CACHE_DIR": os.path.join(HOME, ".cache", "deep_gemm"),
    "TRITON_CACHE_DIR": os.path.join(HOME, ".triton", "cache"),
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor_" + os.environ.get("USER", "root"),
    "FLASHINFER_WORKSPACE_BASE": HOME,
    "CUDA_CACHE_PATH": os.path.join(HOME, ".nv", "ComputeCache"),
    "TVM_FFI_CACHE_DIR": os.path.join(HOME, ".cache", "tvm-ffi"),
    "SGLANG_CACHE_DIR": os.path.join(HOME, ".cache", "sglang"),
}


def log(message: str) -> None:
    """A line as SGLang's logger writes it (srt/utils/common.py configure_logger: "[%(asctime)s] %(message)s")."""
    print(time.strftime("[%Y-%m-%d %H:%M:%S] ") + message, flush=True)


def start_lines(argv: list[str], speculative: bool, between) -> None:
    """SGLang's start-up, as its log shows it; `between()` runs where CUDA-graph capture (and its JIT) happens."""
    log(f"server_args=ServerArgs(model_path={argv[argv.index('--model-path') + 1]!r}, standin=True)")
    models = [("Qwen3ForCausalLM", "Target")] + ([("LlamaForCausalLMEagle3", "Draft")] if speculative else [])
    for i, (kind, _) in enumerate(models):
        log("Init torch distributed begin.")
        log("Load weight begin. avail mem=79.00 GB")
        log(f"Load weight end. elapsed=0.01 s, type={kind}, avail mem=78.00 GB, mem usage=1.00 GB.")
        log("KV Cache is allocated. #tokens: 4096, K size: 0.01 GB, V size: 0.01 GB")
        log("Memory pool end. avail mem=70.00 GB")
        if i == 0:
            log("Capture cuda graph begin. This can take up to several minutes. avail mem=70.00 GB")
            if os.environ.get("SGLANG_ENABLE_JIT_DEEPGEMM", "1").lower() not in ("0", "false", "no", "n"):
                log("Try DeepGEMM JIT Compiling for <GEMM_NT_F8F8BF16> N=6144, K=4096, num_groups=1 with all Ms.")
                print("\rDeepGEMM warmup:  50%|#####     | 8192/16384\rDeepGEMM warmup: 100%|##########| 16384/16384",
                      flush=True)
            between()
            log("Capture cuda graph end. Time elapsed: 0.01 s. mem usage=0.01 GB. avail mem=69.99 GB.")
            log("Disable piecewise CUDA graph because --disable-piecewise-cuda-graph is set")
        else:
            log("Capture draft cuda graph begin. This can take up to several minutes. avail mem=69.00 GB")
            log("Capture draft cuda graph end. Time elapsed: 0.01 s. mem usage=0.01 GB. avail mem=68.99 GB.")
            log("Capture draft extend cuda graph begin. This can take up to several minutes. avail mem=68.99 GB")
            log("Capture draft extend cuda graph end. Time elapsed: 0.01 s. mem usage=0.01 GB. avail mem=68.98 GB.")
    log("INFO:     Application startup complete.")


def jit_warm(seconds: float) -> None:
    folders = {name: os.environ.get(name) or default for name, default in JIT_CACHES.items()}
    # FlashInfer's variable names a base: it compiles into $FLASHINFER_WORKSPACE_BASE/.cache/flashinfer.
    folders["FLASHINFER_WORKSPACE_BASE"] = os.path.join(folders["FLASHINFER_WORKSPACE_BASE"], ".cache", "flashinfer")
    hits = sorted(n for n, d in folders.items() if os.path.exists(os.path.join(d, f"standin-{n.lower()}.bin")))
    misses = sorted(set(folders) - set(hits))
    if misses:
        print(f"JIT: compiling kernels (not cached: {', '.join(misses)})", flush=True)
        time.sleep(seconds)
        for name in misses:
            os.makedirs(folders[name], exist_ok=True)
            with open(os.path.join(folders[name], f"standin-{name.lower()}.bin"), "wb") as f:
                f.write(os.urandom(2048))
    else:
        print("JIT: every kernel found in its cache", flush=True)
    if path := os.environ.get("FAKE_SGLANG_JIT_LOG"):
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "hits": hits, "misses": misses}) + "\n")


if __name__ == "__main__":
    if path := os.environ.get("FAKE_SGLANG_ARGV"):
        with open(path, "w") as f:
            json.dump(sys.argv[1:], f)
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--revision")
    parser.add_argument("--speculative-algorithm")
    known, _ = parser.parse_known_args()
    hub = os.environ.get("HF_HUB_CACHE")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and hub and known.revision:
        # As SGLang reading the config offline: a revision missing from the cache ends the start.
        snapshot = os.path.join(hub, "models--" + known.model_path.replace("/", "--"), "snapshots", known.revision)
        if not os.path.isdir(snapshot):
            time.sleep(0.3)
            print("Traceback (most recent call last):", flush=True)
            print(f"OSError: {known.model_path} revision {known.revision} is not in the local cache and "
                  "HF_HUB_OFFLINE=1", flush=True)
            sys.exit(1)
    options = (STANDIN_DEFAULTS | {"speculative": bool(known.speculative_algorithm)}
               | json.loads(os.environ.get("FAKE_SGLANG", "{}")))
    jit = options.pop("jit_seconds", None)
    # JIT only when a test asks: it writes where the variables point, or into $HOME
    warm = lambda: jit_warm(float(jit)) if jit is not None else None  # noqa: E731
    if options.pop("sglang_log", False):
        start_lines(sys.argv[1:], options["speculative"], warm)
    else:
        warm()
    first = float(options.pop("first_request_seconds", 0.0))
    triton = os.environ.get("TRITON_CACHE_DIR") or JIT_CACHES["TRITON_CACHE_DIR"]
    spec_kernel = os.path.join(triton, "standin-speculative.bin")
    if first and not os.path.exists(spec_kernel):
        options.update(first_chat_delay=first, first_chat_writes=spec_kernel)
    hold_gpu_memory(5000)  # what the dry run's stand-in nvidia-smi reports while this process lives
    asyncio.run(serve(Behaviour(host=known.host, port=known.port, **options)))
