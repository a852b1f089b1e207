"""Stage 5: stream one chat completion from the deployed endpoint and check that text came back.

The request and its checks are infra/perf/smoketest.py's; this stage finds the endpoint (`--url`-less: the current
release's, else what Modal reports), and records the result on the current release, which is what `promote` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.perf import smoketest
from infra.perf.releases import ReleaseStore
from infra.runtime.deployment import Deployment
from infra.runtime.errors import StageError
from stages.common import Context, StageResult, dry_run, endpoint, result

STAGE = smoketest.STAGE


@dataclass(frozen=True)
class Options:
    url: str | None = None  # the endpoint to test (a pipeline passes the one it just deployed)
    deadline: float | None = None  # seconds to wait for a first token (default: a full cold start)


def record(ctx: Context, d: Deployment, outcome: smoketest.SmokeResult) -> None:
    """Put the smoke result on the current release of this environment (what promotion checks)."""
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "smoke"):
        manifest = store.read(d)
        if manifest.current is not None and manifest.current.url in (None, outcome.url):
            store.update_current(d, manifest, smoke=outcome)


def run(ctx: Context, d: Deployment, options: Options = Options()) -> StageResult[smoketest.SmokeResult]:
    if done := dry_run(ctx, STAGE, d, f"stream one completion from {d.app_name}"):
        return done
    ctx.remote.require_credentials()
    url = options.url or endpoint(ctx, d, STAGE)
    ctx.say(f"smoke test: streaming one completion from {url}...")
    try:
        outcome = smoketest.check(d, url, deadline=options.deadline, say=ctx.say)
    except StageError as err:
        record(ctx, d, smoketest.SmokeResult.failed(url, str(err)))
        raise
    record(ctx, d, outcome)
    return result(STAGE, d, "ran", f"smoke passed ({outcome.checked}): time to first token {outcome.ttft:.2f} s, "
                                   f"total {outcome.total:.2f} s, {outcome.output_tokens} tokens: "
                                   f"{outcome.reply[:80]!r}", outcome)
