"""Stand-in for `python -m sglang.launch_server`: accepts SGLang's arguments, serves the fake server.

FAKE_SGLANG (JSON) sets the fake server's behaviour; FAKE_SGLANG_ARGV, if set, names
a file that receives the argument list, so tests see the exact command line.

It behaves as SGLang does where the lifecycle depends on it:
- shutdown: a child "scheduler" process; SIGTERM to the parent drains in-flight
  requests, polled every `drain_poll` seconds (SGLang: 5; here 0.5 unless FAKE_SGLANG
  says otherwise); a dead scheduler makes the parent kill itself, cutting streams;
- JIT caches: at start it looks in each cache SGLang's stack compiles into (the same
  variables and defaults: $SGLANG_DG_CACHE_DIR, $TRITON_CACHE_DIR, ...) for its kernel
  file; if any is missing it "compiles" for `jit_seconds` and writes them. The first
  chat request "compiles the speculative decode" for `first_request_seconds` unless
  its kernel is in the Triton cache. Only when FAKE_SGLANG names `jit_seconds`. `FAKE_SGLANG_JIT_LOG`, if set, names a JSON-lines
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
    options = STANDIN_DEFAULTS | {"speculative": bool(known.speculative_algorithm)} | json.loads(os.environ.get("FAKE_SGLANG", "{}"))
    if "jit_seconds" in options:  # only when a test asks: it writes where the variables point, or into $HOME
        jit_warm(float(options.pop("jit_seconds")))
    first = float(options.pop("first_request_seconds", 0.0))
    triton = os.environ.get("TRITON_CACHE_DIR") or JIT_CACHES["TRITON_CACHE_DIR"]
    spec_kernel = os.path.join(triton, "standin-speculative.bin")
    if first and not os.path.exists(spec_kernel):
        options.update(first_chat_delay=first, first_chat_writes=spec_kernel)
    hold_gpu_memory(5000)  # what the dry run's stand-in nvidia-smi reports while this process lives
    asyncio.run(serve(Behaviour(host=known.host, port=known.port, **options)))
