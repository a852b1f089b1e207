"""Stage 3: compile every JIT cache on the recipe's GPU into the kernel cache Volume.

The remote job (infra/jobs.py -> infra/kernels.py) runs sglang.compile_deep_gemm with
the server's own arguments, then starts and warms up the real server, publishes what
was compiled under its key, commits the Volume and writes a marker keyed by everything
that changes the compiled code; a matching marker skips it.
"""

from __future__ import annotations

from infra.deployment import Deployment
from infra.kernels import kernel_fingerprint
from stages.common import Context, StageResult, dry_run, up_to_date
from stages.download import pin_revisions

STAGE = "compile"


def run(ctx: Context, d: Deployment) -> StageResult:
    d = pin_revisions(ctx, d)  # kernels are compiled for exact revisions
    fp = kernel_fingerprint(d)
    if done := up_to_date(ctx, STAGE, d, fp) or dry_run(
        ctx, STAGE, d, f"compile DeepGEMM kernels and warm every JIT cache for {d.model} on {d.gpu} into Volume {d.kernels_volume}"
    ):
        return done
    ctx.remote.require_credentials()
    ctx.say(f"compiling DeepGEMM kernels and warming a server for {d.model} (tp {d.tp_size}) on {d.gpu}; "
            "a cold cache takes tens of minutes...")
    result = ctx.remote.run_compile(d)
    ctx.state(d).record(STAGE, fp, {k: result.get(k) for k in ("fingerprint", "seconds", "files", "skipped", "reason")})
    how = "already compiled" if result.get("skipped") else f"compiled in {result.get('seconds', 0):.0f} s"
    return StageResult(STAGE, d.env, d.recipe, "ran", f"kernels {how} ({fp})", {"compile": result, "fingerprint": fp})


