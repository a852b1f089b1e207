"""Every start's timeline: SGLang's own log turned into phases, plus the restore, the health wait and the warm-up.

`StartLog.feed` (the lifecycle's `on_line`) keeps the first time of each line with which SGLang marks a step of its
start-up (the same lines in 0.5.6.post2, 0.5.10.post1 and 0.5.11; real 0.5.11 output in tests/fixtures/sglang_logs/).
Only rank 0's (or rank-less) lines count; tqdm bars share a line with `\\r`, so each `\\r` piece is read and a
message found wherever its `[date]` prefix starts.

The phases are contiguous segments from launch to ready, each ending at a milestone (MILESTONES). One that never
shows is `missing` where expected and its time falls into the next segment; one SGLang says it skips is in `notes`.
DeepGEMM compiles (or loads) inside CUDA-graph capture, so it is reported beside the segments, per GEMM shape.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pydantic import Field

from infra.runtime.compile_cache import CacheMisses, Restore
from infra.runtime.lifecycle import Timings
from infra.runtime.model import Stored

if TYPE_CHECKING:
    from infra.runtime.deployment import Deployment

SCHEMA = 1

# Milestones of a start, in order: (name, what the segment that ends there holds).
MILESTONES: tuple[tuple[str, str], ...] = (
    ("arguments", "process start, imports, arguments parsed"),
    ("scheduler_start", "tokenizer loads, scheduler process start (silent imports)"),
    ("weights", "torch distributed init, model weights loaded"),
    ("kv_cache", "KV cache allocated"),
    ("cuda_graphs", "CUDA graphs captured (DeepGEMM kernels loaded or JIT-compiled inside)"),
    ("piecewise_graphs", "piecewise CUDA graphs compiled (torch.compile) and captured"),
    ("draft_model", "drafter loaded: tokenizer, weights, KV cache"),
    ("draft_graphs", "drafter CUDA graphs captured"),
    ("draft_extend_graphs", "drafter extend CUDA graphs captured"),
    ("http_server", "HTTP server up"),
    ("fired_up", "SGLang's own warm-up request (none with --skip-server-warmup)"),
    ("healthy", "first healthy answer to the lifecycle's /health"),
)
WARMUP = "warmup"  # then one segment per warm-up request: warmup_1, warmup_2, ...

_PREFIX = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)((?: [A-Z_]+\d+)*)\] ")
_RANK = re.compile(r"[A-Z_]+?(\d+)")
# message patterns -> event name (rank 0's, first occurrence kept; weights and KV cache also the second: the drafter's)
_EVENTS: tuple[tuple[str, re.Pattern], ...] = (
    ("arguments", re.compile(r"server_args=ServerArgs\(")),
    ("distributed", re.compile(r"Init torch distributed begin")),
    ("weights_begin", re.compile(r"Load weight begin")),
    ("weights_end", re.compile(r"Load weight end\. elapsed=([\d.]+) s(?:, type=(\w+))?")),
    ("kv_cache", re.compile(r"KV Cache is allocated")),
    ("graphs_begin", re.compile(r"Capture cuda graph begin")),
    ("graphs_end", re.compile(r"Capture cuda graph end\. Time elapsed: ([\d.]+) s")),
    ("piecewise_begin", re.compile(r"Capture piecewise CUDA graph begin")),
    ("piecewise_end", re.compile(r"Capture piecewise CUDA graph end\. Time elapsed: ([\d.]+) s")),
    ("piecewise_disabled", re.compile(r"Disable piecewise CUDA graph because (.+)")),
    ("draft_graphs_begin", re.compile(r"Capture draft cuda graph begin")),
    ("draft_graphs_end", re.compile(r"Capture draft cuda graph end")),
    ("draft_extend_begin", re.compile(r"Capture draft extend cuda graph begin")),
    ("draft_extend_end", re.compile(r"Capture draft extend cuda graph end")),
    ("deep_gemm_shape", re.compile(r"Try DeepGEMM JIT Compiling for <(\w+)> N=(\d+), K=(\d+), num_groups=(\d+)")),
    ("http_server", re.compile(r"INFO:\s+(?:Uvicorn running on|Application startup complete)")),
    ("fired_up", re.compile(r"The server is fired up and ready to roll!")),
)
# Milestone -> the event whose first showing ends it (the others are derived in `_milestones`).
_FIRST_OF = {"arguments": "arguments", "scheduler_start": "distributed", "weights": "weights_end",
             "kv_cache": "kv_cache", "cuda_graphs": "graphs_end", "piecewise_graphs": "piecewise_end",
             "draft_graphs": "draft_graphs_end", "fired_up": "fired_up"}
_KEEP_ALL = {"weights_begin", "weights_end", "kv_cache", "draft_extend_end", "deep_gemm_shape"}
# Lines without a prefix: a progress bar that finished, and `python -m sglang.compile_deep_gemm`'s own prints.
_DEEP_GEMM_DONE = re.compile(r"DeepGEMM warmup: 100%\|")
_BARE: tuple[tuple[str, re.Pattern], ...] = (
    ("deep_gemm_compile_begin", re.compile(r"^Begin DeepGEMM Kernels compilation")),
    ("deep_gemm_compile_end", re.compile(r"^DeepGEMM Kernels compilation finished successfully")),
    ("fired_up", re.compile(r"^The server is fired up and ready to roll!")),  # as some stand-ins print it
)


class StartLog:
    """SGLang's start-up from its output (`feed`: thread-safe, never raises), in seconds since `t0`, the launch;
    `also` sees every line after it (its own errors are its own)."""

    def __init__(self, t0: float | None = None, also: Callable[[float, str], None] | None = None):
        self.t0 = time.monotonic() if t0 is None else t0
        self.also = also
        self.events: dict[str, list[tuple[float, tuple]]] = {}
        self.deep_gemm_done: list[float] = []
        self.lines = 0
        self.unreadable = 0  # lines the parser itself failed on: counted, never raised
        self._lock = threading.Lock()

    def feed(self, t: float, line: str) -> None:
        try:
            with self._lock:
                self.lines += 1
                self._feed(round(t - self.t0, 3), line)
        except Exception:  # noqa: BLE001 - a start must never fail because of its own bookkeeping
            self.unreadable += 1
        if self.also:
            self.also(t, line)

    def _feed(self, s: float, line: str) -> None:
        for piece in line.split("\r"):
            if _DEEP_GEMM_DONE.search(piece):
                self.deep_gemm_done.append(s)
            stripped = piece.strip()
            for name, pattern in _BARE:
                if pattern.search(stripped):
                    self._add(name, s, ())
            for match in _PREFIX.finditer(piece):
                ranks = [int(r) for r in _RANK.findall(match.group(2))]
                if any(ranks):
                    continue  # another rank's copy of what rank 0 says
                message = piece[match.end():]
                nxt = _PREFIX.search(message)
                message = message[: nxt.start()] if nxt else message
                for name, pattern in _EVENTS:
                    if found := pattern.match(message):
                        self._add(name, s, found.groups())
                        break

    def _add(self, name: str, s: float, groups: tuple) -> None:
        seen = self.events.setdefault(name, [])
        if not seen or name in _KEEP_ALL:
            seen.append((s, groups))

    # ---------------------------------------------------------------- reading it back

    def seen(self, name: str) -> list[tuple[float, tuple]]:
        """(seconds since launch, the pattern's groups) of each time the event showed."""
        return self.events.get(name, [])

    def first(self, name: str, i: int = 0) -> float | None:
        seen = self.seen(name)
        return seen[i][0] if len(seen) > i else None

    def last(self, name: str) -> float | None:
        return seen[-1][0] if (seen := self.seen(name)) else None

    def milestones(self, timings: Timings | None = None) -> dict[str, float]:
        """Milestone -> seconds since launch, for those that showed (the lifecycle's timings add `healthy`)."""
        with self._lock:
            draft = self.first("draft_graphs_begin")
            up = [x for x in (self.first("http_server"), self.first("fired_up")) if x is not None]
            out = {name: self.first(event) for name, event in _FIRST_OF.items()} | {
                # The drafter is the second model SGLang loads (EAGLE-3's draft model, or the MTP layer).
                "draft_model": draft if draft is not None else self.first("kv_cache", 1),
                "draft_extend_graphs": self.last("draft_extend_end"),
                "http_server": min(up) if up else None,  # with --skip-server-warmup "fired up" may come first
                "healthy": (timings or Timings()).healthy_s}
            return {k: v for k, v in out.items() if v is not None}

    def notes(self) -> dict[str, str]:
        with self._lock:
            seen = self.seen("piecewise_disabled")
            return {"piecewise_graphs": f"not captured: {seen[0][1][0].strip()}"} if seen else {}

    def deep_gemm(self) -> DeepGemm | None:
        """DeepGEMM's kernels, per GEMM shape: JIT-compiled (minutes each) or loaded from the cache (about a second)."""
        with self._lock:
            shapes = self.seen("deep_gemm_shape")
            if not shapes:
                return None
            out = []
            for i, (begin, (kernel, n, k, groups)) in enumerate(shapes):
                nxt = shapes[i + 1][0] if i + 1 < len(shapes) else None
                done = next((d for d in self.deep_gemm_done if d >= begin and (nxt is None or d <= nxt)), None)
                end = done if done is not None else nxt
                out.append(GemmShape(kernel=kernel, n=int(n), k=int(k), groups=int(groups),
                                     seconds=None if end is None else round(end - begin, 3)))
            ends = [d for d in self.deep_gemm_done if d >= shapes[0][0]]
            end = ends[-1] if ends else shapes[-1][0]
            return DeepGemm(start_s=shapes[0][0], end_s=end, seconds=round(end - shapes[0][0], 3), shapes=out)

    def weights(self) -> list[WeightsLoad]:
        with self._lock:
            return [WeightsLoad(at_s=s, elapsed_s=float(g[0]), type=g[1])
                    for s, g in self.seen("weights_end")]


# ---------------------------------------------------------------------------- the record of one start


class Phase(Stored):
    phase: str
    end_s: float  # seconds since launch
    seconds: float


class GemmShape(Stored):
    kernel: str
    n: int
    k: int
    groups: int
    seconds: float | None


class DeepGemm(Stored):
    start_s: float
    end_s: float
    seconds: float
    shapes: list[GemmShape]


class WeightsLoad(Stored):
    at_s: float
    elapsed_s: float
    type: str | None = None


class StartRecord(Stored):
    """One server container's start, as it writes it to the `sglang-starts` Dict and `invoke status` reads it."""

    schema_version: int = Field(default=SCHEMA, alias="schema")
    kind: str = "start"  # start | snapshot_boot | snapshot_restore
    env: str | None = None
    recipe: str | None = None
    deployment_digest: str | None = None
    sglang_version: str | None = None
    gpu: str | None = None
    container: str | None = None
    region: str | None = None
    started_at: float = 0.0
    outcome: str = "?"  # ready | failed | refused
    error: str | None = None
    before_launch_s: float | None = None
    restore: Restore = Field(default_factory=Restore)
    launch_to_ready_s: float | None = None
    total_s: float | None = None
    reached_s: float | None = None
    phases: list[Phase] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    notes: dict[str, str] = Field(default_factory=dict)
    deep_gemm: DeepGemm | None = None
    weights: list[WeightsLoad] = Field(default_factory=list)
    warmup_s: list[float] = Field(default_factory=list)
    flaps: int = 0
    misses: dict[str, CacheMisses] = Field(default_factory=dict)
    log_lines: int = 0

    def phase_seconds(self) -> dict[str, float]:
        return {p.phase: p.seconds for p in self.phases}


class StartSummary(Stored):
    """Cold starts of one release: how many, how long (median and worst container start to ready), and misses;
    frozen into its manifest entry (`Release.cold_starts`, with `frozen_at`) when the next release replaces it."""

    starts: int = 0
    ready: int = 0
    failed: int = 0
    refused: int = 0
    median_s: float | None = None
    worst_s: float | None = None
    with_misses: int = 0
    first_at: float | None = None
    last_at: float | None = None
    frozen_at: float | None = Field(default=None, exclude_if=lambda v: v is None)


def segments(milestones: dict[str, float], warmup_s: Iterable[float] = (), ready_s: float | None = None) -> list[Phase]:
    """Contiguous phases from launch (0) to ready: each observed milestone ends one; then each warm-up request."""
    out, at = [], 0.0
    for name, _ in MILESTONES:
        if name not in milestones:
            continue
        end = max(milestones[name], at)  # a milestone logged out of order (uvicorn after "fired up") is a 0 s phase
        out.append(Phase(phase=name, end_s=round(end, 3), seconds=round(end - at, 3)))
        at = end
    warmups = list(warmup_s)
    if ready_s is not None and warmups:
        # The warm-up requests ran back to back and ended at ready; flaps are in the first one's share.
        start = max(ready_s - sum(warmups), at)
        if start > at + 1e-3:
            out.append(Phase(phase="warmup_wait", end_s=round(start, 3), seconds=round(start - at, 3)))
        for i, seconds in enumerate(warmups, 1):
            end = ready_s if i == len(warmups) else start + seconds
            out.append(Phase(phase=f"{WARMUP}_{i}", end_s=round(end, 3), seconds=round(end - start, 3)))
            start = end
    return out


def expected(speculative: bool, argv: Iterable[str] = ()) -> set[str]:
    """The milestones a start of this deployment must show (piecewise graphs are SGLang's to decide, per version)."""
    graphs = "--disable-cuda-graph" not in set(argv)
    return ({"arguments", "scheduler_start", "weights", "kv_cache", "http_server", "fired_up", "healthy"}
            | ({"cuda_graphs"} if graphs else set()) | ({"draft_model"} if speculative else set())
            | ({"draft_graphs", "draft_extend_graphs"} if speculative and graphs else set()))


def deployment_digest(deployment: dict) -> str:
    """What a start record and a release manifest both know of the deployment (`Deployment.to_dict()`), hashed."""
    return hashlib.sha256(json.dumps(deployment, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_record(*, deployment: Deployment, log: StartLog | None, timings: Timings | None, started_at: float,
                 before_launch_s: float | None, restore: Restore | None, misses: dict[str, CacheMisses] | None,
                 outcome: str, expect: set[str] = frozenset(), error: str | None = None, kind: str = "start",
                 environ: dict[str, str] | None = None) -> StartRecord:
    """One start's record."""
    environ = environ or {}
    r = deployment.recipe
    timings = timings or Timings()
    milestones = log.milestones(timings) if log else {}
    ready = timings.ready_s
    phases = segments(milestones, timings.warmup_s, ready)
    return StartRecord(
        kind=kind, env=deployment.env, recipe=r.name, deployment_digest=deployment_digest(deployment.to_dict()),
        sglang_version=r.sglang_version, gpu=f"{r.gpu_type}:{r.gpu_count}", started_at=round(started_at, 3),
        container=environ.get("MODAL_TASK_ID"), region=environ.get("MODAL_REGION"), outcome=outcome,
        error=_shorten(error) if error else None,
        before_launch_s=None if before_launch_s is None else round(before_launch_s, 3),
        restore=restore or Restore(), launch_to_ready_s=ready,
        total_s=None if ready is None or before_launch_s is None else round(before_launch_s + ready, 3),
        reached_s=phases[-1].end_s if ready is None and phases else ready,  # failed or refused: how far it got
        phases=phases, missing=sorted(expect - set(milestones)) if outcome != "failed" else [],
        notes=log.notes() if log else {}, deep_gemm=log.deep_gemm() if log else None,
        weights=log.weights() if log else [], warmup_s=timings.warmup_s,
        flaps=timings.flaps, misses=misses or {}, log_lines=log.lines if log else 0)


def _shorten(text: str, keep: int = 400) -> str:
    """An error's head (what failed) and tail (SGLang's last words), within a record's size."""
    return text if len(text) <= 2 * keep else f"{text[:keep]} [...] {text[-keep:]}"


# ---------------------------------------------------------------------------- reading records back


def summarise(records: Iterable[StartRecord]) -> StartSummary:
    """Cold starts of one release: how many, how long (median and worst container start to ready), and misses."""
    records = list(records)
    ready = [r for r in records if r.outcome == "ready" and r.total_s is not None]
    totals = sorted(r.total_s for r in ready)
    return StartSummary(
        starts=len(records), ready=len(ready), failed=sum(r.outcome == "failed" for r in records),
        refused=sum(r.outcome == "refused" for r in records),
        median_s=round(statistics.median(totals), 1) if totals else None,
        worst_s=round(totals[-1], 1) if totals else None, with_misses=sum(bool(r.misses) for r in records),
        first_at=min((r.started_at for r in records), default=None),
        last_at=max((r.started_at for r in records), default=None))


def describe(record: StartRecord) -> str:
    """One line per start: when, outcome, total, the phases that took a second or more, misses."""
    head = f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(record.started_at))} {record.outcome}"
    if record.total_s is not None:
        head += f" in {record.total_s:.1f} s"
    elif record.reached_s is not None:
        head += f" after {record.reached_s:.1f} s"
    restore = record.restore
    tried = restore.model_dump(exclude_none=True)
    parts = [f"restore {restore.seconds:.1f}" if restore.restored and restore.seconds is not None
             else "no compile cache" if tried else None]
    parts += [f"{p.phase} {p.seconds:.1f}" for p in record.phases if p.seconds >= 1.0]
    if dg := record.deep_gemm:
        parts.append(f"DeepGEMM {dg.seconds:.1f} for {len(dg.shapes)} shapes")
    line = f"{head} ({', '.join(p for p in parts if p)})"
    if record.missing:
        line += f"; missing: {', '.join(record.missing)}"
    if record.misses:
        line += "; CACHE MISSES: " + ", ".join(f"{name} {m.files} files" for name, m in sorted(record.misses.items()))
    if record.error:
        line += f"; error: {record.error.splitlines()[-1][:160] if record.error.strip() else ''}"
    return line
