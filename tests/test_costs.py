"""The cost model (infra/control/costs.py): Modal's bill per container, the rates and where they come from, the
region multiplier, the period of a bill, and the bill itself per release (infra/perf/ledger.py `bill`), offline.

The same paths through the real `modal` client and the fake control plane: tests/test_costs_wire.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from infra.control import costs, plan
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf import ledger
from infra.perf.gate import GateRecord
from infra.perf.releases import Release
from infra.runtime import catalog, spec
from infra.runtime.errors import ConfigError
from tests.fakes import bench_reports

TABLE = costs.Rates(costs.TABLE, costs.TABLE_SOURCE)
H100, CPU, MEMORY = 0.001097 * 3600, 0.0000131 * 3600, 0.00000222 * 3600  # the table's hourly rates
NOW = datetime(2026, 11, 30, 12, 20, tzinfo=UTC)


def hourly(gpu: str | None, count: int, cpu: float, memory_mib: int, region: str | None, rates=TABLE) -> costs.Price:
    return costs.price(costs.Container(gpu, count, cpu, memory_mib, region), rates)


# ---------------------------------------------------------------------------- the model


def test_modals_own_worked_example_of_the_region_multiplier():
    """modal.com/docs/guide/region-selection (read 2026-12-01): "a Function or Sandbox container that uses 1 T4, 1 CPU
    core, and 1GB memory. You've specified that it should run in us-west. The cost to run it for 1 hour would be
    ((T4 hourly cost) + (CPU hourly cost for one core) + (Memory hourly cost for one GB)) * 1.75"."""
    t4 = 0.000164 * 3600
    example = hourly("T4", 1, 1.0, 1024, "us-west")
    assert example.usd == pytest.approx((t4 + CPU + MEMORY) * 1.75)
    assert [(p.resource, p.quantity, p.unit) for p in example.parts] == [("T4", 1, "GPU"), ("cpu", 1.0, "core"),
                                                                          ("memory", 1.0, "GiB")]
    assert (example.region.kind, example.region.multiplier) == ("narrow", 1.75)
    # The same container in a broad region, and placed anywhere.
    assert hourly("T4", 1, 1.0, 1024, "us").usd == pytest.approx((t4 + CPU + MEMORY) * 1.5)
    assert hourly("T4", 1, 1.0, 1024, None).usd == pytest.approx(t4 + CPU + MEMORY)
    assert example.describe() == "(1×T4 $0.59 + 1 cores $0.05 + 1 GiB $0.01) × 1.75 (narrow region us-west) = $1.13/h"


@pytest.mark.parametrize("region", sorted(catalog.COMPUTE_REGIONS))
def test_every_compute_region_has_its_multiplier(region):
    """Broad regions are Modal's one-word names (us, eu, ...), narrow ones name a part of them (us-east, ...)."""
    kind = catalog.region_kind(region)
    assert kind == ("narrow" if "-" in region else "broad")
    assert costs.REGION_MULTIPLIERS[kind] == {"broad": 1.5, "narrow": 1.75}[kind]
    assert catalog.region_kind(None) == "none" and costs.REGION_MULTIPLIERS["none"] == 1.0


def test_a_container_is_priced_from_the_options_modal_receives():
    """CPU and memory at the request, Modal's default (0.125 cores, 128 MiB) where a Function makes none; "H100!"
    is billed as an H100; the jobs carry no compute_region, so no multiplier."""
    d = resolve(load_settings("prod"), "qwen3-8b-low-latency")
    server, jobs = spec.server(d), spec.jobs(d)
    assert costs.Container.of(server) == costs.Container("H100!", 2, 4.0, 16384, "us-east")
    # The compile job's CPU is sized for DeepGEMM's JIT (spec.compile_cpu: 3 + 1 per rank), its memory the recipe's.
    assert costs.Container.of(jobs["compile_kernels"]) == costs.Container("H100!", 2, 5.0, 16384, None)
    assert costs.Container.of(jobs["download_weights"]) == costs.Container(None, 0, 4.0, 8192, None)
    assert costs.Container.of({"gpu": "A10G"}) == costs.Container("A10G", 1, 0.125, 128, None)
    prod = plan.replica_cost(d, TABLE)
    assert prod.usd == pytest.approx((2 * H100 + 4 * CPU + 16 * MEMORY) * 1.75)
    assert prod.parts[0].resource == "H100" and prod.usd == pytest.approx(14.376096)
    # The figure: the old "one 2×H100 replica ≈ $5,688 per 30 days" was GPUs alone, with no multiplier.
    assert 2 * 3.95 * 720 * 1.75 == pytest.approx(9954)
    assert round(prod.usd * 720, 2) == 10350.79
    assert costs.price(costs.Container.of(jobs["download_weights"]), TABLE).usd == pytest.approx(4 * CPU + 8 * MEMORY)


def test_every_gpu_type_has_a_table_rate():
    for gpu in catalog.GPUS:
        assert TABLE.rate(costs.gpu_resource(gpu)).usd_per_hour > 0, gpu
    assert costs.gpu_resource("H100!") == "H100" and costs.gpu_resource("A100") == "A100-40GB"


def test_a_rate_nobody_has_is_an_error_that_names_it_never_a_zero():
    partial = costs.Rates({"cpu": CPU, "memory": MEMORY}, "live rates fetched 2026-11-30 12:00 UTC", live=True)
    with pytest.raises(costs.CostError, match=r"^no rate for H100 \(USD per GPU-hour\) in the live rates fetched "
                                              r"2026-11-30 12:00 UTC: set `costs.rates.H100`"):
        hourly("H100!", 1, 1, 1024, None, partial)


# ---------------------------------------------------------------------------- rates: settings, cache, table


def settings(env: str, *pairs: str):
    return load_settings(env, overrides=parse_overrides(list(pairs)))


def test_settings_override_the_rates_per_resource_and_say_so():
    s = settings("prod", "costs.rates={ cpu = 0.05, memory = 0.01 }", 'costs.gpu_hourly_usd={ "H100!" = 3.20 }')
    rates = costs.rates_for(s.costs)
    assert rates.rate("cpu") == costs.Rate(0.05, "settings (costs.rates.cpu)")
    assert rates.rate("H100") == costs.Rate(3.20, "settings (costs.gpu_hourly_usd.H100!)")
    assert rates.rate("L4") == costs.Rate(costs.TABLE["L4"], costs.TABLE_SOURCE)
    p = plan.plan_for(s, resolve(s, "qwen3-8b-low-latency"))
    assert p.cost.replica.usd_per_hour == pytest.approx((2 * 3.2 + 4 * 0.05 + 16 * 0.01) * 1.75, abs=1e-4)
    text = plan.render([p])
    assert "overridden: H100 $3.2/h from costs.gpu_hourly_usd.H100!; cpu $0.05/h from costs.rates.cpu" in text


@pytest.mark.parametrize(("pairs", "message"), [
    (["costs.rates={ gpu = 1.0 }"], "--set: costs.rates: unknown resource 'gpu'; allowed: cpu, memory, T4,"),
    (["costs.rates={ H100 = 1.0, \"H100!\" = 2.0 }"], "--set: costs.rates: H100 and H100! both price H100; allowed: "
                                                      "one of them"),
    (["costs.rates={ H100 = 1.0 }", 'costs.gpu_hourly_usd={ "H100!" = 2.0 }'],
     "--set: costs: H100 is priced by both gpu_hourly_usd and rates; allowed: one of them"),
    (["costs.mismatch_margin=0"], "--set: costs.mismatch_margin = 0: Input should be greater than 0"),
])
def test_bad_rate_settings_are_one_line(pairs, message):
    with pytest.raises(ConfigError) as err:
        settings("prod", *pairs)
    assert str(err.value).startswith(message)


def fetch_answer(rates: dict[str, str], calls: list | None = None):
    def fetch():
        if calls is not None:
            calls.append(1)
        return {"workspace": "acme", "rates": rates}

    return fetch


PER_SECOND = {"Nvidia H100": "0.001097", "CPU": "0.0000131", "Memory": "0.00000222", "Sandbox CPU": "0.00003942"}


def test_live_rates_are_read_per_second_or_per_hour_and_cached_once_a_day(tmp_path):
    path, calls = tmp_path / "rates.json", []
    line = costs.refresh(fetch_answer(PER_SECOND, calls), NOW, ["cpu", "memory", "H100"], path)
    assert line == (f"rates: live rates of workspace acme fetched 2026-11-30 12:20 UTC (3 resources, per second; not "
                    f"used: Sandbox CPU), cached in {path}")
    cached = json.loads(path.read_text())
    assert cached["rates"] == pytest.approx({"H100": H100, "cpu": CPU, "memory": MEMORY})
    # Within a day: nothing fetched. After a day: fetched again.
    assert costs.refresh(fetch_answer(PER_SECOND, calls), NOW + timedelta(hours=23), ["cpu"], path) is None
    assert len(calls) == 1
    per_hour = {"gpu.h100": "3.60", "cpu_core": "0.04", "memory_gib": "0.007"}
    assert "per hour" in costs.refresh(fetch_answer(per_hour, calls), NOW + timedelta(hours=24), ["H100"], path)
    assert len(calls) == 2 and json.loads(path.read_text())["rates"] == {"H100": 3.6, "cpu": 0.04, "memory": 0.007}


def test_plan_prices_with_the_cache_or_the_table_and_says_which(tmp_path, monkeypatch):
    monkeypatch.setenv("INFRA_STATE_DIR", str(tmp_path))
    s = load_settings("prod")
    d = resolve(s, "qwen3.6-35b-vlm")
    offline = plan.plan_for(s, d)
    assert offline.cost.rates.source == "offline table (modal.com/pricing, 2026-07-01)"
    assert "rates: offline table (modal.com/pricing, 2026-07-01)" in plan.render([offline])
    costs.refresh(fetch_answer({"H100": "3.00", "cpu": "0.05", "memory": "0.01"}), NOW, ["H100"])
    live = plan.plan_for(s, d).to_data()
    assert live["cost"]["rates"] == {"source": "live rates of workspace acme fetched 2026-11-30 12:20 UTC",
                                     "live": True,
                                     "overrides": {}}
    assert live["cost"]["replica"]["usd_per_hour"] == pytest.approx((3.0 + 4 * 0.05 + 32 * 0.01) * 1.75)
    assert {p["source"] for p in live["cost"]["replica"]["parts"]} == {live["cost"]["rates"]["source"]}
    # The schedule and the standing cost are priced by the same replica.
    assert live["cost"]["standing"]["usd_per_hour"] == round(live["cost"]["replica"]["usd_per_hour"], 2)


@pytest.mark.parametrize(("answer", "needed", "message"), [
    ({"CPU": "0.0000131"}, ["cpu", "memory"],
     "Modal's rates have no rate for memory (rates in the answer: CPU); nothing cached: set `costs.rates.memory`"),
    ({"H100": "0.05"}, ["H100"], "Modal's rate 'H100' = 0.05 is neither per hour nor per second near the table's "
                                 "$3.949/h"),
    ({"H100": "3.9", "CPU": "0.0000131"}, [], "Modal's rates mix per-second and per-hour figures"),
    ({"H100": "cheap"}, [], "Modal's rate 'H100' = 'cheap' is not a number"),
])
def test_an_answer_that_cannot_be_priced_with_is_refused_and_nothing_is_cached(tmp_path, answer, needed, message):
    with pytest.raises(costs.CostError) as err:
        costs.refresh(fetch_answer(answer), NOW, needed, tmp_path / "rates.json")
    assert str(err.value).startswith(message)
    assert not (tmp_path / "rates.json").exists()


def test_a_cache_this_version_did_not_write_is_one_line(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"fetched_at": NOW.isoformat(), "rates": {"H100": 3.9, "TPU": 1.0}}))
    with pytest.raises(costs.CostError, match=r"unknown resource 'TPU' in the rates cache; allowed: B200, .*; delete "
                                              r"the file and run `invoke status`"):
        costs.read_cache(path)
    path.write_text("{not json")
    with pytest.raises(costs.CostError, match="not a rates cache this version wrote; delete it"):
        costs.read_cache(path)
    assert costs.needs_refresh(NOW, path)  # `invoke status` replaces it


# ---------------------------------------------------------------------------- the period


def test_the_period_is_whole_hours_back_from_now():
    assert costs.period(None, None, NOW) == costs.Period(datetime(2026, 11, 23, 12, tzinfo=UTC),
                                                         datetime(2026, 11, 30, 12, tzinfo=UTC))
    assert costs.period("36h", None, NOW).start == datetime(2026, 11, 29, 0, tzinfo=UTC)
    got = costs.period("2026-11-01", "2026-11-02T06:30", NOW)
    assert (got.start, got.end, got.hours) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, 6, tzinfo=UTC),
                                               30)
    assert costs.period("2026-11-01T10:00+02:00", None, NOW).start == datetime(2026, 11, 1, 8, tzinfo=UTC)
    with pytest.raises(ConfigError, match=r"^--until 2026-12-25: 2026-12-25 00:00 UTC is in the future"):
        costs.period("1d", "2026-12-25", NOW)


# ---------------------------------------------------------------------------- the bill per release


def release(n: int, deployed_at: datetime, *, tag: str, min_containers: int = 1, measured: bool = False) -> Release:
    d = resolve(settings("prod", f"scaling.min_containers={min_containers}"), "qwen3-8b-low-latency")
    gate = None
    if measured:  # 1400 tok/s at the target: 10 requests of 10 tokens in 0.0714 s (bench_reports' arithmetic)
        gate = GateRecord(verdict="passed", measurement=bench_reports.report(
            bench_reports.level(1, ttft=0.05, tpot=0.01), bench_reports.level(10, ttft=0.0624, tpot=0.001)))
    return Release(release_id=f"r20261130-0{n}0000-abcde{n}", version=n, tag=tag, deployed_at=deployed_at.timestamp(),
                   deployment=d, gate=gate, kind="deploy", commit="a" * 40, dirty=False)


def row(hour: datetime, usd: float, *, role: str = "server", commit: str | None = "git-bbb",
        tags: bool = True) -> costs.BillRow:
    t = {"env": "prod", "recipe": "qwen3-8b-low-latency", "role": role} | ({"commit": commit} if commit else {})
    name = "sglang-qwen3-8b-low-latency" + ("-jobs" if role == "jobs" else "")
    return costs.BillRow("ap-1", name, hour, usd, {"H100": usd * 0.96, "CPU": usd * 0.04}, t if tags else {})


H = timedelta(hours=1)
START = datetime(2026, 11, 30, 0, tzinfo=UTC)
REPLICA = (2 * H100 + 4 * CPU + 16 * MEMORY) * 1.75


def billed(history, rows, period=None, margin=0.15):
    return ledger.bill(history, rows, period or costs.Period(START, START + 12 * H), env="prod",
                       recipe="qwen3-8b-low-latency",
                       app_names=("sglang-qwen3-8b-low-latency", "sglang-qwen3-8b-low-latency-jobs"), rates=TABLE,
                       margin=margin, now=NOW)


def test_the_bill_is_attributed_to_the_release_live_in_each_hour_and_set_beside_the_estimate():
    """v1 runs from 22:00 the day before, v2 from 06:30: the 06:00 hour is split half and half. v1's hours were billed
    at the model's rate (a warm replica, nobody calling); v2's at twice it (traffic started a second replica)."""
    v1 = release(1, START - 2 * H, tag="git-aaa")
    v2 = release(2, START + 6.5 * H, tag="git-bbb", measured=True)
    rows = [row(START + h * H, REPLICA, commit="git-aaa") for h in range(6)]
    rows += [row(START + 6 * H, 1.5 * REPLICA, commit="git-bbb")]  # half an hour of each: v2 busier already
    rows += [row(START + h * H, 2 * REPLICA) for h in range(7, 12)]
    rows += [row(START + 3 * H, 4.0, role="jobs", commit=None), row(START - 1 * H, 99.0)]  # the jobs; before the period
    bill = billed([v2, v1], [r for r in rows if r.start >= START])
    new, old = bill.releases
    assert (old.release_id, old.live_hours, old.warm_replica_hours) == ("r20261130-010000-abcde1", 6.5, 6.5)
    assert old.billed_usd == pytest.approx(6 * REPLICA + 0.75 * REPLICA)
    assert old.estimated_usd == pytest.approx(6.5 * REPLICA) and old.difference == pytest.approx(0.25 / 6.5)
    assert new.billed_usd == pytest.approx(0.75 * REPLICA + 5 * 2 * REPLICA) and new.live_hours == 5.5
    assert new.difference == pytest.approx((10.75 - 5.5) / 5.5)
    assert bill.jobs_usd == 4.0 and bill.unattributed_usd == 0 and bill.billed_usd == pytest.approx(17.5 * REPLICA + 4)
    # $/1M output tokens at the measured 1400 tok/s with the billed hourly cost, beside the model's.
    assert new.output_tokens_per_s == pytest.approx(1400, rel=1e-3)
    assert new.usd_per_million_billed == pytest.approx(new.billed_usd / 5.5 / (new.output_tokens_per_s * 3600) * 1e6)
    warnings = bill.warnings()
    assert warnings == [f"r20261130-020000-abcde2: billed ${new.billed_usd:,.2f} is +95.5% against the estimated "
                        f"${new.estimated_usd:,.2f}, beyond the 15% margin (costs.mismatch_margin): replicas beyond "
                        "the warm floor for traffic, use above the cpu/memory requests, or rates above the model's"]
    lines = bill.lines()
    assert lines[0] == (f"billed 2026-11-30 00:00 to 2026-11-30 12:00 UTC (12 h): ${bill.billed_usd:,.2f} (Modal's "
                        "billing report, hourly, by the apps' tags; estimated: the warm floor at the model's hourly "
                        "cost, margin 15%)")
    assert lines[1].split() == ["release", "v", "commit", "live", "h", "billed", "estimated", "diff", "billed", "$/h",
                                "replica", "$/h", "tok/s", "@T", "$/1M", "out", "billed"]
    assert lines[3].split()[:7] == ["r20261130-020000-abcde2", "v2", "git-bbb", "5.5", f"${new.billed_usd:,.2f}",
                                    f"${new.estimated_usd:,.2f}", "+95.5%"]
    assert lines[3].split()[-4:] == [f"${new.billed_usd / 5.5:,.2f}", "$14.38", "1400.6",
                                     f"${new.usd_per_million_billed:,.2f}"]
    assert "jobs app (download, compile): $4.00" in lines and lines[-1] == f"WARNING: {warnings[0]}"
    assert json.loads(json.dumps(bill.to_dict()))["releases"][0]["billed_by_resource"]["H100"] == pytest.approx(
        new.billed_usd * 0.96, abs=1e-3)
    # Within a wider margin, no warning.
    assert billed([v2, v1], rows, margin=1.0).warnings() == []


def test_a_release_with_no_warm_floor_is_all_usage_and_hours_before_the_first_release_are_unattributed():
    v1 = release(1, START + 4 * H, tag="git-bbb", min_containers=0)
    bill = billed([v1], [row(START + h * H, 2.0) for h in range(2, 8)])
    assert bill.unattributed_usd == 4.0 and bill.releases[0].billed_usd == 8.0 and bill.releases[0].estimated_usd == 0
    assert bill.warnings() == ["r20261130-010000-abcde1: billed $8.00 where its warm floor was 0 (nothing estimated): "
                               "all of it is usage, replicas Modal started for traffic"]
    assert "server hours before the oldest recorded release: $4.00" in bill.lines()


def test_a_commit_no_release_of_that_hour_deployed_is_said():
    bill = billed([release(1, START - H, tag="git-aaa")], [row(START + h * H, REPLICA, commit="git-zzz")
                                                           for h in range(3)])
    assert bill.releases[0].billed_usd == pytest.approx(3 * REPLICA)
    assert bill.notes == ("3 hour(s) billed under a commit tag no release of that hour recorded (a deploy outside "
                          "`invoke deploy`?): attributed by time",)


def test_a_report_with_no_tags_is_one_line():
    v1 = release(1, START - H, tag="git-aaa")
    with pytest.raises(costs.CostError, match=r"^Modal's billing report for 2026-11-30 00:00 to 2026-11-30 12:00 UTC "
                                              r"\(12 h\) "
                                              r"has 2 row\(s\) of prod/qwen3-8b-low-latency's apps and none carries "
                                              r"its tags"):
        billed([v1], [row(START, 1.0, tags=False), row(START + H, 1.0, tags=False)])
    # Beside tagged rows, untagged ones are left out and said.
    bill = billed([v1], [row(START, 1.0, tags=False), row(START + H, 1.0, commit="git-aaa")])
    assert bill.releases[0].billed_usd == 1.0
    assert bill.notes[0].startswith("1 untagged row(s) of these apps ($1.00) left out")
    # Other apps' rows, tagged or not, are not this recipe's.
    other = costs.BillRow("ap-2", "someone-elses-app", START, 5.0, {}, {})
    assert billed([v1], [other, row(START, 1.0, commit="git-aaa")]).billed_usd == 1.0


def test_report_rows_from_the_boundary_are_read_and_a_bad_one_is_one_line():
    rows = costs.bill_rows([{"object_id": "ap-1", "description": "a", "interval_start": START.timestamp(),
                             "cost": "1.25",
                             "cost_by_resource": {"CPU": "0.25", "H100": "1.00"}, "tags": {"env": "prod"}}])
    assert rows == [costs.BillRow("ap-1", "a", START, 1.25, {"CPU": 0.25, "H100": 1.0}, {"env": "prod"})]
    with pytest.raises(costs.CostError, match=r"^Modal's billing report has a row this version cannot read "
                                              r"\(ValueError"):
        costs.bill_rows([{"object_id": "ap-1", "interval_start": 0, "cost": "n/a"}])


# ---------------------------------------------------------------------------- `invoke status`: refresh and the bill


def test_status_refreshes_the_rates_once_a_day_and_shows_the_bill(wire, monkeypatch):
    """The real ModalRemote in front of the wire fake, which bills the hours a test charges (tests/test_costs_wire.py:
    the same through the CLI)."""
    from infra.perf.releases import ReleaseStore
    from stages import status
    from stages.common import Context
    from tests.fakes.recorded import Recorded

    fake = Recorded()
    s = load_settings("prod", "qwen3-8b-low-latency")
    d = resolve(s, "qwen3-8b-low-latency")
    wire.create_secret("prod", "huggingface-secret", {"HF_TOKEN": "hf_" + "x" * 30})
    fake.remote.deploy(d, "git-aaa")  # the server App, tagged as a deploy of that commit tags it
    store = ReleaseStore(fake)
    measured = release(1, START, tag="git-aaa", measured=True)
    store.record(d, store.read(d), measured.model_copy(update={
        "release_id": "r20261129-220000-abcdef", "deployment": d, "deployed_at": (START - 2 * H).timestamp()}))
    # One replica for 12 hours: 2 H100s, 4 cores and 16 GiB at the table's rates, x 1.75 in us-east (REPLICA).
    wire.charge("prod", d.app_name, [START + h * H for h in range(12)],
                {"H100": f"{2 * H100 * 1.75:.6f}", "CPU": f"{4 * CPU * 1.75:.6f}",
                 "Memory": f"{16 * MEMORY * 1.75:.6f}"})
    said: list[str] = []
    ctx = Context(settings=s, remote=fake, say=said.append, clock=lambda: NOW)
    result = status.run(ctx, d, status.Options(cost=True, since="2026-11-30"))
    assert said == ["rates: live rates of workspace wire-workspace fetched 2026-11-30 12:20 UTC (12 resources, per "
                    f"second; not used: Sandbox CPU, Volume storage), cached in {costs.cache_path()}"]
    lines = result.message.splitlines()
    assert "  ledger (newest first; $/1M out at one busy replica's hourly cost, rates: live rates of workspace " \
           "wire-workspace fetched 2026-11-30 12:20 UTC):" in lines
    assert any(line.strip().startswith("billed 2026-11-30 00:00 to 2026-11-30 12:00 UTC (12 h): $172.51")
               for line in lines)
    [billed_row] = [line for line in lines if line.strip().startswith("r20261129-220000-abcdef  v1  git-aaa")]
    assert billed_row.split()[3:7] == ["12.0", "$172.51", "$172.51", "+0.0%"]
    assert "WARNING" not in result.message
    assert result.detail.bill["releases"][0]["usd_per_million_output_tokens_billed"] == pytest.approx(
        REPLICA / (1400.56 * 3600) * 1e6, rel=1e-3)
    assert fake.call_names().count("billing_report") == 1
    # A second status within the day fetches no rates; one without --cost reads no bill.
    again = status.run(ctx, d)
    assert fake.call_names().count("billing_rates") == 1 and fake.call_names().count("billing_report") == 1
    assert again.detail.bill is None and "billed" not in again.message
    # Without credentials nothing is fetched at all.
    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.delenv("MODAL_TOKEN_SECRET")
    with pytest.raises(Exception, match="Modal credentials missing"):
        status.run(Context(settings=s, remote=fake, say=said.append, clock=lambda: NOW + timedelta(days=2)), d)
    assert fake.call_names().count("billing_rates") == 1


def test_plan_never_fetches_rates(cli):
    """`invoke plan` offline: no call reaches the Modal boundary, and no rates cache is written."""
    done = cli("plan", "--env", "prod", "--json")
    assert done.returncode == 0, done.stderr
    assert cli.rpcs() == [] and not (cli.tmp / "state").exists()
    [first, _] = json.loads(done.stdout)
    assert first["cost"]["rates"]["source"] == costs.TABLE_SOURCE


def test_without_cost_a_rate_modal_lacks_is_a_warning_and_status_goes_on(wire):
    """The promotion workflow runs a plain `invoke status`: billing data it cannot use must not fail it."""
    from infra.runtime.remote import ModalRemote
    from stages import status
    from stages.common import Context

    fake = ModalRemote()
    wire.rates = {"CPU": "0.0000131", "Memory": "0.00000222"}
    said: list[str] = []
    s = load_settings("prod", "qwen3-8b-low-latency")
    result = status.run(Context(settings=s, remote=fake, say=said.append, clock=lambda: NOW),
                        resolve(s, "qwen3-8b-low-latency"))
    assert result.message == "prod/qwen3-8b-low-latency: nothing deployed yet"
    assert said == ["warning: rates not refreshed (Modal's rates have no rate for H100 (rates in the answer: CPU, "
                    "Memory); nothing cached: set `costs.rates.H100` to price it); pricing with the offline table "
                    "(modal.com/pricing, 2026-07-01)"]
    assert not costs.cache_path().exists()
    # A negotiated H100 rate in the settings: the answer has all the rest, and is cached.
    s = load_settings("prod", "qwen3-8b-low-latency", {"costs.gpu_hourly_usd": {"H100!": 3.0}})
    status.run(Context(settings=s, remote=fake, say=said.append, clock=lambda: NOW), resolve(s, "qwen3-8b-low-latency"))
    assert said[-1].startswith("rates: live rates of workspace wire-workspace fetched") and costs.cache_path().exists()


@pytest.mark.parametrize("since", ["1000000d", "99999999999h", "9" * 5000 + "d"])
def test_a_period_further_back_than_year_1_is_one_line(since):
    """Issue 30: `status --cost --since 1000000d` ended in OverflowError."""
    with pytest.raises(ConfigError) as err:
        costs.period(since, None, NOW)
    unit = "hours" if since.endswith("h") else "days"
    assert str(err.value).startswith("--since '")
    assert (f": that many {unit} back from now is before year 1, the earliest date there is; allowed: a duration"
            in str(err.value))


def test_a_row_with_a_negative_cost_is_left_out_and_named_not_netted_in():
    """Issue 30: a billing row with a negative cost was netted into the bill without a word."""
    v1 = release(1, START - 2 * H, tag="git-bbb")
    credit = costs.BillRow("ap-9", "sglang-qwen3-8b-low-latency", START + 2 * H, -3.0, {"H100": -3.0},
                           {"env": "prod", "recipe": "qwen3-8b-low-latency", "role": "server", "commit": "git-bbb"})
    bill = billed([v1], [row(START + h * H, REPLICA) for h in range(4)] + [credit])
    assert bill.billed_usd == pytest.approx(4 * REPLICA)  # the credit is not subtracted from the release's hours
    assert bill.notes == ("1 row(s) with a negative or unreadable cost left out ($-3.00; allowed: a cost of 0 or more, "
                          "as usage is; a credit or a correction?): first ap-9 (sglang-qwen3-8b-low-latency) "
                          "2026-11-30 02:00 UTC $-3.00",)
    assert bill.notes[0] in bill.lines()


def test_the_image_builder_app_s_rows_are_counted_on_their_own_line():
    v1 = release(1, START - 2 * H, tag="git-bbb")
    build = costs.BillRow("ap-2", "sglang-qwen3-8b-low-latency-builds", START + H, 1.25, {"CPU": 1.25},
                          {"env": "prod", "recipe": "qwen3-8b-low-latency", "role": "builds"})
    bill = billed([v1], [row(START + h * H, REPLICA) for h in range(2)] + [build])
    assert bill.builds_usd == 1.25 and bill.billed_usd == pytest.approx(2 * REPLICA + 1.25)
    assert bill.releases[0].billed_usd == pytest.approx(2 * REPLICA)
    assert "image builder app (build): $1.25" in bill.lines() and bill.to_dict()["builds_usd"] == 1.25
