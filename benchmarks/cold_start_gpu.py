"""A cold start with and without the project's compile caches, on a real GPU with real SGLang (issue 15).

1. Without caches: every per-user cache (~/.triton, ~/.cache/..., /tmp/torchinductor_*, ~/.nv)
   and the fixed local root removed, then the compile job's own body (infra/runtime/kernels.py
   `warm_caches`: the server started through the lifecycle with the deployment's launch
   arguments, warmed up, stopped, its caches published to a stand-in for the kernel Volume).
   Its server start is the cold start.
2. As a new container: the per-user caches and the local root removed again, the published
   tree copied back to the same fixed path (`compile_cache.restore`), and a new SGLang process
   started through the lifecycle as `infra/runtime/app.py` does.

Printed per phase, both times, with the ratio: process start to healthy, the first warm-up
request (the first speculative decode: EAGLE-3), the rest of the warm-up, launch to ready,
and launch to ready plus the restore's copy. Target: with caches <= 0.5x without.

    python benchmarks/cold_start_gpu.py [--hub DIR] [--volume DIR] [--json out.json]

The model is the tiny random-weight Qwen3 with its EAGLE-3 drafter of the GPU suite
(tests/gpu/real_sglang.py), served with the low-latency recipe's flags and warm-up.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.runtime import compile_cache, kernels, lifecycle, sglang_args  # noqa: E402
from tests.gpu import real_sglang as real  # noqa: E402

HOME = Path.home()
# Where each cache goes when its variable is not set: removed before each start, and
# checked afterwards: anything found there escaped the compile-cache root.
PER_USER = [HOME / ".triton", HOME / ".cache" / "flashinfer", HOME / ".cache" / "tvm-ffi", HOME / ".cache" / "sglang",
            HOME / ".cache" / "deep_gemm", HOME / ".cache" / "torch_extensions", HOME / ".nv"]


def per_user_caches() -> list[Path]:
    return PER_USER + [Path(p) for p in glob.glob("/tmp/torchinductor_*")]


def wipe(local_root: Path) -> None:
    for path in per_user_caches() + [local_root]:
        shutil.rmtree(path, ignore_errors=True)


def escaped() -> dict[str, int]:
    """Files that landed in a per-user default instead of the root: should be none."""
    out = {}
    for path in per_user_caches():
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        if files:
            out[str(path)] = len(files)
    return out


def phases(timings: dict) -> dict:
    warm = timings["warmup_s"]
    return {
        "start_to_healthy_s": timings["healthy_s"],
        "first_speculative_request_s": warm[0],
        "rest_of_warmup_s": round(sum(warm[1:]), 3),
        "launch_to_ready_s": timings["ready_s"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hub", default="/tmp/infra-gpu-hub", help="Hugging Face cache for the tiny models")
    p.add_argument("--volume", default="/tmp/infra-gpu-kernel-volume", help="stands in for the kernel Volume")
    p.add_argument("--root", default=compile_cache.LOCAL_ROOT, help="the fixed local compile-cache root")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--budget", type=float, default=540, help="seconds each start may take")
    args = p.parse_args()
    if reason := real.unavailable_reason():
        raise SystemExit(f"cold_start_gpu: {reason}")
    hub, volume, root = Path(args.hub), Path(args.volume), Path(args.root)
    models = real.build_tiny_models(hub)
    d = real.tiny_deployment(port=real.free_port())
    key = kernels.kernel_key(d)
    fp = compile_cache.fingerprint(key)
    env = real.server_environment(hub, root) | {"SGLANG_ENABLE_JIT_DEEPGEMM": "0"}  # no FP8 GEMMs in a bf16 tiny model
    result: dict = {"fingerprint": fp, "models": models, "root": str(root), "gpu_mib_idle": real.gpu_memory_used_mib()}

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, default=str))

    # 1. Without caches: the compile job's body, on a machine with nothing compiled.
    wipe(root)
    shutil.rmtree(volume, ignore_errors=True)
    began = time.monotonic()
    job = kernels.warm_caches(
        key=key, marker=volume / kernels.MARKERS / f"{d.recipe.name}-{fp}.json", compile_argv=None,
        launch_argv=sglang_args.launch_command(d), readiness=real.readiness(d, args.budget),
        volume_root=volume, local_root=root, env=env,
    )
    result["without"] = phases(job["server_timings"]) | {"job_s": round(time.monotonic() - began, 1),
                                                         "job_phases": job["phases"]}
    result["caches"] = job["caches"]
    result["escaped_without"] = escaped()
    save()
    print(f"without caches: {json.dumps(result['without'])}", flush=True)

    # 2. As a new container: nothing local, the key's tree copied to the same path, a new process.
    wipe(root)
    restored = compile_cache.restore(volume, fp, root)
    result["restore"] = restored
    d2 = real.tiny_deployment(port=real.free_port())
    server = lifecycle.start_and_warm(sglang_args.launch_command(d2), f"http://127.0.0.1:{d2.server.port}",
                                      real.readiness(d2, args.budget), env=env)
    timings = dict(server.timings)
    server.stop(grace=0)
    result["with"] = phases(timings)
    result["escaped_with"] = escaped()
    result["ratio"] = {k: round(result["with"][k] / result["without"][k], 3) if result["without"][k] else None
                       for k in result["with"]}
    with_copy = result["with"]["launch_to_ready_s"] + restored["seconds"]
    result["ratio"]["launch_to_ready_plus_restore"] = round(with_copy / result["without"]["launch_to_ready_s"], 3)
    save()
    print(render(result), flush=True)


def render(result: dict) -> str:
    rows = [("process start to healthy", "start_to_healthy_s"), ("first speculative request", "first_speculative_request_s"),
            ("rest of the warm-up", "rest_of_warmup_s"), ("launch to ready", "launch_to_ready_s")]
    lines = [f"cold start, tiny Qwen3 + EAGLE-3, compile-cache key {result['fingerprint']}",
             f"  {'phase':<28} {'without caches':>15} {'with caches':>12} {'ratio':>7}"]
    for label, k in rows:
        lines.append(f"  {label:<28} {result['without'][k]:>13.1f} s {result['with'][k]:>10.1f} s {result['ratio'][k]:>7.3f}")
    r = result["restore"]
    lines.append(f"  {'restore copy (with only)':<28} {'':>15} {r['seconds']:>10.1f} s   "
                 f"({r.get('files', 0)} files, {r.get('bytes', 0) / 1e6:.0f} MB)")
    lines.append(f"  launch to ready + restore, ratio: {result['ratio']['launch_to_ready_plus_restore']:.3f} (target <= 0.5)")
    sizes = ", ".join(f"{k} {v['files']} files/{v['bytes'] / 1e6:.1f} MB" for k, v in result["caches"].items() if k != "total")
    lines.append(f"  published caches: {sizes}")
    lines.append(f"  escaped to per-user defaults: without {result['escaped_without'] or 'none'}, with {result['escaped_with'] or 'none'}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
