"""`invoke pipeline`: build -> download -> compile -> deploy -> smoke, stopping at the first failure.

Every local precondition of the whole flow (the guarded environment's git state, branch and confirmation, the
credentials) is checked before the first stage, so a prod pipeline from a dirty tree makes no remote call at all. Each
stage skips itself when its inputs are unchanged, so a re-run with nothing changed makes no remote call except the smoke
test. Revisions resolved by the download stage are pinned for every later stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from infra.runtime.deployment import Deployment
from infra.runtime.errors import StageError, UserError
from stages import build, compile, deploy, download, smoke
from stages.common import Context, StageResult


def run(ctx: Context, d: Deployment, *, confirm=input) -> list[StageResult]:
    checked = deploy.preflight(ctx, d, confirm=confirm)
    results: list[StageResult] = []

    def step(name: str, fn: Callable[[], StageResult]) -> StageResult:
        try:
            outcome = fn()
        except StageError:
            raise
        except UserError as err:
            raise StageError(name, str(err)) from None
        except Exception as err:  # a remote failure: name the stage, keep the cause
            raise StageError(name, f"{type(err).__name__}: {err}") from err
        results.append(outcome)
        return outcome

    step(build.STAGE, lambda: build.run(ctx, d))
    step(download.STAGE, lambda: download.run(ctx, d))
    pinned = ctx.pinned(d)
    step(compile.STAGE, lambda: compile.run(ctx, pinned))
    deployed = step(deploy.STAGE, lambda: deploy.run(ctx, pinned, dataclasses.replace(checked, after_download=True)))
    url = deployed.detail.url if deployed.detail else None
    step(smoke.STAGE, lambda: smoke.run(ctx, pinned, smoke.Options(url=url)))
    return results
