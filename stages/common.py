"""What every stage shares: its context, its result, and the up-to-date check.

A stage is idempotent: a fingerprint of its inputs decides whether it must run.
When the inputs match what last succeeded on this machine it prints "up to date"
and makes no remote call at all; `--force` runs it anyway, `--dry-run` says what
it would do and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra import gitinfo
from infra.deployment import Deployment
from infra.errors import Refused
from infra.remote import Remote
from infra.settings import Settings
from infra.state import StageState


@dataclass
class Context:
    settings: Settings
    remote: Remote
    dry_run: bool = False
    force: bool = False
    yes: bool = False
    interactive: bool = field(default_factory=lambda: sys.stdin.isatty())
    say: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))
    repo: Path = gitinfo.REPO  # the checkout whose commit is deployed

    def state(self, d: Deployment) -> StageState:
        return StageState(d.env, d.recipe)


@dataclass
class StageResult:
    stage: str
    env: str
    recipe: str
    status: str  # ran | up-to-date | dry-run | skipped
    message: str
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def up_to_date(ctx: Context, stage: str, d: Deployment, fp: str) -> StageResult | None:
    """The "nothing to do" result when this stage already succeeded with these inputs (and no --force)."""
    state = ctx.state(d)
    if ctx.force or not state.is_current(stage, fp):
        return None
    previous = state.get(stage)["result"]
    return StageResult(stage, d.env, d.recipe, "up-to-date", f"{stage}: up to date ({d.env}/{d.recipe})", {"previous": previous})


def dry_run(ctx: Context, stage: str, d: Deployment, what: str, **detail) -> StageResult | None:
    if not ctx.dry_run:
        return None
    return StageResult(stage, d.env, d.recipe, "dry-run", f"{stage} (dry run): would {what}", detail)


def confirm_or_refuse(ctx: Context, what: str, question: str, confirm: Callable[[str], str] = input) -> None:
    """Guarded actions go ahead with --yes, ask on a terminal, and are refused without one."""
    if ctx.yes or ctx.dry_run:
        return
    if not ctx.interactive:
        raise Refused(f"{what} needs confirmation: no terminal, so pass --yes")
    if confirm(question).strip().lower() not in ("y", "yes"):
        raise Refused(f"{what}: not confirmed; nothing changed")
