"""Bench reports with chosen figures, built by infra.perf.bench's own aggregation from per-request records.

For tests of what reads reports (the gate's evaluation, the ledger): the schema is
bench's real one, and no server or clock is involved, so the figures are exact.
"""

from __future__ import annotations

from infra.perf import bench


def level(concurrency: int, *, ttft: float, tpot: float, tokens: int = 10, ok: int = 10, failed: int = 0,
          kind: str = "unavailable", busy: bool = False) -> dict:
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


def report(*levels: dict, env: str = "staging", label: str | None = None,
           workload: bench.Workload | None = None) -> dict:
    workload = workload or bench.Workload(prompt_tokens=512, max_tokens=10, extra={"temperature": 0.0})
    concurrency = tuple(lv["concurrency"] for lv in levels)
    return {
        "schema": bench.SCHEMA,
        "tool": "invoke bench",
        "label": label,
        "created": "2026-01-02T03:04:05+00:00",
        "target": {"url": f"https://{env}.example.modal.run", "model": None, "env": env},
        "workload": workload.to_dict(),
        "plan": bench.Plan(concurrency=concurrency, requests=10).to_dict(),
        "client": {},
        "cold_start": {"ready": True, "attempts": 1, "waited_s": 0.1, "errors": {}, "unavailable": 0},
        "levels": list(levels),
    }
