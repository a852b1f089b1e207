"""The release ledger (infra/perf/ledger.py): a release's measurement summarised and priced, the ledger table of
`invoke status`, and `invoke bench --compare` of two recorded releases, on manifest entries shaped as
infra/releases.Release writes them."""

from __future__ import annotations

import json
import re

import pytest

from infra.control import costs
from infra.perf import bench, ledger, releases
from infra.perf.gate import GateRecord, skip_override
from infra.perf.releases import Manifest, Origin
from infra.perf.smoketest import SmokeResult
from infra.runtime.errors import ConfigError
from infra.runtime.timeline import StartSummary
from tests.conftest import REPO
from tests.fakes import bench_reports, records

MANIFESTS = REPO / "tests" / "fixtures" / "manifests"


def measured(ttft: float, tpot: float, *, target: int = 4, env: str = "staging", failed: int = 0,
             **workload) -> bench.BenchReport:
    w = bench.Workload(prompt_tokens=512, max_tokens=10, extra={"temperature": 0.0}, **workload)
    return bench_reports.report(bench_reports.level(1, ttft=ttft, tpot=tpot),
                                bench_reports.level(target, ttft=ttft, tpot=tpot, failed=failed), env=env, workload=w)


# prod's deployment of the 8B recipe, requesting 4 cores and 16 GiB, its drafter pinned.
_prod = records.deployment("prod", cpu=4.0, memory=16384)
PROD = _prod.with_recipe(_prod.recipe.with_revisions(draft_revision="c" * 40))
TABLE = costs.Rates(costs.TABLE, costs.TABLE_SOURCE)
REPLICA = (2 * 3.9492 + 4 * 0.04716 + 16 * 0.007992) * 1.75  # PROD's server per hour at the table, in us-east


def passed(measurement: bench.BenchReport) -> GateRecord:
    return GateRecord(verdict="passed", measurement=measurement)


def release(version: int, *, kind: str = "promote", **fields) -> releases.Release:
    """A manifest entry as a deploy or promotion records it."""
    origin = Origin(env="staging", release_id="r0", commit="x", version=1) if kind == "promote" else None
    return records.release(version, kind=kind, d=PROD, smoke=SmokeResult(passed=True, ttft=0.2, total=1.0, at=0),
                           promoted_from=origin, **fields)


def flat_layout_release() -> releases.Release:
    """An entry of the first manifest layout (a flat deployment; recipes made no CPU or memory request), as that version
    wrote it: tests/fixtures/manifests/v1_flat_deployment.json."""
    return Manifest.from_json((MANIFESTS / "v1_flat_deployment.json").read_text()).current


def test_cost_per_million_output_tokens_is_a_replicas_hourly_cost_over_tokens_per_hour():
    # A replica at $7.90/h; 1000 tok/s = 3.6 M tok/h: $2.19 per million.
    assert ledger.cost_per_million_output_tokens(1000, hourly_usd=7.9) == pytest.approx(7.9 / 3.6)
    assert ledger.cost_per_million_output_tokens(2000, hourly_usd=7.9) == pytest.approx(7.9 / 7.2)
    assert ledger.cost_per_million_output_tokens(None, hourly_usd=7.9) is None
    assert ledger.cost_per_million_output_tokens(0, hourly_usd=7.9) is None


def test_performance_summarises_a_measurement_at_1_and_the_target_and_prices_it():
    # 10 tokens in 0.19 s per request; 10 requests at 4 streams take 3 rounds: 100 tokens / 0.57 s = 175.4 tok/s.
    m = measured(0.1, 0.01, target=4, failed=1)
    # What Modal bills one of its containers for: the GPUs, the CPU and memory requests, the region, in either layout.
    assert ledger.container_of(release(3)) == costs.Container("H100!", 2, 4.0, 16384, "us-east")
    assert ledger.container_of(flat_layout_release()) == costs.Container("H100!", 2, 0.125, 128, "us-east")
    perf = ledger.performance(m, target_concurrency=4, hourly=costs.price(ledger.container_of(release(3)), TABLE))
    assert perf.output_tokens_per_s == pytest.approx(100 / 0.57)
    assert perf.usd_per_million_output_tokens == pytest.approx(REPLICA / (100 / 0.57 * 3600) * 1e6)
    assert perf.value("ttft_p90_ms", 1) == pytest.approx(100) and perf.value("tpot_p50_ms", 4) == pytest.approx(10)
    assert perf.value("error_rate", 4) == pytest.approx(1 / 11)
    assert perf.measured_on == "on staging"
    assert perf.line() == ("TTFT p90 100.0 ms @1 / 100.0 ms @4; TPOT p50 10.00 ms @1 / 10.00 ms @4; 175.4 tok/s @4; "
                           "errors 1/21; $22.76 per 1M output tokens (2×H100! + 4 cores + 16 GiB at $14.38/h) [on "
                           "staging]")
    data = perf.to_dict()
    assert data["usd_per_million_output_tokens"] == pytest.approx(REPLICA / (100 / 0.57 * 3600) * 1e6, abs=1e-4)
    assert data["usd_per_replica_hour"] == pytest.approx(REPLICA, abs=1e-4)
    assert data["replica"]["region"]["multiplier"] == 1.75
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 4] and data["levels"][1]["sent"] == 11
    assert json.loads(json.dumps(data)) == data

    # A negotiated GPU rate lowers the cost by the GPUs' share; no throughput at the target leaves it unknown.
    negotiated = costs.Rates(costs.TABLE, costs.TABLE_SOURCE, {"H100": (3.9492 / 2, "costs.gpu_hourly_usd.H100!")})
    cheaper = ledger.performance(m, target_concurrency=4,
                                 hourly=costs.price(ledger.container_of(release(3)), negotiated))
    assert cheaper.usd_per_million_output_tokens == pytest.approx((REPLICA - 1.75 * 3.9492) / (100 / 0.57 * 3600) * 1e6)
    missing = ledger.performance(m, target_concurrency=16, hourly=costs.price(ledger.container_of(release(3)), TABLE))
    assert missing.usd_per_million_output_tokens is None
    assert "cost unknown (2×H100! + 4 cores + 16 GiB at $14.38/h, no throughput)" in missing.line()


def test_the_ledger_prefers_a_measurement_on_the_releases_own_environment():
    by_gate, on_prod = measured(0.1, 0.01), measured(0.12, 0.01, env="prod")
    assert ledger.measurement_of(release(3, gate=passed(by_gate))) == (by_gate, "gate on staging")
    assert ledger.measurement_of(release(3, gate=passed(by_gate), measurement=on_prod)) == (on_prod, "on prod")
    assert ledger.measurement_of(release(3)) is None
    assert ledger.measurement_of(flat_layout_release()) is None  # recorded before releases were measured


def test_compact_drops_per_request_records_only():
    m = measured(0.1, 0.01).model_copy(update={"path": "a.json"})
    assert all(lv.records for lv in m.levels)
    small = m.compact().to_data()
    assert all("records" not in lv for lv in small["levels"]) and small["levels"][0] == {
        k: v for k, v in m.to_data()["levels"][0].items() if k != "records"}
    assert all(lv.records for lv in m.levels) and m.path == "a.json"  # the original is untouched


def test_the_ledger_table_shows_origin_revisions_smoke_latency_throughput_and_cost():
    skipped = GateRecord(verdict="skipped", override=skip_override("hotfix", environ={}, now=0))
    rows = [
        (release(3, gate=passed(measured(0.1, 0.01, target=10))), None),
        (release(2, gate=skipped), None),
        (release(1, kind="deploy"), None),
    ]
    rows[0] = (rows[0][0], ledger.priced(rows[0][0], TABLE))
    # Cold starts: the live summary of the current release's recorded starts; a replaced one's kept in its entry.
    frozen = StartSummary(starts=4, ready=3, median_s=94.7, worst_s=127.5, frozen_at=1.0)
    rows[2] = (rows[2][0].model_copy(update={"cold_starts": frozen}), None)
    live = {rows[0][0].release_id: StartSummary(starts=2, ready=2, median_s=66.0, worst_s=70.25)}
    table = ledger.render_table(rows, cold_starts=live).splitlines()
    assert table[0].split()[:4] == ["release", "v", "how", "when"]
    first, second, third = (re.split(r"\s{2,}", line.strip()) for line in table[2:])
    assert first == ["r20260103-120000-abcde3", "v3", "promote from staging, gate passed", "2026-01-01 15:00", "3" * 12,
                     "v0.5.6.post2-cu129-amd64-runtime", "220b46e3", "cccccccc", "passed", "66.0/70.2 (2)",
                     "100.0/100.0", "10.00/10.00", "526.3", "0/20", "$7.59", "gate on staging"]
    assert second[2] == "promote from staging, gate skipped" and second[-7:] == ["-"] * 6 + ["not measured"]
    assert third[2] == "deploy" and third[9] == "94.7/127.5 (3)"

    entry = ledger.entry(rows[1][0], None)
    assert entry["gate"] == "skipped" and entry["gate_override"]["reason"] == "hotfix"
    assert entry["how"] == "promote from staging, gate skipped" and entry["smoke_passed"] is True
    assert ledger.entry(rows[0][0], rows[0][1])["performance"]["usd_per_million_output_tokens"] == pytest.approx(
        REPLICA / (100 / 0.19 * 3600) * 1e6, abs=1e-4)
    rollback = release(4, kind="rollback", rolled_back_to=2)
    assert ledger.how(rollback) == "rollback to v2"


def test_release_ids_are_told_apart_from_file_names():
    assert ledger.is_release_id(releases.new_release_id())  # the format new_release_id writes
    assert ledger.is_release_id("r20260101-120000-abcdef")
    assert not ledger.is_release_id("a.json") and not ledger.is_release_id("r2026.json")


def test_two_recorded_releases_compare_like_two_bench_files():
    a = release(2, gate=passed(measured(0.1, 0.01)))
    b = release(3, gate=passed(measured(0.2, 0.005)))
    history = [b, a, release(1, kind="deploy")]
    found_a = ledger.find_release(history, a.release_id, "prod manifest")
    found_b = ledger.find_release(history, b.release_id, "prod manifest")
    comparison = ledger.compare_reports(ledger.labelled(found_a), ledger.labelled(found_b)).to_data()
    assert comparison["a"] == "r20260102-120000-abcde2 (prod v2, gate on staging)"
    assert comparison["b"] == "r20260103-120000-abcde3 (prod v3, gate on staging)"
    rows = {(r["concurrency"], r["metric"]): r for r in comparison["rows"]}
    assert rows[(1, "TTFT p50 ms")]["ratio"] == pytest.approx(2.0) and rows[(1, "TTFT p50 ms")]["verdict"] == "worse"
    assert rows[(4, "TPOT p50 ms")]["ratio"] == pytest.approx(0.5) and rows[(4, "TPOT p50 ms")]["verdict"] == "better"
    assert comparison["warnings"] == []
    text = ledger.render_comparison(bench.Comparison.read(comparison))
    assert text.splitlines()[:2] == [f"A = {comparison['a']}", f"B = {comparison['b']}"]

    # The stored measurement survives the manifest's JSON round trip and compares the same.
    again = ledger.compare_reports(ledger.labelled(releases.Release.read_json(json.dumps(found_a.to_data()))),
                                   ledger.labelled(b))
    assert again.to_data()["rows"] == comparison["rows"]


def test_comparing_unlike_measurements_warns():
    a = release(2, gate=passed(measured(0.1, 0.01)))
    b = release(3, measurement=measured(0.1, 0.01, env="prod", image="data:image/png;base64,AAAA"))
    comparison = ledger.compare_reports(ledger.labelled(a), ledger.labelled(b))
    assert comparison.warnings[0].startswith("the two were measured with different workloads (image None vs "
                                             "'image/png;base64, 4 characters")
    assert comparison.warnings[1] == "A was measured on staging, B on prod: endpoints differ too"
    assert "warning: A was measured on staging" in ledger.render_comparison(comparison)


def test_unknown_or_unmeasured_releases_are_one_line_errors():
    history = [release(v, kind="deploy") for v in range(7, 0, -1)]
    with pytest.raises(ConfigError, match=r"^--compare: no release 'r20260109-120000-abcdef' in the prod manifest; "
                                          r"recorded "
                                          r"there \(newest first\): r20260107-120000-abcde7, .*, "
                                          r"r20260103-120000-abcde3, \.\.\.$"):
        ledger.find_release(history, "r20260109-120000-abcdef", "prod manifest")
    with pytest.raises(ConfigError, match=r"^--compare: release r20260107-120000-abcde7 has no recorded measurement"):
        ledger.compare_reports(ledger.labelled(history[0]), ledger.labelled(history[1]))
    with pytest.raises(ConfigError, match="recorded there .*: none$"):
        ledger.find_release([], "r20260109-120000-abcdef", "prod manifest")
