"""Stand-in for `python3 -m sglang.compile_deep_gemm`: records its argv, writes a kernel, or fails.

FAKE_COMPILE_RECORD names a JSON file for {argv, SGLANG_DG_CACHE_DIR}; FAKE_COMPILE_FAIL=<code>
makes it exit with that code after printing an error; FAKE_COMPILE_SECONDS makes it slow; FAKE_SGLANG's
"sglang_log" makes it print what SGLang's compile_deep_gemm prints around a shape's JIT.
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
    # With FAKE_SGLANG {"sglang_log": true}: what SGLang's compile_deep_gemm prints around the JIT of one GEMM shape
    # (0.5.11's wording), for the timeline parser; otherwise one short line (error messages quote it).
    sglang_log = json.loads(os.environ.get("FAKE_SGLANG") or "{}").get("sglang_log")
    if sglang_log:
        print("Begin DeepGEMM Kernels compilation...", flush=True)
        print(time.strftime("[%Y-%m-%d %H:%M:%S] ") + "Try DeepGEMM JIT Compiling for <GEMM_NT_F8F8BF16> N=6144, "
              "K=4096, num_groups=1 with all Ms.", flush=True)
    else:
        print("Compiling DeepGEMM kernels...", flush=True)
    time.sleep(float(os.environ.get("FAKE_COMPILE_SECONDS", "0")))
    if sglang_log:
        print("\rDeepGEMM warmup:   0%|          | 0/16384\rDeepGEMM warmup: 100%|##########| 16384/16384", flush=True)
    if code := int(os.environ.get("FAKE_COMPILE_FAIL", "0")):
        print("RuntimeError: DeepGEMM JIT compilation failed: nvcc not found", flush=True)
        sys.exit(code)
    os.makedirs(os.path.join(cache, "kernels"), exist_ok=True)
    with open(os.path.join(cache, "kernels", "fp8_gemm_nt.cubin"), "wb") as f:
        f.write(os.urandom(4096))
    print("DeepGEMM Kernels compilation finished successfully." if sglang_log else "DeepGEMM kernels compiled",
          flush=True)
