"""DeepGEMM kernels compiled ahead of time into the kernel cache Volume.

SGLang JIT-compiles its FP8 GEMM kernels (DeepGEMM) for the shapes the server's
arguments imply; on a cold cache that takes tens of minutes. The compile job runs
`sglang.compile_deep_gemm` with the server's own argument list (infra/sglang_args.py)
into $SGLANG_DG_CACHE_DIR, checks its exit code (the reference documents did not),
commits the Volume, and only then writes a marker keyed by everything that changes
the kernels. A matching marker means the job has nothing to do.

No `modal` import here: tests run `compile_kernels` for real against a stand-in
`sglang.compile_deep_gemm`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from infra import sglang_args
from infra.deployment import Deployment
from infra.files import MARKERS, write_atomically
from infra.lifecycle import ServerProcess

# Beyond compile_deep_gemm's own --timeout: it does not notice a crashed server, so we bound it too.
KILL_AFTER = sglang_args.COMPILE_TIMEOUT + 300


class CompileFailed(RuntimeError):
    pass


def kernel_key(d: Deployment) -> dict:
    """Everything that changes which kernels exist: the SGLang build, the model, the parallelism, the GPU."""
    return {
        "sglang_image": d.recipe.sglang_image,
        "model": d.recipe.model,
        "model_revision": d.recipe.model_revision,
        "draft_model": d.recipe.draft_model,
        "draft_revision": d.recipe.draft_revision,
        "tp_size": d.recipe.tp_size,
        "gpu_type": d.recipe.gpu_type,
        # The shapes follow from the full argument list (CUDA-graph sizes, speculative settings...).
        "server_args": sglang_args.server_args(d, snapshot_phase=d.gpu_snapshot),
    }


def kernel_fingerprint(d: Deployment) -> str:
    return hashlib.sha256(json.dumps(kernel_key(d), sort_keys=True).encode()).hexdigest()[:16]


def marker_path(cache_dir: str | Path, d: Deployment) -> Path:
    return Path(cache_dir) / MARKERS / f"{d.recipe.name}-{kernel_fingerprint(d)}.json"


def compile_kernels(
    d: Deployment,
    cache_dir: str | Path,
    *,
    commit_volume: Callable[[], None] = lambda: None,
    env: dict[str, str] | None = None,
    kill_after: float = KILL_AFTER,
) -> dict:
    marker = marker_path(cache_dir, d)
    if marker.exists():
        return {**json.loads(marker.read_text()), "skipped": True}
    env = dict(os.environ if env is None else env)
    # Parsed as SGLang's EnvBool does (srt/environ.py): false/0/no/n, any case, turn it off.
    if env.get("SGLANG_ENABLE_JIT_DEEPGEMM", "1").strip().lower() in ("false", "0", "no", "n"):
        return {"skipped": True, "reason": "SGLANG_ENABLE_JIT_DEEPGEMM=0: SGLang will not use DeepGEMM"}
    env["SGLANG_DG_CACHE_DIR"] = str(cache_dir)  # where SGLang really writes, whatever DG_JIT_CACHE_DIR says
    argv = sglang_args.compile_command(d)
    started = time.monotonic()
    process = ServerProcess(argv, env=env, tail_lines=30)
    code = process.wait_exit(kill_after)
    if code is None:
        process.stop()
        raise CompileFailed(f"compile_deep_gemm still running after {kill_after:g} s; killed. Last lines:\n{process.tail()}")
    if code != 0:
        tail = process.tail()
        process.stop()
        raise CompileFailed(f"compile_deep_gemm exited with code {code}; last lines:\n{tail}")
    process.stop()
    seconds = time.monotonic() - started
    files = sorted(str(p.relative_to(cache_dir)) for p in Path(cache_dir).rglob("*") if p.is_file() and MARKERS not in p.parts)
    commit_volume()  # kernels durable before the marker claims them
    record = {"key": kernel_key(d), "fingerprint": kernel_fingerprint(d), "argv": argv, "seconds": round(seconds, 1),
              "files": len(files), "completed_at": time.time()}
    write_atomically(marker, json.dumps(record, indent=1))
    commit_volume()
    return {**record, "skipped": False}
