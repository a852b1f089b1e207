"""The bake after a promotion: how it probes, when it rolls back, and the verdict the release keeps.

After prod's smoke test, `invoke promote` keeps sending the gate workload to prod, one request at a time, for
`[release] bake_minutes` (infra/perf/bake.py runs it). The stated policy:

- one request every PROBE_INTERVAL_S seconds: enough for a p90 per minute, one stream of a replica that serves
  `target_concurrency`, so the users beside it do not notice;
- the objectives of one stream (the gate's at level 1, and the error rate) are judged over windows of WINDOW_S
  that move by their own length, so no request counts twice and one slow request cannot breach two windows;
- BREACH_WINDOWS breaching windows in a row roll prod back; a window with fewer than MIN_ANSWERS answers is too
  thin for a p90 and is shown, not judged (its errors still count).

The verdict is a `Bake` on the promoted release (`Release.bake`). Constants, not settings: changing how a bake
judges is a code review.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from infra.runtime.errors import ConfigError

PROBE_INTERVAL_S = 10.0
WINDOW_S = 60.0
BREACH_WINDOWS = 3
MIN_ANSWERS = 3
MAX_REASON = 500  # characters of a bake_off_reason kept in the manifest
# The CI job that runs a promotion, and is killed at its `timeout-minutes`: a bake must end before it.
PROMOTE_WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "promote-prod.yml"
# What else the job does in the same limit besides the bake and its cold-start wait: checkout and install (~2 min),
# the gate's two levels of 100 requests (~3 min), a deploy (~2 min): stated, not measured per run.
JOB_OVERHEAD_MINUTES = 10

KEPT, ROLLED_BACK, INTERRUPTED, OFF = "kept", "rolled back", "interrupted", "off"
BREACHED = "breached"  # a sustained breach with no release before it to return to: it stays, the promotion fails
Verdict = Literal["kept", "rolled back", "breached", "interrupted", "off"]


class _BakeRecord(BaseModel):
    # Read tolerantly (a newer version's keys are ignored by Manifest.from_json), written strictly.
    model_config = ConfigDict(extra="forbid")


class BakeObjective(_BakeRecord):
    """One objective the bake judged: a limit on a metric of one stream (level 1)."""

    metric: str
    direction: Literal["max", "min"]
    limit: float


class BakeWindow(_BakeRecord):
    """One window of probes and what it measured; `breaches` names each objective it missed ("ttft_p90_ms 612.0 ms
    > 500.0 ms"). `judged` is false for a window with too few answers for a percentile (its errors still count)."""

    start_s: float  # seconds since the bake's first probe
    end_s: float
    sent: int
    ok: int
    failed: int
    values: dict[str, float | None] = Field(default_factory=dict)  # metric -> value, in the metric's unit
    breaches: list[str] = Field(default_factory=list)
    judged: bool = True


class BakeOff(_BakeRecord):
    """Who turned the bake off for a promotion (`bake_minutes = 0` where the bake is on), from where, and why."""

    reason: str
    by: str
    at: float
    github_actor: str | None = None
    github_workflow: str | None = None
    github_run_id: str | None = None
    github_run_url: str | None = None


class Bake(_BakeRecord):
    """The bake's verdict on a promoted release: what `invoke status` shows and the ledger keeps."""

    verdict: Verdict
    # why it was rolled back or interrupted ("ttft_p90_ms 612.0 ms > 500.0 ms over 3 windows")
    reason: str | None = None
    minutes: float = 0
    interval_s: float = PROBE_INTERVAL_S
    window_s: float = WINDOW_S
    breach_windows: int = BREACH_WINDOWS
    objectives: list[BakeObjective] = Field(default_factory=list)
    started_at: float = Field(default_factory=time.time)
    ended_at: float | None = None
    cold_start_s: float | None = None  # how long the first answer took (not judged)
    windows: list[BakeWindow] = Field(default_factory=list)
    rolled_back_to: int | None = None  # the version prod returned to
    off: BakeOff | None = None

    def line(self) -> str:
        """One line for `invoke status` and the ledger."""
        if self.verdict == OFF:
            who = f" by {self.off.by}: {self.off.reason}" if self.off else ""
            return f"bake off{who}"
        judged = sum(w.judged for w in self.windows)
        span = f"{self.minutes:g} min, {len(self.windows)} window(s), {judged} judged"
        if self.verdict == KEPT:
            return f"bake kept ({span})"
        if self.verdict == ROLLED_BACK:
            return f"rolled back by bake: {self.reason}"
        if self.verdict == BREACHED:
            return f"breached in bake (no release before it to roll back to): {self.reason}"
        return f"bake interrupted ({span}): {self.reason}"


# ---------------------------------------------------------------- the checks before a promotion


def job_limit_minutes(workflow: Path = PROMOTE_WORKFLOW) -> int | None:
    """The promote job's `timeout-minutes` (one job in that workflow); None where this checkout has no workflow."""
    try:
        found = re.search(r"^\s+timeout-minutes:\s*(\d+)\s*$", workflow.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def check_minutes(env: str, minutes: float, cold_start_s: float, *, workflow: Path = PROMOTE_WORKFLOW) -> None:
    """A bake (plus its cold-start wait and the job's other steps) that the CI job would kill halfway is refused."""
    limit = job_limit_minutes(workflow)
    if limit is None or minutes <= 0:
        return
    allowed = limit - JOB_OVERHEAD_MINUTES - cold_start_s / 60
    if minutes > allowed:
        raise ConfigError(f"release.bake_minutes = {minutes:g} in {env}: the bake would outlast the promotion job "
                          f"({workflow.name} timeout-minutes = {limit}, less {cold_start_s / 60:.0f} min of cold-start "
                          f"wait and {JOB_OVERHEAD_MINUTES} min for the job's other steps); allowed: 0 to "
                          f"{max(allowed, 0):.0f}, or raise timeout-minutes in the workflow")


def off_reason(env: str, minutes: float, reason: str | None) -> str | None:
    """In an environment that takes promotions, a bake of 0 minutes needs a reason (recorded with who ran the
    promotion): returned clean. None where the bake runs."""
    if minutes > 0:  # a reason is read only when the bake is off
        return None
    text = " ".join((reason or "").split())
    if not text:
        raise ConfigError(f"release.bake_minutes = 0 turns off the bake after promotions into {env}; allowed: a "
                          'reason with it, recorded with who ran it: --set release.bake_off_reason="<why>"')
    if len(text) > MAX_REASON:
        raise ConfigError(f"release.bake_off_reason is {len(text)} characters; allowed: up to {MAX_REASON} "
                          "(link to an issue for more)")
    return text
