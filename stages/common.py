"""What every stage shares: its context, its typed result, and the up-to-date check.

A stage module has `STAGE` and `run(ctx, d[, options]) -> StageResult[Outcome]`, its `Options` (flags, checked by
stages/flags.py) and `Outcome` frozen dataclasses. A stage is idempotent: when a fingerprint of its inputs matches
what last succeeded on this machine it returns "up to date" with the outcome recorded then and makes no remote call;
`--force` runs it anyway, `--dry-run` says what it would do and reads or changes nothing remote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from infra.control import gitinfo, revisions
from infra.control.settings import Settings
from infra.control.state import StageState
from infra.perf.releases import ReleaseStore
from infra.runtime import schedule
from infra.runtime.deployment import Deployment
from infra.runtime.errors import Aborted, Refused, StageError
from infra.runtime.remote import Remote

T = TypeVar("T")
HEARTBEAT_SECONDS = 60.0  # how often long remote work says it is still going where no terminal shows progress


@dataclass
class Context:
    settings: Settings
    remote: Remote
    dry_run: bool = False
    force: bool = False
    yes: bool = False
    interactive: bool = field(default_factory=lambda: sys.stdin.isatty())
    say: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))
    repo: Path = field(default_factory=lambda: gitinfo.REPO)  # the checkout whose commit is deployed (read late)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # what time the schedule reads
    _pinned: dict[str, Deployment] = field(default_factory=dict, repr=False)

    def state(self, d: Deployment) -> StageState:
        return StageState(d.env, d.recipe.name)

    @contextlib.contextmanager
    def working(self, what: str, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
        """Long remote work: say what starts, then, where no terminal shows Modal's own progress (CI logs, a pipe),
        a line every `every` seconds with the time so far, and how long it took at the end."""
        self.say(f"{what}...")
        started, stop = time.monotonic(), threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                self.say(f"  still {what} ({(time.monotonic() - started) / 60:.0f} min so far)")

        if not sys.stderr.isatty():
            threading.Thread(target=beat, daemon=True).start()
        try:
            yield
        finally:
            stop.set()
        self.say(f"  {what}: done in {time.monotonic() - started:.0f} s")

    def pinned(self, d: Deployment) -> Deployment:
        """`d` at the commits the download stage resolved (infra/control/revisions.py), once per command: the
        stages of a flow share one answer, one Volume read and one warning."""
        key = d.to_json()
        if key not in self._pinned:
            pinned = revisions.pin(d, self.state(d), None if self.dry_run else self.remote,
                                   required=self.settings.release.require_pinned_revisions, say=self.say)
            self._pinned[key] = self._pinned[pinned.to_json()] = pinned
        return self._pinned[key]


@dataclass
class StageResult(Generic[T]):
    stage: str
    env: str
    recipe: str
    status: str  # ran | up-to-date | dry-run | unchanged
    message: str
    detail: T | None = None  # the stage's Outcome

    def to_dict(self) -> dict:
        return {"stage": self.stage, "env": self.env, "recipe": self.recipe, "status": self.status,
                "message": self.message, "detail": as_data(self.detail)}


def as_data(outcome: Any) -> Any:
    """An outcome (a model or a dataclass) as plain data; anything else as it is."""
    return (outcome.model_dump(mode="json") if isinstance(outcome, BaseModel) else
            dataclasses.asdict(outcome) if dataclasses.is_dataclass(outcome) else outcome)


def result(stage: str, d: Deployment, status: str, message: str, detail: Any = None) -> StageResult:
    return StageResult(stage, d.env, d.recipe.name, status, message, detail)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def up_to_date(ctx: Context, stage: str, d: Deployment, fp: str, outcome: type[T]) -> StageResult[T] | None:
    """The "nothing to do" result, carrying the outcome recorded then, when this stage already succeeded with these
    inputs."""
    state = ctx.state(d)
    if ctx.force or not state.is_current(stage, fp):
        return None
    try:
        detail = outcome(**state.get(stage).result)
    except (TypeError, ValueError):  # recorded by an older version of this package: run again
        return None
    return result(stage, d, "up-to-date", f"{stage}: up to date ({d.env}/{d.recipe.name})", detail)


def record(ctx: Context, stage: str, d: Deployment, fp: str, outcome: Any) -> None:
    ctx.state(d).record(stage, fp, as_data(outcome))


def remote_stage(ctx: Context, stage: str, d: Deployment, fp: str, outcome: type[T], *, would: str,
                 work: Callable[[], tuple[T, str]]) -> StageResult[T]:
    """The shape of a stage that runs one remote job: up to date, or a dry run (both touch nothing remote), or
    the credentials, then `work()` (its outcome and a line saying what it did), recorded for the next check."""
    if done := up_to_date(ctx, stage, d, fp, outcome) or dry_run(ctx, stage, d, would):
        return done
    ctx.remote.require_credentials()
    did, message = work()
    record(ctx, stage, d, fp, did)
    return result(stage, d, "ran", message, did)


def dry_run(ctx: Context, stage: str, d: Deployment, what: str) -> StageResult | None:
    if not ctx.dry_run:
        return None
    return result(stage, d, "dry-run", f"{stage} (dry run, {d.env}/{d.recipe.name}): would {what}")


def confirm_or_refuse(ctx: Context, what: str, question: str, confirm: Callable[[str], str] = input) -> None:
    """Guarded actions go ahead with --yes, ask on a terminal, and are refused without one."""
    if ctx.yes or ctx.dry_run:
        return
    if not ctx.interactive:
        raise Refused(f"{what} needs confirmation: no terminal, so pass --yes")
    try:
        answer = confirm(question)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)  # the prompt's line ends here
        raise Aborted(f"{what}: aborted; nothing changed") from None
    if answer.strip().lower() not in ("y", "yes"):
        raise Refused(f"{what}: not confirmed; nothing changed")


def apply_schedule(ctx: Context, d: Deployment) -> str | None:
    """Right after a deploy, promotion or rollback lands, put the scheduled warm floor back: Modal resets run-time
    autoscaler overrides on every deploy, so it would run on the base scaling until the next window boundary.
    Returns the line saying what was set and why, or None when `d` has no schedule."""
    if not d.scaling.schedule:
        return None
    lines: list[str] = []
    schedule.apply(ctx.clock(), d.scaling.schedule, d.scaling, lambda **floor: ctx.remote.update_autoscaler(d, **floor),
                   target=f"{d.env}/{d.recipe.name}", log=lines.append)
    ctx.say(f"schedule: {lines[0]}")
    return lines[0]


def endpoint(ctx: Context, d: Deployment, stage: str) -> str:
    """The deployed endpoint of `d`, or a StageError of `stage` saying how to get one."""
    url = ReleaseStore(ctx.remote).endpoint(d)
    if not url:
        raise StageError(stage, f"no deployed endpoint for {d.app_name} in Modal environment {d.modal.environment}: "
                                f"run `invoke deploy --env {d.env} --recipe {d.recipe.name}`")
    return url
