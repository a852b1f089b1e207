"""Stand-in for `python3 -m sglang.compile_deep_gemm`: records its argv, writes a kernel, or fails.

FAKE_COMPILE_RECORD names a JSON file for {argv, SGLANG_DG_CACHE_DIR}; FAKE_COMPILE_FAIL=<code>
makes it exit with that code after printing an error; FAKE_COMPILE_SECONDS makes it slow.
"""

import json
import os
import sys
import time

if __name__ == "__main__":
    cache = os.environ.get("SGLANG_DG_CACHE_DIR", os.path.expanduser("~/.cache/deep_gemm"))
    if path := os.environ.get("FAKE_COMPILE_RECORD"):
        with open(path, "w") as f:
            json.dump({"argv": sys.argv[1:], "SGLANG_DG_CACHE_DIR": cache}, f)
    print("Compiling DeepGEMM kernels...", flush=True)
    time.sleep(float(os.environ.get("FAKE_COMPILE_SECONDS", "0")))
    if code := int(os.environ.get("FAKE_COMPILE_FAIL", "0")):
        print("RuntimeError: DeepGEMM JIT compilation failed: nvcc not found", flush=True)
        sys.exit(code)
    os.makedirs(os.path.join(cache, "kernels"), exist_ok=True)
    with open(os.path.join(cache, "kernels", "fp8_gemm_nt.cubin"), "wb") as f:
        f.write(os.urandom(4096))
    print("DeepGEMM kernels compiled", flush=True)
