"""`invoke pipeline`: build -> download -> compile -> deploy -> smoke, stopping at the first failure.

Each stage skips itself when its inputs are unchanged, so a re-run with nothing
changed makes no remote call except the smoke test. Revisions resolved by the
download stage are pinned for every later stage.
"""

from __future__ import annotations

from infra.deployment import Deployment
from infra.errors import StageError, UserError
from stages import build, compile, deploy, download, smoke
from stages.common import Context, StageResult

STAGES = ("build", "download", "compile", "deploy", "smoke")


def run(ctx: Context, d: Deployment, *, confirm=input) -> list[StageResult]:
    results: list[StageResult] = []

    def step(name: str, fn):
        try:
            result = fn()
        except StageError:
            raise
        except UserError as err:
            raise StageError(name, str(err)) from None
        except Exception as err:  # a remote failure: name the stage, keep the cause
            raise StageError(name, f"{type(err).__name__}: {err}") from err
        results.append(result)
        return result

    step("build", lambda: build.run(ctx, d))
    step("download", lambda: download.run(ctx, d))
    pinned = download.pin_revisions(ctx, d)
    step("compile", lambda: compile.run(ctx, pinned))
    deployed = step("deploy", lambda: deploy.run(ctx, pinned, confirm=confirm))
    url = deployed.detail.get("url") or (deployed.detail.get("previous") or {}).get("url")
    step("smoke", lambda: smoke.run(ctx, pinned, url))
    return results
