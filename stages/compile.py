"""Stage 3: compile every JIT cache on the recipe's GPU into the kernel cache Volume (the job: infra/runtime/jobs.py
-> infra/runtime/kernels.py; a marker keyed by everything that changes the compiled code skips it). Caches are
compiled for exact revisions, so unpinned ones are pinned first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from infra.runtime import timeline
from infra.runtime.deployment import Deployment
from infra.runtime.kernels import kernel_fingerprint
from infra.runtime.model import Stored
from stages.common import Context, StageResult, remote_stage

STAGE = "compile"


@dataclass(frozen=True)
class Options:
    # Compile again and replace what was published for this key, even where the Volume's marker says it is done:
    # what a server start that compiled anyway (a cache miss, infra/runtime/startup.py) asks for.
    recompile: bool = False


class Compiled(Stored):
    """What the compile job answered (its marker, infra/runtime/kernels.py `CompileRecord`, or a skip), as far as
    this stage shows and records it."""

    fingerprint: str
    skipped: bool = False  # the Volume already had a matching marker, or DeepGEMM is off for this recipe
    seconds: float | None = None
    files: int | None = None
    reason: str | None = None
    # Read from SGLang's own output by the job (infra/runtime/timeline.py): its server's start without the caches,
    # phase by phase, and compile_deep_gemm's time per GEMM shape: what a container pays without this stage.
    server_timeline: list[timeline.Phase] | None = None
    deep_gemm_shapes: timeline.DeepGemm | None = None


def without_token(d: Deployment) -> Deployment:
    """`d` for the compile job, which reads only the Volumes: the jobs' app also defines the download, and Modal
    resolves every named Secret of an app when it starts, so a Hugging Face Secret the environment names but has
    not created (optional for public models) must not stop a compile."""
    return d.model_copy(update={"secrets": d.secrets.model_copy(update={"hf_token_secret": None})})


def run(ctx: Context, d: Deployment, options: Options = Options()) -> StageResult[Compiled]:
    d = ctx.pinned(d)
    fp = kernel_fingerprint(d)
    if options.recompile:
        ctx = dataclasses.replace(ctx, force=True)  # nor is the local record of the last compile a reason to skip

    def compile_() -> tuple[Compiled, str]:
        with ctx.working(f"compiling DeepGEMM kernels and warming a server for {d.recipe.model} "
                         f"(tp {d.recipe.tp_size}) on {d.recipe.gpu}; a cold cache takes ~15 minutes"):
            job = ctx.remote.run_compile(without_token(d), force=options.recompile)
        outcome = Compiled.read(job | {"fingerprint": fp})
        how = "already compiled" if outcome.skipped else f"compiled in {outcome.seconds or 0:.0f} s"
        lines = [f"kernels {how} ({fp})"]
        if not outcome.skipped and (shapes := outcome.deep_gemm_shapes):
            lines.append(f"  compile_deep_gemm: {len(shapes.shapes)} GEMM shape(s) in {shapes.seconds:.0f} s")
        if not outcome.skipped and outcome.server_timeline:
            phases = ", ".join(f"{p.phase} {p.seconds:.1f}" for p in outcome.server_timeline if p.seconds >= 1.0)
            lines.append(f"  its server, without the caches: ready in {outcome.server_timeline[-1].end_s:.1f} s"
                         + (f" ({phases})" if phases else ""))
        return outcome, "\n".join(lines)

    return remote_stage(ctx, STAGE, d, fp, Compiled, work=compile_,
                        would=f"compile DeepGEMM kernels and warm every JIT cache for {d.recipe.model} on "
                              f"{d.recipe.gpu} into Volume {d.caches.kernels_volume}")
