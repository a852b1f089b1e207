"""Warm capacity on a schedule (infra/runtime/schedule.py): window resolution at chosen instants, daylight-saving
changes, overlaps, cost figures, the container-side apply, validation messages, and the pydantic wiring
proposed for infra/control/settings.py.

Dates used (America/New_York, from the IANA database): daylight saving starts Sunday 2026-03-08 at
02:00 EST (07:00 UTC) and ends Sunday 2026-11-01 at 02:00 EDT (06:00 UTC). So 09:00 New York is 14:00 UTC
in winter and 13:00 UTC in summer.
"""

from __future__ import annotations

import inspect
import os
import re
import tomllib
from datetime import datetime, timedelta, timezone

import modal
import pytest
from cronsim import CronSim
from modal.server import ServerAutoscalerManager
from pydantic import (
    ValidationError,
)

from infra.runtime import schedule
from infra.runtime.deployment import Scaling, Window
from infra.runtime.model import RESOLVED
from infra.runtime.schedule import Floor
from tests.conftest import REPO

UTC = timezone.utc
NY = "America/New_York"
WRITE_DOCS = bool(os.environ.get("INFRA_WRITE_DOCS"))  # read at import: tests run with INFRA_* cleared
DOC = REPO / "docs" / "schedule.md"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def W(name: str, start: str, end: str, timezone: str, min_containers: int, **floor) -> Window:  # noqa: N802
    """A window, positionally for short tests, and unchecked: these tests call the checks themselves."""
    return Window.model_construct(name=name, start=start, end=end, timezone=timezone, min_containers=min_containers,
                                  **floor)


def business_hours(**floor) -> Window:
    return W("business-hours", "0 9 * * MON-FRI", "0 17 * * MON-FRI", NY, **({"min_containers": 1} | floor))


BASE = Scaling(min_containers=0, max_containers=4)


# ---------------------------------------------------------------------------- resolution at chosen instants


@pytest.mark.parametrize(
    ("instant", "in_window"),
    [
        (utc(2026, 1, 16, 13, 59, 59), False),  # Friday 08:59:59 EST
        (utc(2026, 1, 16, 14, 0), True),  # 09:00 EST: the start is inside (half-open window)
        (utc(2026, 1, 16, 21, 59, 59), True),  # 16:59:59
        (utc(2026, 1, 16, 22, 0), False),  # 17:00: the end is outside
        (utc(2026, 1, 17, 15, 0), False),  # Saturday 10:00
        (utc(2026, 1, 18, 15, 0), False),  # Sunday 10:00
        (utc(2026, 1, 19, 15, 0), True),  # Monday 10:00
        (utc(2026, 7, 15, 13, 0), True),  # a summer Wednesday 09:00 EDT = 13:00 UTC
        (utc(2026, 7, 15, 12, 59), False),  # 08:59 EDT
    ],
)
def test_business_hours_at_chosen_instants(instant, in_window):
    floor = schedule.floor_at(instant, [business_hours(min_containers=2)], BASE)
    if in_window:
        assert floor == Floor(2, 4, None, ("business-hours",))
        assert floor.cause == "window 'business-hours'"
    else:
        assert floor == Floor(0, 4, None, ())
        assert floor.cause == "base scaling"


def _spans(windows, start, end):
    """(from, to) UTC intervals in which some window is active, walking boundaries with next_change."""
    spans, t = [], start
    while True:
        change = schedule.next_change(t, windows, BASE)
        if change is None or change.when >= end:
            return spans
        if change.floor.windows:
            opened = change.when
        else:
            spans.append((opened, change.when))
        t = change.when


def test_spring_forward_keeps_the_window_at_eight_hours_and_moves_its_utc_boundaries():
    spans = _spans([business_hours()], utc(2026, 3, 6, 0), utc(2026, 3, 10, 0))
    assert spans == [
        (utc(2026, 3, 6, 14), utc(2026, 3, 6, 22)),  # Friday, EST (UTC-5)
        (utc(2026, 3, 9, 13), utc(2026, 3, 9, 21)),  # Monday, EDT (UTC-4): one hour earlier in UTC
    ]
    assert {end - start for start, end in spans} == {timedelta(hours=8)}


def test_fall_back_keeps_the_window_at_eight_hours_and_moves_its_utc_boundaries():
    spans = _spans([business_hours()], utc(2026, 10, 30, 0), utc(2026, 11, 3, 0))
    assert spans == [
        (utc(2026, 10, 30, 13), utc(2026, 10, 30, 21)),  # Friday, EDT
        (utc(2026, 11, 2, 14), utc(2026, 11, 2, 22)),  # Monday, EST
    ]
    assert {end - start for start, end in spans} == {timedelta(hours=8)}


def test_next_change_across_a_daylight_saving_change():
    """Saturday before the change (EST) -> Monday 09:00 EDT, which is 13:00 UTC, not 14:00."""
    change = schedule.next_change(utc(2026, 3, 7, 17), [business_hours(min_containers=2)], BASE)
    assert change.when == utc(2026, 3, 9, 13)
    assert change.floor == Floor(2, 4, None, ("business-hours",))
    assert change.cause == "window 'business-hours' starts"
    assert change.describe() == (
        "2026-03-09 13:00 UTC (Mon 2026-03-09 09:00 America/New_York): window 'business-hours' starts "
        "-> window 'business-hours' (min_containers=2, max_containers=4, buffer_containers=0)"
    )
    back = schedule.next_change(change.when, [business_hours(min_containers=2)], BASE)
    assert (back.when, back.floor.cause, back.cause) == (utc(2026, 3, 9, 21), "base scaling",
                                                         "window 'business-hours' ends")


def test_window_spanning_midnight():
    night = W("night", "0 22 * * *", "0 6 * * *", "Europe/Paris", min_containers=0)
    base = Scaling(min_containers=1, max_containers=4)  # a window may also lower the floor
    paris = lambda d, h, m=0: datetime(2026, 1, d, h, m, tzinfo=schedule.ZoneInfo("Europe/Paris"))  # noqa: E731
    assert schedule.floor_at(paris(14, 21, 59), [night], base).min_containers == 1
    assert schedule.floor_at(paris(14, 22), [night], base).cause == "window 'night'"
    assert schedule.floor_at(paris(14, 23, 30), [night], base).min_containers == 0
    assert schedule.floor_at(paris(15, 3), [night], base).min_containers == 0  # after midnight, still in
    assert schedule.floor_at(paris(15, 5, 59), [night], base).min_containers == 0
    assert schedule.floor_at(paris(15, 6), [night], base).min_containers == 1


def test_weekend_window():
    weekend = W("weekend", "0 18 * * FRI", "0 8 * * MON", NY, min_containers=0)
    base = Scaling(min_containers=1)
    ny = lambda d, h: datetime(2026, 1, d, h, tzinfo=schedule.ZoneInfo(NY))  # noqa: E731  (Jan 16 2026: Friday)
    assert [schedule.floor_at(ny(d, h), [weekend], base).min_containers for d, h in
            [(16, 17), (16, 18), (17, 12), (18, 23), (19, 7), (19, 8), (21, 12)]] == [1, 0, 0, 0, 0, 1, 1]


def test_overlapping_windows_highest_floor_wins_field_by_field_in_any_order():
    base = Scaling(min_containers=1, max_containers=4, buffer_containers=None)
    a = W("day", "0 8 * * *", "0 18 * * *", NY, min_containers=3, max_containers=4, buffer_containers=0)
    b = W("launch", "0 12 * * *", "0 20 * * *", NY, min_containers=2, max_containers=10, buffer_containers=2)
    ny = lambda h: datetime(2026, 5, 5, h, tzinfo=schedule.ZoneInfo(NY))  # noqa: E731
    both = Floor(3, 10, 2, ("day", "launch"))
    assert schedule.floor_at(ny(13), [a, b], base) == both
    assert schedule.floor_at(ny(13), [b, a], base).same_values(both)  # the file's order does not matter
    assert schedule.floor_at(ny(13), [a, b], base).cause == "windows 'day', 'launch'"
    assert schedule.floor_at(ny(9), [a, b], base) == Floor(3, 4, 0, ("day",))
    assert schedule.floor_at(ny(19), [a, b], base) == Floor(2, 10, 2, ("launch",))
    assert schedule.floor_at(ny(21), [a, b], base) == Floor(1, 4, None, ())
    # A window without a cap takes the base's; an unbounded base then beats every cap.
    c = W("open", "0 12 * * *", "0 20 * * *", NY, min_containers=1)
    assert schedule.floor_at(ny(13), [a, c], Scaling(min_containers=0)).max_containers is None


def test_when_start_and_end_fire_together_the_end_wins():
    w = W("weekdays", "0 9 * * *", "0 9 * * MON", "UTC", min_containers=1)
    assert schedule.floor_at(utc(2026, 1, 19, 10), [w], BASE).min_containers == 0  # Monday 09:00: both fired
    assert schedule.floor_at(utc(2026, 1, 20, 10), [w], BASE).min_containers == 1  # Tuesday
    assert schedule.floor_at(utc(2026, 1, 25, 23), [w], BASE).min_containers == 1  # Sunday night: still open


def test_next_boundary_versus_next_change():
    """Back-to-back windows with the same floor: a boundary the schedule fires at, but no change of values."""
    morning = W("morning", "0 8 * * *", "0 12 * * *", "UTC", min_containers=2)
    afternoon = W("afternoon", "0 12 * * *", "0 18 * * *", "UTC", min_containers=2)
    boundary = schedule.next_boundary(utc(2026, 1, 5, 10), [morning, afternoon], BASE)
    assert (boundary.when, boundary.cause) == (utc(2026, 1, 5, 12), "window 'morning' ends, window 'afternoon' starts")
    assert boundary.floor == Floor(2, 4, None, ("afternoon",))
    change = schedule.next_change(utc(2026, 1, 5, 10), [morning, afternoon], BASE)
    assert (change.when, change.floor.cause) == (utc(2026, 1, 5, 18), "base scaling")


def test_stepping_boundary_to_boundary_agrees_with_resolving_each_instant():
    """The forward walk (next_change, warm_hours) and the backward look (floor_at) are two code paths:
    every 15 minutes for two weeks around the spring change, in two zones, they must agree."""
    windows = [
        business_hours(min_containers=2),
        W("night", "0 22 * * *", "0 6 * * *", "Europe/Paris", min_containers=1, buffer_containers=1),
        W("weekend", "0 18 * * FRI", "0 8 * * MON", NY, min_containers=0, max_containers=2),
    ]
    start, end = utc(2026, 3, 2), utc(2026, 3, 16)
    changes = list(schedule._timeline(windows, BASE, start, end))
    floor, k, t = schedule.floor_at(start, windows, BASE), 0, start
    while t < end:
        while k < len(changes) and changes[k].when <= t:
            floor, k = changes[k].floor, k + 1
        assert schedule.floor_at(t, windows, BASE) == floor, t
        t += timedelta(minutes=15)
    assert len(changes) > 30


def test_no_windows_means_base_scaling_and_nothing_to_schedule():
    assert schedule.floor_at(utc(2026, 1, 5), [], BASE) == Floor(0, 4, None)
    assert schedule.next_change(utc(2026, 1, 5), [], BASE) is None
    assert schedule.next_boundary(utc(2026, 1, 5), [], BASE) is None
    assert schedule.boundaries([]) == ()


def test_instants_without_a_time_zone_are_refused():
    with pytest.raises(ValueError, match="has no time zone; pass an aware datetime"):
        schedule.floor_at(datetime(2026, 1, 5, 9), [business_hours()], BASE)


# ---------------------------------------------------------------------------- the cron triggers to deploy


def _fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    out, it = [], CronSim(expr, start.astimezone(schedule.ZoneInfo(tz)))
    while (fire := next(it).astimezone(UTC)) < end:
        out.append(fire)
    return out


def test_boundaries_merge_hours_of_one_zone_and_fire_at_exactly_the_same_instants():
    windows = [
        business_hours(),
        W("eu", "0 9 * * MON-FRI", "0 17 * * MON-FRI", "Europe/Paris", min_containers=1),
        W("saturday", "0 10 * * SAT", "0 14 * * SAT", NY, min_containers=1),
        W("every-other-hour", "0 8-16/2 * * SUN", "30 9 * * SUN", NY, min_containers=1),
    ]
    got = schedule.boundaries(windows)
    assert [(b.cron, b.timezone, b.events) for b in got] == [
        ("0 9,17 * * MON-FRI", NY, ("business-hours start", "business-hours end")),
        ("0 9,17 * * MON-FRI", "Europe/Paris", ("eu start", "eu end")),
        ("0 10,14 * * SAT", NY, ("saturday start", "saturday end")),
        ("0 8-16/2 * * SUN", NY, ("every-other-hour start",)),  # a step in the hour field is not merged
        ("30 9 * * SUN", NY, ("every-other-hour end",)),
    ]
    # One trigger per Boundary fires exactly when the windows' own expressions do (two months, DST included).
    start, end = utc(2026, 2, 20), utc(2026, 4, 20)
    wanted = sorted({(f, w.timezone) for w in windows for e in (w.start, w.end)
                     for f in _fires(e, w.timezone, start, end)})
    fired = sorted({(f, b.timezone) for b in got for f in _fires(b.cron, b.timezone, start, end)})
    assert fired == wanted
    for b in got:  # the real client accepts each as a schedule
        assert modal.Cron(b.cron, timezone=b.timezone).proto_message.cron.cron_string == b.cron


# ---------------------------------------------------------------------------- cost


def test_cost_business_hours_one_two_gpu_h100_replica():
    """Mon-Fri 09:00-17:00 New York, one replica of 2 x H100 at $3.95 per GPU-hour and nothing else (CPU and memory
    rates set to 0, no region: infra/control/costs.py prices those; tests/test_costs.py checks them).

    By hand:
      week:        5 days x 8 h = 40 replica-hours -> x 2 GPUs = 80 GPU-hours -> x $3.95 = $316.00
      always-warm: 7 x 24 = 168 replica-hours -> 336 GPU-hours -> $1,327.20
      30 days from Monday 2026-03-02 00:00 EST (through the daylight-saving change of March 8, which
      leaves every 09:00-17:00 at 8 hours): March 2-31 has 22 weekdays -> 176 replica-hours
      -> 352 GPU-hours -> $1,390.40; always-warm 720 h -> 1,440 GPU-hours -> $5,688.00.
    """
    from infra.control import costs

    gpus_only = costs.Rates(costs.TABLE, costs.TABLE_SOURCE, {"H100": (3.95, "test"), "cpu": (0.0, "test"),
                                                              "memory": (0.0, "test")})
    replica = costs.price(costs.Container("H100!", 2, 0.125, 128, None), gpus_only)
    assert replica.usd == 7.9
    start = schedule.start_of_week(utc(2026, 3, 4, 12), NY)
    assert start == utc(2026, 3, 2, 5)  # Monday 00:00 EST
    cost = costs.scheduled(replica, [business_hours()], BASE, start)
    assert cost.model_dump() == {
        "from": "2026-03-02T05:00:00+00:00",
        "usd_per_replica_hour": 7.9,
        "peak_min_containers": 1,
        "per_week": {
            "scheduled": {"replica_hours": 40.0, "gpu_hours": 80.0, "usd": 316.0},
            "always_warm": {"replica_hours": 168, "gpu_hours": 336, "usd": 1327.2},
        },
        "per_30_days": {
            "scheduled": {"replica_hours": 176.0, "gpu_hours": 352.0, "usd": 1390.4},
            "always_warm": {"replica_hours": 720, "gpu_hours": 1440, "usd": 5688.0},
        },
    }


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        # Monday noon to Monday noon in New York (167 hours: the clocks go forward on Sunday March 8):
        # seven nights of 22:00-06:00, of which the night of March 7-8 lasts 7 hours: 6 x 8 + 7.
        (utc(2026, 3, 2, 17), utc(2026, 3, 9, 16), 55),
        # 169 hours: the night of October 31-November 1 lasts 9 hours: 6 x 8 + 9.
        (utc(2026, 10, 26, 16), utc(2026, 11, 2, 17), 57),
        (utc(2026, 1, 5, 17), utc(2026, 1, 12, 17), 56),  # an ordinary week
        # The absolute week from Monday 00:00 EST ends at Monday 01:00 EDT: 6 + 47 + 3.
        (utc(2026, 3, 2, 5), utc(2026, 3, 9, 5), 56),
    ],
)
def test_warm_hours_are_exact_across_daylight_saving_changes(start, end, hours):
    night = W("night", "0 22 * * *", "0 6 * * *", NY, min_containers=1)
    assert schedule.warm_hours([night], BASE, start, end) == hours


def test_warm_hours_count_the_base_outside_windows_and_only_min_containers():
    base = Scaling(min_containers=1, buffer_containers=3)  # buffers run only under traffic: not counted
    w = business_hours(min_containers=3)
    week = utc(2026, 1, 5, 5)
    assert schedule.warm_hours([w], base, week, week + timedelta(days=7)) == 40 * 3 + (168 - 40) * 1


# ---------------------------------------------------------------------------- apply (the scheduled function's body)


class FakeAutoscaler:
    """Modal's Server autoscaler override, as `_ServerAutoscalerManager.update` documents it: a parameter
    left out keeps its value; None means 0 for min and buffer and no cap for max; a deploy resets to static."""

    def __init__(self, static: dict):
        self.static = dict(static)
        self.values = dict(static)
        self.calls: list[dict] = []

    def deploy(self):
        self.values = dict(self.static)

    def update(self, **kwargs):
        inspect.signature(ServerAutoscalerManager.update).bind(None, **kwargs)  # the real API's parameters
        self.calls.append(kwargs)
        for key, value in kwargs.items():
            self.values[key] = (value or 0) if key != "max_containers" else value
        return self.values


def test_apply_sets_the_window_floor_and_restores_every_base_value_after_it():
    base = Scaling(min_containers=0, max_containers=2, buffer_containers=None)
    w = business_hours(min_containers=2, max_containers=6, buffer_containers=1)
    modal_side = FakeAutoscaler({"min_containers": 0, "max_containers": 2, "buffer_containers": 0})
    lines: list[str] = []

    floor = schedule.apply(utc(2026, 1, 16, 14, 0, 2), [w], base, modal_side.update, target="sglang-x/server",
                           log=lines.append)
    assert floor == Floor(2, 6, 1, ("business-hours",))
    assert modal_side.values == {"min_containers": 2, "max_containers": 6, "buffer_containers": 1}
    assert lines == [
        "sglang-x/server: set min_containers=2, max_containers=6, buffer_containers=1 (window 'business-hours', "
        "at 2026-01-16 14:00 UTC (Fri 2026-01-16 09:00 America/New_York)); next boundary 2026-01-16 22:00 UTC "
        "(Fri 2026-01-16 17:00 America/New_York): window 'business-hours' ends -> base scaling "
        "(min_containers=0, max_containers=2, buffer_containers=0)"
    ]

    schedule.apply(utc(2026, 1, 16, 22, 0, 1), [w], base, modal_side.update, log=lines.append)
    assert modal_side.values == {"min_containers": 0, "max_containers": 2, "buffer_containers": 0}  # cap restored too


def test_apply_is_idempotent_and_repairs_a_deploy_reset():
    w = business_hours(min_containers=2)
    modal_side = FakeAutoscaler({"min_containers": 0, "max_containers": 4, "buffer_containers": 0})
    at = utc(2026, 1, 14, 15)  # Wednesday 10:00 EST
    for _ in range(3):
        schedule.apply(at, [w], BASE, modal_side.update, log=lambda line: None)
    assert modal_side.calls == [{"min_containers": 2, "max_containers": 4, "buffer_containers": None}] * 3
    modal_side.deploy()  # Modal resets overrides on deploy...
    assert modal_side.values["min_containers"] == 0
    # ...and apply repairs it
    schedule.apply(at + timedelta(minutes=5), [w], BASE, modal_side.update, log=lambda line: None)
    assert modal_side.values["min_containers"] == 2


def test_apply_treats_a_trigger_just_before_a_boundary_as_that_boundary():
    w = business_hours(min_containers=2)
    calls: list[dict] = []
    nine = utc(2026, 1, 16, 14)
    schedule.apply(nine - timedelta(seconds=10), [w], BASE, lambda **kw: calls.append(kw), log=lambda line: None)
    schedule.apply(nine - timedelta(minutes=5), [w], BASE, lambda **kw: calls.append(kw), log=lambda line: None)
    assert [c["min_containers"] for c in calls] == [2, 0]


def test_apply_logs_to_stdout_by_default(capsys):
    schedule.apply(utc(2026, 1, 17, 12), [business_hours()], BASE, lambda **kw: None)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "set min_containers=0" in out and "(base scaling, at 2026-01-17 12:00 UTC)" in out


def test_who_set_the_values_read_back_from_modal():
    w = business_hours(min_containers=2)
    inside, outside = utc(2026, 1, 14, 15), utc(2026, 1, 14, 23)
    assert schedule.who_set(inside, [w], BASE, 2, 4, None) == "schedule"
    assert schedule.who_set(inside, [w], BASE, 0, 4, 0) == "deploy"  # the floor was not applied after a deploy
    assert schedule.who_set(inside, [w], BASE, 3, 4, 0) == "override"  # invoke scale, until the next boundary
    assert schedule.who_set(outside, [w], BASE, 0, 4, None) == "schedule"
    assert schedule.who_set(outside, [], BASE, 0, 4, None) == "deploy"


# ---------------------------------------------------------------------------- validation


NOW = utc(2026, 3, 1)  # the next Feb 29 is in 2028


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 8 * *", "a window boundary is a cron expression of 5 fields 'minute hour day-of-month month day-of-week' "
                    "(got 4), e.g. '0 8 * * MON-FRI'"),
        ("0 0 8 * * MON", "(got 6)"),
        ("0 25 * * *", "not a valid cron expression (Bad hour), e.g. '0 8 * * MON-FRI'"),
        ("0 8 * * MONDAY", "the day-of-week field has 'MONDAY'; allowed in each field: numbers, '*', ',', '-', '/' "
                           "and, for month and day-of-week, three-letter names (JAN-DEC, SUN-SAT); extensions such as "
                           "L, W, # and ? are left out because schedulers read them differently"),
        ("0 0 L * *", "the day-of-month field has 'L'"),
        ("0 8 * * MON#1", "the day-of-week field has '#'"),
        ("0 8 ? * MON", "the day-of-month field has '?'"),
        ("*/15 8 * * *", "the minute field must be one number (0-59): a window boundary fires at most once an hour"),
        ("0 8 1 * MON", "restricts both day-of-month and day-of-week, which cron joins with OR and some schedulers "
                        "with AND; restrict only one of them"),
        ("0 0 31 2 *", "never fires: no month in '2' has day '31'"),
    ],
)
def test_cron_syntax_messages(expr, message):
    with pytest.raises(ValueError) as err:
        schedule.check_cron(expr)
    assert message in str(err.value)


def test_cron_is_normalised():
    assert schedule.check_cron("  0 8  * * mon-fri ") == "0 8 * * MON-FRI"
    assert schedule.explain("0 8 * * MON-FRI") == "At 08:00 on Monday through Friday"


def test_unknown_time_zone():
    for name in ("America/Gotham", "../etc/passwd", ""):
        with pytest.raises(ValueError, match=r"^unknown time zone; allowed: an IANA name such as 'America/New_York'"):
            schedule.check_timezone(name)
    assert schedule.check_timezone("Asia/Kolkata") == "Asia/Kolkata"


def _refusal(window: Window, base=BASE, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        schedule.check_windows([window], base, now=NOW, **kwargs)
    return str(err.value)


@pytest.mark.parametrize(
    ("window", "kwargs", "message"),
    [
        (business_hours(min_containers=5), {},
         "window 'business-hours': min_containers = 5 exceeds scaling.max_containers = 4; allowed: at most 4"),
        (business_hours(min_containers=3, max_containers=2), {},
         "window 'business-hours': min_containers = 3 exceeds its max_containers = 2; allowed: at most 2"),
        (business_hours(min_containers=1), {"allow_warm_replicas": False},
         "window 'business-hours': min_containers = 1 but this environment forbids warm replicas "
         "(allow_warm_replicas = false); allowed: min_containers = 0"),
        (W("leap", "0 0 29 2 *", "0 0 1 3 *", "UTC", 1), {},
         "window 'leap': start '0 0 29 2 *' does not fire within a year; a window must recur at least yearly"),
        (W("forever", "0 9 * * *", "0 17 29 2 *", "UTC", 1), {},
         "window 'forever': end '0 17 29 2 *' does not fire within a year of 2026-03-01 00:00 UTC, so the window "
         "would not end; a window must end within a year of every start"),
        (W("same", "0 9 * * *", "0 9 * * *", "UTC", 1), {},
         "window 'same': start and end are the same expression ('0 9 * * *'), so the window is never active"),
        (W("bad-start", "0 9 * * FUNDAY", "0 17 * * *", "UTC", 1), {},
         "window 'bad-start': start = '0 9 * * FUNDAY': the day-of-week field has 'FUNDAY'"),
        (W("bad-zone", "0 9 * * *", "0 17 * * *", "Mars/Olympus_Mons", 1), {},
         "window 'bad-zone': unknown time zone; allowed: an IANA name"),
        (W("night shift", "0 9 * * *", "0 17 * * *", "UTC", 1), {},
         "window 'night shift': a window name is letters, digits, '.', '_' or '-'"),
        (W("skipped", "30 2 * * *", "0 6 * * *", NY, 1), {},
         "window 'skipped': start '30 2 * * *' fires at 02:30 in America/New_York, a local time that is skipped on "
         "2026-03-08 (clocks change between 02:00 and 03:00), and schedulers disagree on such times; choose a "
         "boundary outside that hour, or timezone = 'UTC'"),
        (W("repeated", "0 22 * * *", "30 1 * * *", NY, 1), {},
         "window 'repeated': end '30 1 * * *' fires at 01:30 in America/New_York, a local time that is repeated on "
         "2026-11-01 (clocks change between 01:00 and 02:00)"),
        (W("hourly", "0 * * * SUN", "0 23 * * SUN", NY, 1), {},
         "window 'hourly': start '0 * * * SUN' fires at 02:00 in America/New_York, a local time that is skipped"),
    ],
)
def test_window_validation_messages(window, kwargs, message):
    assert message in _refusal(window, **kwargs)


def test_valid_windows_pass_and_come_back_normalised():
    windows = [
        W("business-hours", "0 8 * * mon-fri", "0 18 * * MON-FRI", NY, 2),
        W("hourly-in-utc", "0 * * * SUN", "0 23 * * SUN", "UTC", 1),  # UTC has no clock changes
        W("december", "0 0 1 12 *", "0 0 1 1 *", "Europe/Paris", 1, max_containers=4),
    ]
    checked = schedule.check_windows(windows, Scaling(min_containers=0, max_containers=None), now=NOW)
    assert checked[0].start == "0 8 * * MON-FRI"
    assert checked[1:] == tuple(windows[1:])


def test_duplicate_window_names():
    with pytest.raises(ValueError, match="^window names must be unique; 'business-hours' appears more than once$"):
        schedule.check_windows([business_hours(), business_hours()], BASE, now=NOW)


# ---------------------------------------------------------------------------- wiring: TOML, pydantic, JSON, packaging


PROPOSED_TOML = """
[scaling]
min_containers = 0
max_containers = 4

[[scaling.schedule]]
name = "business-hours"
start = "0 8 * * MON-FRI"
end = "0 18 * * MON-FRI"
timezone = "America/New_York"
min_containers = 2
"""


def test_the_toml_loads_through_the_deployments_own_models():
    scaling = Scaling(**tomllib.loads(PROPOSED_TOML)["scaling"])
    windows = scaling.schedule
    assert windows == [W("business-hours", "0 8 * * MON-FRI", "0 18 * * MON-FRI", NY, 2)]
    assert schedule.floor_at(utc(2026, 1, 14, 15), windows, scaling).min_containers == 2  # the section is a base


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        (("start", "0 8 * * MONDAY"), ("schedule", 0, "start"), "the day-of-week field has 'MONDAY'"),
        (("timezone", "Eastern"), ("schedule", 0, "timezone"), "unknown time zone"),
        (("min_containers", 9), (), "window 'business-hours': min_containers = 9 exceeds scaling.max_containers = 4"),
        (("min_contianers", 1), ("schedule", 0, "min_contianers"), "Extra inputs are not permitted"),
    ],
)
def test_bad_schedule_settings_fail_with_one_located_message(change, loc, message):
    data = tomllib.loads(PROPOSED_TOML)["scaling"]
    data["schedule"][0][change[0]] = change[1]
    with pytest.raises(ValidationError) as err:
        Scaling(**data)
    first = err.value.errors()[0]
    assert tuple(first["loc"]) == loc
    assert message in first["msg"]


def test_a_dev_environment_forbids_warm_windows():
    data = tomllib.loads(PROPOSED_TOML)["scaling"] | {"allow_warm_replicas": False}
    with pytest.raises(ValidationError, match=r"forbids warm replicas \(allow_warm_replicas = false\)"):
        Scaling(**data)


def test_windows_travel_to_the_container_as_json():
    windows = [business_hours(min_containers=2, max_containers=3), W("night", "0 22 * * *", "0 6 * * *", "UTC", 0)]
    again = Scaling(schedule=windows).model_dump_json()
    assert Scaling.model_validate_json(again, context=RESOLVED).schedule == windows


def test_laptop_and_scheduler_image_pin_the_same_cron_library():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    cron_pin = next(p for p in schedule.PACKAGES if p.startswith("cronsim=="))
    assert cron_pin in dependencies
    from importlib.metadata import version

    assert version("cronsim") == cron_pin.split("==")[1]


# ---------------------------------------------------------------------------- the documented example


def _example_cost_table() -> str:
    """docs/schedule.md's cost table, from the code: the example prod schedule for each recipe, each replica priced
    by prod's cost model (infra/control/costs.py: GPUs, CPU and memory at the offline table, x 1.75 in us-east)."""
    from infra.control import costs, plan
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings
    from infra.runtime.recipes import RECIPES

    windows = [W("business-hours", "0 8 * * MON-FRI", "0 18 * * MON-FRI", NY, min_containers=1)]
    base = Scaling(min_containers=0, max_containers=4)
    start = schedule.start_of_week(utc(2026, 3, 4), NY)
    rows = [
        "| recipe | replica | per week: scheduled / always-warm | per 30 days: scheduled / always-warm |",
        "|---|---|---|---|",
    ]
    for name, recipe in RECIPES.items():
        gpu_type, gpu_count = recipe.gpu_type, recipe.gpu_count
        replica = plan.replica_cost(resolve(load_settings("prod"), name), costs.Rates(costs.TABLE, costs.TABLE_SOURCE))
        c = costs.scheduled(replica, windows, base, start).model_dump()
        week, month = c["per_week"], c["per_30_days"]
        rows.append(
            f"| `{name}` | {gpu_count}×{gpu_type.rstrip('!')}, ${replica.usd:,.2f}/h "
            f"| {week['scheduled']['gpu_hours']:g} GPU-h, ${week['scheduled']['usd']:,.2f} / "
            f"{week['always_warm']['gpu_hours']:g} GPU-h, ${week['always_warm']['usd']:,.2f} "
            f"| {month['scheduled']['gpu_hours']:g} GPU-h, ${month['scheduled']['usd']:,.2f} / "
            f"{month['always_warm']['gpu_hours']:g} GPU-h, ${month['always_warm']['usd']:,.2f} |"
        )
    return "\n".join(rows)


def test_documented_example_costs_are_what_the_code_computes():
    begin, end = "<!-- cost-table: generated by tests/test_schedule.py -->", "<!-- end cost-table -->"
    text = DOC.read_text()
    block = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    assert block, f"{DOC} lacks the cost table markers"
    table = _example_cost_table()
    if WRITE_DOCS:
        DOC.write_text(text.replace(block.group(0), f"{begin}\n{table}\n{end}"))
    else:
        drifted = "docs/schedule.md drifted: INFRA_WRITE_DOCS=1 python -m pytest tests/test_schedule.py"
        assert block.group(1) == table, drifted
