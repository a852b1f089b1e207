"""Schedule advice from the bill: which hours of the week a warm floor pays for itself, as `[[scaling.schedule]]`.

Modal's hourly bill for the recipe's server, divided by one replica's hourly price, is the replica-hours it ran;
averaged per hour of the week over the last N whole weeks (UTC), it is that hour's *occupancy* (0.8: a replica ran 48
minutes of it on a typical week). Where it is at least `OCCUPANCY`, a warm replica costs at most 1/OCCUPANCY times
what the hour already costs and removes every cold start users met in it: the floor "pays for itself". Such hours
become windows, days with the same hours sharing one (MON-FRI 08:00-18:00). Beside the TOML it states the warm hours
per week, the standing cost saved against always warm (costs.py's basis), and how many recorded cold starts fell
outside the windows (users would still meet them) or inside (absorbed).

It refuses, in one line, less history than it needs: no billed hour, a server billed for less than the N weeks, or
one with a replica up every hour (kept warm around the clock, its bill cannot tell which hours users need).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from infra.control import costs
from infra.control.costs import Shown
from infra.runtime import schedule
from infra.runtime.errors import UserError

OCCUPANCY = 0.5  # a warm floor at most doubles an hour's cost where a replica ran half of it anyway
MIN_WEEKS = 2  # one week is one sample of each hour: a single busy Monday would make a window
DEFAULT_WEEKS = 4
ALWAYS_ON = 0.99  # an hour with at least this many replica-hours had a replica up throughout
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


class NotEnoughHistory(UserError):
    """Advice refused: the history cannot support it (one line saying what it has and what it needs)."""


class Advised(Shown):
    """One proposed window: on `days`, from `start_hour` to `end_hour` (24: midnight after), UTC."""

    days: tuple[int, ...]  # 0 = Monday
    start_hour: int
    end_hour: int

    @property
    def name(self) -> str:
        return f"advised-{_day_text(self.days).lower().replace(',', '-')}-{self.start_hour:02d}-{self.end_hour:02d}"

    def crons(self) -> tuple[str, str]:
        start = f"0 {self.start_hour} * * {_day_text(self.days)}"
        if self.end_hour == 24:
            return start, f"0 0 * * {_day_text(tuple((d + 1) % 7 for d in self.days))}"
        return start, f"0 {self.end_hour} * * {_day_text(self.days)}"

    def window(self) -> dict:
        start, end = self.crons()
        return {"name": self.name, "start": start, "end": end, "timezone": "UTC", "min_containers": 1}

    def covers(self, instant: datetime) -> bool:
        t = instant.astimezone(UTC)
        return t.weekday() in self.days and self.start_hour <= t.hour < self.end_hour


class Advice(Shown):
    """What `status --advise` proposes for one recipe, and what the proposal would have done to the history."""

    recipe: str
    since: datetime
    until: datetime
    weeks: int
    usd_per_replica_hour: float
    occupancy: tuple[float, ...]  # per hour of the week, Monday 00:00 UTC first
    windows: tuple[Advised, ...]
    warm_hours_per_week: int
    standing_saved_usd_per_week: float
    standing_saved_usd_per_30_days: float
    starts: int  # recorded cold starts in the history
    starts_outside: int  # of those, outside the proposed windows: users would still have met them

    def toml(self) -> str:
        """The windows as TOML to paste into environments/<env>.toml (with min_containers = 0 under [scaling])."""
        out = []
        for w in self.windows:
            out += ["[[scaling.schedule]]", *(f"{k} = {json.dumps(v)}" for k, v in w.window().items()), ""]
        return "\n".join(out).rstrip()

    def lines(self) -> list[str]:
        head = (f"  schedule advice for {self.recipe} from {self.weeks} weeks of the bill ({self.since:%Y-%m-%d} to "
                f"{self.until:%Y-%m-%d} UTC; a window where a replica ran >= {OCCUPANCY:.0%} of the hour):")
        if not self.windows:
            return [head, "    no hour of the week reached it: no warm floor pays for itself; keep min_containers = 0"]
        return [head,
                f"    warm {self.warm_hours_per_week} h a week instead of {costs.HOURS_PER_WEEK}: "
                f"${self.standing_saved_usd_per_week:,.2f} a week (${self.standing_saved_usd_per_30_days:,.2f} per "
                f"30 days) less standing cost than always warm, at ${self.usd_per_replica_hour:,.2f} per replica-hour",
                f"    cold starts in the history: {self.starts}; under the proposal users would still have met "
                f"{self.starts_outside} (outside the windows), {self.starts - self.starts_outside} absorbed",
                "    paste into the environment's file, with min_containers = 0 under [scaling]:",
                *(f"      {line}" for line in self.toml().splitlines())]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude={"occupancy"}) | {
            "toml": self.toml(), "schedule": [w.window() for w in self.windows]}


def history_period(now: datetime, weeks: int) -> tuple[datetime, datetime]:
    """The last `weeks` whole weeks (Monday 00:00 UTC to Monday 00:00 UTC) before `now`."""
    end = schedule.start_of_week(now)
    return end - timedelta(weeks=weeks), end


def advise(rows: Iterable[costs.BillRow], starts: Iterable[float], *, recipe: str, env: str, replica_usd: float,
           now: datetime, weeks: int = DEFAULT_WEEKS) -> Advice:
    """Advice from the recipe's server rows of Modal's billing report and its recorded starts (epoch seconds)."""
    if weeks < MIN_WEEKS:
        raise NotEnoughHistory(f"--weeks {weeks}: one sample per hour of the week per week is too few to tell a habit "
                               f"from a busy day; allowed: {MIN_WEEKS} weeks or more")
    since, until = history_period(now, weeks)
    server = {"env": env, "recipe": recipe, "role": "server"}.items()
    served = [r for r in rows if server <= r.tags.items() and since <= r.start < until]
    where = f"{env}/{recipe}'s server in Modal's billing report over the last {weeks} whole weeks (UTC)"
    if not served:
        raise NotEnoughHistory(f"no billed hour of {where}: advice needs {weeks} whole weeks of history; ask again "
                               f"once the server has run that long, or pass a shorter --weeks (at least {MIN_WEEKS})")
    first = min(r.start for r in served)
    if first >= since + timedelta(days=7):
        days = (until - first).total_seconds() / 86400
        raise NotEnoughHistory(f"{where}: billed from {first:%Y-%m-%d %H:%M} only, {days:.1f} days of the {weeks} "
                               f"weeks advice needs; ask again later or pass --weeks {max(MIN_WEEKS, int(days // 7))}")
    hourly: dict[datetime, float] = {}
    for r in served:
        hourly[r.start] = hourly.get(r.start, 0.0) + r.usd / replica_usd
    total_hours = weeks * costs.HOURS_PER_WEEK
    if len(hourly) == total_hours and min(hourly.values()) >= ALWAYS_ON:
        raise NotEnoughHistory(f"{where}: a replica ran in every one of its {total_hours} hours (kept warm around the "
                               "clock), so the bill cannot tell which hours users need; advise from weeks with "
                               "min_containers = 0")
    occupancy = [0.0] * costs.HOURS_PER_WEEK
    for hour, replica_hours in hourly.items():
        occupancy[hour.weekday() * 24 + hour.hour] += min(1.0, replica_hours) / weeks
    windows = _windows([o >= OCCUPANCY for o in occupancy])
    warm = sum(len(w.days) * (w.end_hour - w.start_hour) for w in windows)
    saved = (costs.HOURS_PER_WEEK - warm) * replica_usd
    starts = [datetime.fromtimestamp(s, UTC) for s in starts]
    starts = [s for s in starts if since <= s < until]
    outside = sum(1 for s in starts if not any(w.covers(s) for w in windows))
    return Advice(recipe=recipe, since=since, until=until, weeks=weeks, usd_per_replica_hour=round(replica_usd, 4),
                  occupancy=tuple(round(o, 4) for o in occupancy), windows=windows, warm_hours_per_week=warm,
                  standing_saved_usd_per_week=round(saved, 2),
                  standing_saved_usd_per_30_days=round(saved * costs.HOURS_PER_30_DAYS / costs.HOURS_PER_WEEK, 2),
                  starts=len(starts), starts_outside=outside)


def _windows(warm: Sequence[bool]) -> tuple[Advised, ...]:
    """Runs of warm hours per day, days with the same run merged; a run ends at midnight at the latest."""
    runs: dict[tuple[int, int], list[int]] = {}
    for day in range(7):
        for on, run in itertools.groupby(range(24), lambda hour: warm[day * 24 + hour]):
            if on:
                hours = list(run)
                runs.setdefault((hours[0], hours[-1] + 1), []).append(day)
    return tuple(Advised(days=tuple(days), start_hour=s, end_hour=e) for (s, e), days in sorted(runs.items()))


def _day_text(days: Sequence[int]) -> str:
    """(0, 1, 2, 3, 4) -> 'MON-FRI'; (0, 2) -> 'MON,WED'; runs of three or more days become ranges."""
    parts = []
    for _, run in itertools.groupby(enumerate(sorted(set(days))), lambda item: item[1] - item[0]):
        run_days = [d for _, d in run]
        parts += [f"{DAYS[run_days[0]]}-{DAYS[run_days[-1]]}"] if len(run_days) >= 3 else [DAYS[d] for d in run_days]
    return ",".join(parts)

