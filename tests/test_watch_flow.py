"""What prod is doing, through the stages (issue 31 items 3 and 5): `status --since` shows the sentinel's SLO
attainment, errors, percentiles, cold starts and the bake's verdict; `check` fails below `min_attainment` or on cost
drift; `status --advise` proposes the schedule hidden in a synthetic billing history, as TOML the real settings load,
and refuses to advise without enough history. The real ModalRemote in front of the fake control plane
(tests/wire.py): sentinel runs probe a real server behind the fake's proxy with injected clocks, replica counts are
what the fake answers for the Server, and the bill is charged to the deployed App (it carries the tags the deploy gave
it), for hours the test names: nothing waits."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from infra.control import advice, coldstarts, costs
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf.releases import ReleaseStore
from infra.runtime import schedule, sentinel, spec
from infra.runtime.errors import ConfigError, StageError
from stages import check, deploy, status
from stages.common import Context
from tests.fakes.recorded import Recorded
from tests.test_schedule_flow import PINNED, RECIPE
from tests.test_stages import git_repo
from tests.wire import stage_world

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday
APP = "sglang-qwen3-8b-low-latency"


@pytest.fixture
def world(tmp_path, fake_server, wire):
    class World:
        modal = Recorded()
        repo = git_repo(tmp_path / "checkout")
        now = NOW
        proxy_auth = {"Modal-Key": wire.proxy_token[0], "Modal-Secret": wire.proxy_token[1]}  # the sentinel's Secret

        def serve(self, server) -> None:
            """What answers behind prod's Server URL from now on."""
            wire.upstreams[("prod", APP)] = server.url

        def bill(self, rows: list[dict]) -> None:
            """Modal bills prod's server App for each row's hour and cost (as the GPU's), with the App's own tags."""
            by_cost: dict[str, list[datetime]] = {}
            for row in rows:
                by_cost.setdefault(row["cost"], []).append(datetime.fromtimestamp(row["interval_start"], UTC))
            for cost, hours in by_cost.items():
                wire.charge("prod", APP, hours, {"Nvidia H100": cost})

        def ctx(self, env, *overrides, **options):
            pinned = [PINNED, "gate.enabled=false"] if env == "prod" else []
            settings = load_settings(env, RECIPE, parse_overrides(pinned + list(overrides)))
            return Context(settings=settings, remote=self.modal, repo=self.repo, say=lambda m: None, yes=True,
                           interactive=False, clock=lambda: self.now, **options)

        def d(self, ctx):
            return resolve(ctx.settings, RECIPE)

    stage_world(wire, fake_server("--tokens", "6").url)
    world = World()
    world.wire = wire
    return world


def deployed(world, *overrides):
    world.now = NOW
    ctx = world.ctx("prod", *overrides, force=True)
    deploy.run(ctx, world.d(ctx))
    return ctx


def probes(world, ctx, n: int, *, start: datetime, every: float = 60.0) -> None:
    """n sentinel runs against the fake's endpoint, one per `every` seconds from `start` (the clock injected)."""
    s = spec_of(ctx)
    for i in range(n):
        at = (start + timedelta(seconds=i * every)).timestamp()
        sentinel.run(s, world.modal, world.proxy_auth, now=lambda at=at: at, log=lambda _: None)


def spec_of(ctx):
    from infra.control import watching

    return watching.spec_for(ctx.settings, [resolve(ctx.settings, RECIPE)])


def test_status_since_shows_attainment_errors_percentiles_cold_starts_and_no_bake_yet(world, fake_server):
    ctx = deployed(world)
    probes(world, ctx, 6, start=NOW - timedelta(minutes=30))
    world.serve(fake_server("--ttft", "0.6", "--tokens", "4"))  # slower than ttft_p90_ms <= 500
    probes(world, ctx, 2, start=NOW - timedelta(minutes=10))
    world.serve(fake_server("--chat-status", "500"))
    probes(world, ctx, 2, start=NOW - timedelta(minutes=5))
    report = status.run(ctx, world.d(ctx), status.Options(since="1h"))
    w = report.detail.sentinel
    assert (w["sent"], w["errors"], w["skipped"], w["cold_starts"]) == (10, 2, 0, 0)
    by_metric = {o["metric"]: o for o in w["objectives"]}
    assert (by_metric["ttft_p90_ms"]["within"], by_metric["ttft_p90_ms"]["of"]) == (6, 10)
    assert by_metric["error_rate"]["attainment"] == 0.8 and w["error_rate"] == 0.2
    assert w["ttft_ms"]["p90"] >= 600 > w["ttft_ms"]["p50"]  # the two slow probes are the slowest of eight
    assert "ttft_p90_ms <= 500: attained by 60.0% (6 of 10)" in report.message
    assert "10 probe(s), error rate 20.0%, cold starts met 0" in report.message
    assert f"bake of {report.detail.current['release_id']}: no bake recorded" in report.message
    older = status.run(ctx, world.d(ctx), status.Options(since="8m"))  # the window is to the second
    assert older.detail.sentinel["sent"] == 2


def test_status_since_of_a_scaled_to_zero_recipe_counts_skips_and_never_probes(world):
    ctx = deployed(world, "scaling.min_containers=0")
    world.wire.replicas[("prod", APP)] = 0  # scaled to zero: what Modal's stats say
    probes(world, ctx, 3, start=NOW - timedelta(minutes=3))
    w = status.run(ctx, world.d(ctx), status.Options(since="1h")).detail.sentinel
    assert (w["sent"], w["skipped"]) == (0, 3)
    assert "write_ring" in world.modal.call_names()


def test_a_since_that_is_not_a_time_is_one_line():
    from infra.control import attainment

    with pytest.raises(ConfigError, match=r"^--since 'yesterday': not a time; allowed: a duration back from now such "
                                          r"as "):
        attainment.window("yesterday", None, NOW)


def test_check_passes_when_attained_and_fails_below_min_attainment_saying_why(world, fake_server):
    ctx = deployed(world)
    probes(world, ctx, 30, start=NOW - timedelta(minutes=40))
    assert "every objective attained" in check.run(ctx, world.d(ctx)).message
    world.serve(fake_server("--ttft", "0.6", "--tokens", "3"))
    probes(world, ctx, 3, start=NOW - timedelta(minutes=5))
    said: list[str] = []
    ctx.say = said.append
    with pytest.raises(StageError, match=r"check failed: prod/qwen3-8b-low-latency: 1 breach\(es\), 0 cost drift\(s\): "
                                         r".*ttft_p90_ms <= 500 attained by 90.9% of probes \(30 of 33\) < 99%"):
        check.run(ctx, world.d(ctx))
    assert "BREACH" in said[-1]


def test_check_fails_when_nothing_was_recorded(world):
    ctx = deployed(world)
    with pytest.raises(StageError, match="no sentinel probe recorded .* is the sentinel deployed"):
        check.run(ctx, world.d(ctx))


def test_check_fails_when_the_billed_cost_per_hour_drifts_beyond_the_margin(world):
    ctx = deployed(world)
    world.now = datetime.now(UTC) + timedelta(hours=2)  # the release (deployed now) was live the whole last hour
    probes(world, ctx, 30, start=world.now - timedelta(minutes=40))
    replica = costs.price(costs.Container.of(spec.server(world.d(ctx))), costs.rates_for(ctx.settings.costs))
    hour = world.now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    world.bill([{"interval_start": hour.timestamp(), "cost": str(replica.usd * 2)}])  # two replicas' worth
    with pytest.raises(StageError, match=r"1 cost drift\(s\): .*billed \$.* is \+100.0% against the estimated"):
        check.run(ctx, world.d(ctx))


# ---------------------------------------------------------------------------- advice from the bill


def synthetic_bill(replica_usd: float, weeks: int, now: datetime, busy) -> list[dict]:
    """Hourly server rows over the `weeks` whole weeks before `now`: `busy(hour)` replica-hours each hour (0: no
    row)."""
    since, until = advice.history_period(now, weeks)
    rows, hour = [], since
    tags = {"env": "prod", "recipe": RECIPE, "role": "server", "commit": "x"}
    while hour < until:
        if used := busy(hour):
            rows.append({"object_id": "ap-1", "description": APP, "interval_start": hour.timestamp(),
                         "cost": f"{replica_usd * used:.6f}", "tags": tags})
        hour += timedelta(hours=1)
    return rows


def office_hours(hour: datetime) -> float:
    """Busy Monday to Friday 08:00-18:00 UTC (a replica up 80% of each hour), a stray request at 03:00 on Sundays."""
    if hour.weekday() < 5 and 8 <= hour.hour < 18:
        return 0.8
    return 0.1 if (hour.weekday(), hour.hour) == (6, 3) else 0.0


def test_advise_finds_the_windows_hidden_in_the_bill_as_toml_the_settings_load(world):
    ctx = deployed(world, "scaling.min_containers=0")
    d = world.d(ctx)
    replica = costs.price(costs.Container.of(spec.server(d)), costs.rates_for(ctx.settings.costs))
    world.bill(synthetic_bill(replica.usd, 4, NOW, office_hours))
    # Recorded starts: three on weekday mornings (inside the window), two on a Sunday night (outside it), where the
    # release's containers record them.
    since, _ = advice.history_period(NOW, 4)
    bucket = coldstarts.bucket_of(ReleaseStore(world.modal).read(d).current)
    for at in (since + timedelta(days=1, hours=8, minutes=1), since + timedelta(days=8, hours=9),
               since + timedelta(days=16, hours=12), since + timedelta(days=6, hours=3), since
               + timedelta(days=13, hours=3)):
        world.modal.record_start("prod", bucket, {"started_at": at.timestamp(), "outcome": "ready"})
    report = status.run(ctx, d, status.Options(advise=True))
    got = report.detail.advice
    assert got["schedule"] == [{"name": "advised-mon-fri-08-18", "start": "0 8 * * MON-FRI", "end": "0 18 * * MON-FRI",
                                "timezone": "UTC", "min_containers": 1}]
    assert got["warm_hours_per_week"] == 50
    assert "cold starts in the history: 5; under the proposal users would still have met 2" in report.message
    assert got["standing_saved_usd_per_week"] == pytest.approx((168 - 50) * replica.usd, abs=0.01)
    assert "[[scaling.schedule]]" in report.message and 'start = "0 8 * * MON-FRI"' in report.message
    # The TOML loads through the real settings, and the floor it sets is the window's.
    pasted = tomllib.loads(got["toml"])["scaling"]["schedule"]
    loaded = load_settings("prod", RECIPE, {"scaling.min_containers": 0, "scaling.schedule": pasted})
    wednesday_noon = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert schedule.floor_at(wednesday_noon, loaded.scaling.schedule, loaded.scaling).min_containers == 1
    assert schedule.floor_at(wednesday_noon + timedelta(hours=8), loaded.scaling.schedule,
                             loaded.scaling).min_containers == 0


def docs_block(marker: str) -> list[str]:
    """The fenced block right after `<!-- marker -->` in docs/sentinel.md: output the suite checks."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "sentinel.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1].split("```", 2)[1]
    return after.split("\n", 1)[1].rstrip("\n").splitlines()


def test_the_docs_advice_example_is_what_advice_prints_for_the_synthetic_office_hours():
    from infra.control.resolve import resolve

    d = resolve(load_settings("prod"), RECIPE)
    replica = costs.price(costs.Container.of(spec.server(d)), costs.Rates(costs.TABLE, costs.TABLE_SOURCE))
    since, _ = advice.history_period(NOW, 4)
    starts = [(since + timedelta(days=day, hours=hour, minutes=minute)).timestamp()
              for day, hour, minute in ((1, 8, 1), (8, 9, 0), (16, 12, 0), (6, 3, 0), (13, 3, 0))]
    got = advice.advise(costs.bill_rows(synthetic_bill(replica.usd, 4, NOW, office_hours)), starts, recipe=RECIPE,
                        env="prod", replica_usd=replica.usd, now=NOW)
    assert got.lines() == docs_block("advice: tests/test_watch_flow.py")


def test_advise_starts_are_counted_inside_and_outside_the_proposal():
    replica = 10.0
    rows = costs.bill_rows(synthetic_bill(replica, 3, NOW, office_hours))
    since, _ = advice.history_period(NOW, 3)
    starts = [(since + timedelta(days=1, hours=9)).timestamp(), (since + timedelta(days=6, hours=3)).timestamp()]
    got = advice.advise(rows, starts, recipe=RECIPE, env="prod", replica_usd=replica, now=NOW, weeks=3)
    assert (got.starts, got.starts_outside) == (2, 1)
    assert got.standing_saved_usd_per_30_days == pytest.approx((168 - 50) * replica * 720 / 168, abs=0.01)


def test_a_late_night_window_ends_at_midnight_on_the_next_day():
    def evenings(hour: datetime) -> float:
        return 0.9 if hour.weekday() in (4, 5) and hour.hour >= 20 else 0.0

    got = advice.advise(costs.bill_rows(synthetic_bill(5.0, 2, NOW, evenings)), [], recipe=RECIPE, env="prod",
                        replica_usd=5.0, now=NOW, weeks=2)
    assert [w.window() for w in got.windows] == [{"name": "advised-fri-sat-20-24", "start": "0 20 * * FRI,SAT",
                                                  "end": "0 0 * * SAT,SUN", "timezone": "UTC", "min_containers": 1}]


def test_advise_refuses_without_history_on_too_little_and_on_an_always_warm_one(world):
    ctx = deployed(world, "scaling.min_containers=0")
    with pytest.raises(advice.NotEnoughHistory, match=r"^no billed hour of prod/qwen3-8b-low-latency's server in "
                                                      r"Modal's billing report over the last 4 whole weeks \(UTC\): "
                                                      r"advice needs 4 whole weeks"):
        status.run(ctx, world.d(ctx), status.Options(advise=True))
    recent = synthetic_bill(1.0, 4, NOW, lambda h: 0.9 if h >= NOW - timedelta(days=10) else 0.0)
    with pytest.raises(advice.NotEnoughHistory, match=r"billed from .* only, \d+\.\d days of the 4 weeks advice needs"):
        advice.advise(costs.bill_rows(recent), [], recipe=RECIPE, env="prod", replica_usd=1.0, now=NOW)
    warm = synthetic_bill(1.0, 2, NOW, lambda h: 1.0)
    with pytest.raises(advice.NotEnoughHistory, match="a replica ran in every one of its 336 hours"):
        advice.advise(costs.bill_rows(warm), [], recipe=RECIPE, env="prod", replica_usd=1.0, now=NOW, weeks=2)
    with pytest.raises(advice.NotEnoughHistory, match="--weeks 1: .*allowed: 2 weeks or more"):
        advice.advise([], [], recipe=RECIPE, env="prod", replica_usd=1.0, now=NOW, weeks=1)


def test_status_since_shows_the_bakes_verdict_once_one_is_recorded(world):
    from infra.control.bake_policy import ROLLED_BACK, Bake

    ctx = deployed(world)
    current = ReleaseStore(world.modal).read(world.d(ctx)).current
    assert status.bake_verdict(current) is None  # shown as "no bake recorded"
    baked = current.model_copy(update={"bake": Bake(verdict=ROLLED_BACK,
                                                    reason="ttft_p90_ms 612.0 ms > 500.0 ms over 3 "
                                                                                 "windows", minutes=10)})
    verdict = status.bake_verdict(baked)
    assert verdict["verdict"] == ROLLED_BACK
    assert verdict["line"] == "rolled back by bake: ttft_p90_ms 612.0 ms > 500.0 ms over 3 windows"
