"""Bench reports with chosen figures, built by infra.perf.bench's own aggregation from per-request records.

For tests of what reads reports (the gate's evaluation, the ledger): the schema is
bench's real one, and no server or clock is involved, so the figures are exact.
"""

from __future__ import annotations

from infra.perf import bench


def level(concurrency: int, *, ttft: float, tpot: float, tokens: int = 10, ok: int = 10, failed: int = 0,
          kind: str = "unavailable", busy: bool = False) -> bench.Level:
    """`ok` requests of identical timing in rounds of `concurrency`, then `failed` ones of kind `kind`."""
    e2e = ttft + tpot * (tokens - 1)
    records = []
    for i in range(ok):
        start = (i // concurrency) * e2e
        records.append(bench.Record(started=start, finished=start + e2e, ttft=ttft, tpot=tpot, tokens=tokens,
                                    chunks=tokens, usage_tokens=tokens, gaps=[tpot] * (tokens - 1)))
    for _ in range(failed):
        records.append(bench.Record(started=0.0, finished=0.01, error=kind, message=f"{kind}: HTTP 503 from the fake"))
    wall_end = max((r.finished for r in records), default=1.0)
    cpu = wall_end * (0.95 if busy else 0.01)
    return bench.aggregate(concurrency, records, [], 0.0, wall_end, cpu, [0.0002] * 20, mode="requests")


def report(*levels: bench.Level, env: str = "staging", label: str | None = None,
           workload: bench.Workload | None = None) -> bench.BenchReport:
    workload = workload or bench.Workload(prompt_tokens=512, max_tokens=10, extra={"temperature": 0.0})
    return bench.BenchReport(
        label=label, created="2026-01-02T03:04:05+00:00",
        target=bench.BenchTarget(url=f"https://{env}.example.modal.run", env=env), workload=workload,
        plan=bench.Plan(concurrency=tuple(lv.concurrency for lv in levels), requests=10),
        cold_start=bench.ColdWait(ready=True, attempts=1, waited_s=0.1), levels=list(levels))
