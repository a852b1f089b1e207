"""Scheduled warm capacity through the stages: the floor is applied right after deploy, promotion and
rollback land (a deploy resets Modal's run-time overrides), `status` says what is in force and who set
it, `scale` says when the schedule will override it, and `plan` prices the schedule beside always-warm.
The real ModalRemote in front of the fake control plane (tests/wire.py); tests/test_modal_contract_tasks.py does it
through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from infra.control import plan
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.runtime import schedule
from infra.runtime.errors import StageError
from stages import deploy, pipeline, promote, rollback, scale, status
from stages.common import Context
from tests.fakes.recorded import Recorded
from tests.test_release_flow import commit
from tests.test_stages import git_repo
from tests.wire import stage_world

RECIPE = "qwen3-8b-low-latency"
BUSINESS_HOURS = ('scaling.schedule=[{name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI", '
                  'timezone="America/New_York", min_containers=2}]')
PINNED = f'recipes.{RECIPE}.draft_revision="{"b" * 40}"'  # prod deploys only pinned revisions
NO_GATE = "gate.enabled=false"  # these tests are about the schedule: the fake servers' timings are noise to a gate
WEDNESDAY_10_NY = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York: inside the window
SATURDAY = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path, fake_server, wire):
    class World:
        server = fake_server("--tokens", "6")
        modal = Recorded()
        repo = git_repo(tmp_path / "checkout")
        now = WEDNESDAY_10_NY

        def ctx(self, env, *overrides, **options):
            pinned = [PINNED, NO_GATE] if env == "prod" else []
            settings = load_settings(env, RECIPE, parse_overrides(pinned + list(overrides)))
            return Context(settings=settings, remote=self.modal, repo=self.repo, say=lambda m: None, yes=True,
                           interactive=False, clock=lambda: self.now, **options)

        def d(self, ctx):
            return resolve(ctx.settings, RECIPE)

        def floors_set(self) -> list[dict]:
            return [{k: v for k, v in c["args"].items() if k.endswith("_containers")}
                    for c in self.modal.calls() if c["method"] == "update_autoscaler"]

    stage_world(wire, World.server.url)
    world = World()
    world.wire = wire
    return world


def test_a_deploy_applies_the_floor_in_force_right_after_it_lands(world):
    ctx = world.ctx("prod", BUSINESS_HOURS, force=True)
    deploy.run(ctx, world.d(ctx))
    names = world.modal.call_names()
    assert names.index("update_autoscaler") > names.index("deploy")
    assert world.floors_set() == [{"min_containers": 2, "max_containers": 4, "buffer_containers": None}]
    world.now = SATURDAY  # outside the window: the base scaling ([scaling] min_containers = 1)
    deploy.run(world.ctx("prod", BUSINESS_HOURS, force=True), world.d(ctx))
    assert world.floors_set()[-1] == {"min_containers": 1, "max_containers": 4, "buffer_containers": None}


def test_without_a_schedule_a_deploy_leaves_the_autoscaler_alone(world):
    ctx = world.ctx("prod", force=True)
    deploy.run(ctx, world.d(ctx))
    assert world.floors_set() == []


def test_promotion_and_its_automatic_rollback_apply_the_floor_of_what_then_runs(world, fake_server):
    staging = world.ctx("staging")
    pipeline.run(staging, world.d(staging))
    promote.run(staging, world.ctx("prod", BUSINESS_HOURS), promote.Options(RECIPE))
    assert world.floors_set() == [{"min_containers": 2, "max_containers": 4, "buffer_containers": None}]
    commit(world.repo, "second release")
    pipeline.run(world.ctx("staging"), world.d(staging))  # staging's smoke passes on the good endpoint...
    # ...then prod's fails
    world.wire.upstreams["prod", "sglang-qwen3-8b-low-latency"] = fake_server("--chat-status", "500").url
    world.now = SATURDAY
    with pytest.raises(StageError, match="prod smoke test failed .*; rolled back to v1"):
        promote.run(world.ctx("staging"), world.ctx("prod", BUSINESS_HOURS), promote.Options(RECIPE))
    # Applied after the failed release landed (Saturday: the base floor), and again after the rollback landed.
    assert world.floors_set()[1:] == [{"min_containers": 1, "max_containers": 4, "buffer_containers": None}] * 2
    names = world.modal.call_names()
    assert names[-1] != "rollback" and "update_autoscaler" in names[names.index("rollback"):]


def test_a_rollback_applies_the_schedule_of_the_release_it_returns_to(world):
    ctx = world.ctx("prod", BUSINESS_HOURS, force=True)
    deploy.run(ctx, world.d(ctx))  # v1: with the schedule
    commit(world.repo, "two")
    plain = world.ctx("prod", force=True)
    deploy.run(plain, world.d(plain))  # v2: without one
    before = len(world.floors_set())
    rollback.run(plain, world.d(plain), rollback.Options(to=1))
    assert world.floors_set()[before:] == [{"min_containers": 2, "max_containers": 4, "buffer_containers": None}]


def test_status_says_what_is_in_force_who_set_it_and_the_next_change(world):
    ctx = world.ctx("prod", BUSINESS_HOURS, force=True)
    deploy.run(ctx, world.d(ctx))
    report = status.run(ctx, world.d(ctx))
    assert ("warm floor: min_containers=2, max_containers=4, buffer_containers=0: set by the schedule "
            "(window 'business-hours')") in report.message
    assert ("next scheduled change: 2026-11-25 23:00 UTC (Wed 2026-11-25 18:00 America/New_York): "
            "window 'business-hours' ends") in report.message
    assert report.detail.warm_floor["set_by"] == "schedule"
    assert report.detail.warm_floor["next_change"] == "2026-11-25T23:00:00+00:00"
    scale.run(ctx, world.d(ctx), scale.Options(3))
    report = status.run(ctx, world.d(ctx))
    assert "min_containers=3" in report.message and "a run-time override (`invoke scale`" in report.message
    assert "the schedule wants min_containers=2" in report.message


def test_scale_says_when_the_schedule_next_overrides_it(world):
    ctx = world.ctx("prod", BUSINESS_HOURS, force=True)
    deploy.run(ctx, world.d(ctx))
    result = scale.run(ctx, world.d(ctx), scale.Options(3))
    assert "min_containers now 3, until 2026-11-25 23:00 UTC (Wed 2026-11-25 18:00 America/New_York)" in result.message
    assert result.detail.overridden_at == "2026-11-25T23:00:00+00:00"
    plain = world.ctx("prod", force=True)
    result = scale.run(plain, world.d(plain), scale.Options(2))
    assert "until the next deploy resets it to the settings value (1)" in result.message


def test_plan_prices_the_schedule_beside_always_warm():
    """Business hours, Mon-Fri 08:00-18:00 New York, one 2xH100 replica in us-east at $14.376096/h (its GPUs, CPU and
    memory at the offline table, x 1.75: tests/test_costs.py): 50 replica-hours a week = 100 GPU-hours = $718.80,
    against 168 h = 336 GPU-hours = $2,415.18 always warm. The 30 days from Monday 2026-03-02 hold 22 weekdays
    (220 h, 440 GPU-hours, $3,162.74; the clocks change on 8 March, which moves the window in UTC, not its length)
    against 720 h = 1440 GPU-hours, $10,350.79."""
    s = load_settings("prod", overrides=parse_overrides([BUSINESS_HOURS.replace("min_containers=2", "min_containers=1"),
                                                         "scaling.min_containers=0"]))
    d = resolve(s, RECIPE)
    cost = plan.schedule_plan(s, d, now=datetime(2026, 3, 4, 12, tzinfo=UTC)).cost.model_dump()
    assert cost["per_week"] == {"scheduled": {"replica_hours": 50.0, "gpu_hours": 100.0, "usd": 718.8},
                                "always_warm": {"replica_hours": 168.0, "gpu_hours": 336.0, "usd": 2415.18}}
    assert (cost["per_30_days"]["scheduled"]["usd"], cost["per_30_days"]["always_warm"]["usd"]) == (3162.74, 10350.79)
    assert cost["usd_per_replica_hour"] == 14.3761
    p = plan.plan_for(s, d).to_data()
    assert p["schedule"]["triggers"] == [{"cron": "0 8,18 * * MON-FRI", "timezone": "America/New_York",
                                          "events": ["business-hours start", "business-hours end"]}]
    assert list(p["modal"]["scheduler"]) == ["apply_floor_0"]
    # A guarded environment without warm replicas is warned about, unless a schedule keeps some warm.
    assert not any("min_containers = 0" in w for w in p["warnings"])
    text = plan.render([plan.plan_for(s, d)])
    assert "Schedule       business-hours (America/New_York): opens at 08:00 on monday through friday" in text
    assert "on schedule" in text and "always warm at 1 replica(s)" in text
    json.dumps(p)  # JSON-serialisable


def test_window_resolution_in_the_plan_text_follows_the_clock():
    s = load_settings("prod", overrides=parse_overrides([BUSINESS_HOURS]))
    p = plan.schedule_plan(s, resolve(s, RECIPE))
    inside = plan._schedule_lines(p, now=WEDNESDAY_10_NY)
    outside = plan._schedule_lines(p, now=SATURDAY)
    assert any("in force now: min_containers=2" in line and "window 'business-hours'" in line for line in inside)
    assert any("in force now: min_containers=1" in line and "base scaling" in line for line in outside)
    assert any("next change: 2026-11-30 13:00 UTC (Mon 2026-11-30 08:00 America/New_York)" in line for line in outside)
    assert schedule.floor_at(SATURDAY, resolve(s, RECIPE).scaling.schedule,
                             resolve(s, RECIPE).scaling).min_containers == 1
