"""A stand-in for the `sglang` package: same module names, same command lines, no GPU.

Tests put its parent folder first on PYTHONPATH, so `python3 -m sglang.launch_server ...`
and `python3 -m sglang.compile_deep_gemm ...` built by infra/runtime/sglang_args.py run for real.
"""
