"""`invoke gpu-test`: the GPU acceptance suite where the recipe runs, before it is promoted, at one of its shapes
(infra/runtime/acceptance.py, run by infra/runtime/jobs.py `gpu_test`; docs/acceptance.md says what each shape runs).

The typed result (acceptance.SuiteResult) is shown as a table, appended to $GITHUB_STEP_SUMMARY and recorded on the
current release when it runs what was tested. A failing test fails the command with its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infra.control import costs, plan
from infra.perf.releases import ReleaseStore
from infra.runtime import acceptance
from infra.runtime.deployment import Deployment
from infra.runtime.errors import StageError
from stages.common import Context, StageResult, dry_run, result

STAGE = "gpu-test"
SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class Options:
    shape: str = "tiny"


def table(r: acceptance.SuiteResult) -> str:
    width = max([len(c.test) for c in r.cases] + [4])
    lines = [f"{'test':<{width}}  {'outcome':<8} {'seconds':>8}  note"]
    for c in r.cases:
        lines.append(f"{c.test:<{width}}  {c.outcome:<8} {c.seconds:>8.1f}  {c.message or ''}"[:width + 140])
    counts = ", ".join(f"{r.count(o)} {o}" for o in ("passed", "failed", "error", "skipped") if r.count(o))
    lines.append(f"{counts or 'no test'} in {r.seconds:.0f} s on {r.gpu or 'an unknown GPU'}, SGLang {r.sglang or '?'}")
    return "\n".join(lines)


def markdown(d: Deployment, r: acceptance.SuiteResult, verdict: str) -> str:
    rows = "\n".join(f"| `{c.test}` | {c.outcome} | {c.seconds:.1f} | {(c.message or '').replace('|', '/')} |"
                     for c in r.cases)
    return (f"### GPU acceptance: {d.env}/{d.recipe.name}, shape {r.shape}: {verdict}\n\n"
            f"`python -m pytest tests/gpu` in `{d.recipe.sglang_image}` on `{d.recipe.gpu}`, {r.seconds:.0f} s, "
            f"SGLang {r.sglang or '?'}\n\n| test | outcome | s | note |\n|---|---|---|---|\n{rows}\n")


def record_on_release(ctx: Context, d: Deployment, r: acceptance.SuiteResult) -> str:
    """On the current release, when it runs the image and model revisions that were tested; else why not."""
    store = ReleaseStore(ctx.remote)
    manifest = store.read(d)
    current = manifest.current
    if current is None:
        return f"not recorded on a release: {d.env}/{d.recipe.name} has none yet"
    tested = (d.recipe.sglang_image, d.recipe.model, d.recipe.model_revision)
    if (current.image, current.model, current.model_revision) != tested:
        return (f"not recorded on release {current.release_id}: it runs {current.image} with {current.model}@"
                f"{current.model_revision}, not the tested {tested[0]} with {tested[1]}@{tested[2]}")
    acceptance_records = dict(current.acceptance or {}) | {r.shape: acceptance.AcceptanceRun.of(r)}
    store.update_current(d, manifest, acceptance=acceptance_records)
    return f"recorded on release {current.release_id}"


def run(ctx: Context, d: Deployment, options: Options = Options()) -> StageResult[dict]:
    shape = options.shape
    # What one run costs: the shape's expected time, and at most its timeout (the figures `plan` shows).
    priced = plan.gpu_test_cost(d, costs.rates_for(ctx.settings.costs))
    one = priced.shapes[shape]
    cost = one.model_dump() | {"timeout_seconds": priced.timeout_seconds, "usd_at_timeout": priced.usd_at_timeout}
    what = (f"run `python -m pytest tests/gpu` at shape {shape} in {d.recipe.sglang_image} on {d.recipe.gpu} "
            f"(timeout {priced.timeout_seconds} s): ~{one.seconds:.0f} s ≈ ${one.usd:,.2f}, at most "
            f"${priced.usd_at_timeout:,.2f}")
    if skipped := dry_run(ctx, STAGE, d, what):
        skipped.detail = {"shape": shape, "cost": cost}
        return skipped
    d = ctx.pinned(d) if shape == "model" else d
    ctx.remote.require_credentials()
    with ctx.working(f"running the GPU acceptance suite ({shape}) for {d.recipe.name} on {d.recipe.gpu}"):
        raw = ctx.remote.run_gpu_test(d, shape)
    r = acceptance.SuiteResult.model_validate(raw)
    verdict = "passed" if r.passed else ("FAILED: " + ", ".join(c.test for c in r.failing) if r.failing
                                         else f"nothing passed (exit {r.exit_code})")
    if path := os.environ.get(SUMMARY_VARIABLE):
        with Path(path).open("a") as f:
            f.write(markdown(d, r, verdict))
    recorded = record_on_release(ctx, d, r)
    message = f"{table(r)}\ngpu-test ({d.env}/{d.recipe.name}, {shape}): {verdict}; {recorded}"
    if not r.passed:
        ctx.say(message)
        if r.failing:
            raise StageError(STAGE, f"{len(r.failing)} failed: " + "; ".join(
                f"{c.test} ({c.message or c.outcome})" for c in r.failing))
        raise StageError(STAGE, f"no test passed at shape {shape} (pytest exit {r.exit_code}): "
                                + "; ".join(f"{c.test}: {c.message}" for c in r.cases[:3]))
    return result(STAGE, d, "ran", message, r.model_dump() | {"cost": cost, "recorded": recorded})
