"""Warm capacity on a schedule: windows of time in which another warm floor holds (docs/schedule.md).

Pure (no Modal): which floor is in force at an instant and why, when it changes, which cron triggers apply it, and
the warm replica-hours it keeps. After KEDA's cron scaler: a window is active from a firing of `start` until the next
firing of `end`, both in its IANA `timezone` (when both fire at once the end wins), so windows over midnight or a
weekend need no special case. Outside every window the base `[scaling]` holds; overlapping windows take the highest
floor field by field, as Kubernetes does with several KEDA triggers, so the windows' order does not matter.

cronsim is imported inside the functions that need it: the server container imports this module to define the
scheduled functions and needs no cron library.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # the models this module computes with; deployment.py imports this one for its validators
    from infra.runtime.deployment import Scaling, Window

UTC = timezone.utc
# The scheduler image's packages: cronsim pinned as on the laptop (pyproject.toml), so `plan` predicts what the
# container decides; tzdata, the IANA database whatever time-zone files the base image ships.
PACKAGES = ("cronsim==2.8", "tzdata==2026.6")
HORIZON = timedelta(days=366)  # how far validation and `next_change` look: a window must recur within a year
# A trigger this early (clock skew between Modal's scheduler and the container) applies the coming boundary's floor.
EARLY_TRIGGER = timedelta(seconds=30)
BASE_CAUSE = "base scaling"
EXAMPLE_CRON = "0 8 * * MON-FRI"


@dataclass(frozen=True)
class Floor:
    """The autoscaler values in force, and which windows put them there (none: the base scaling)."""

    min_containers: int
    max_containers: int | None
    buffer_containers: int | None
    windows: tuple[str, ...] = ()

    @property
    def cause(self) -> str:
        if not self.windows:
            return BASE_CAUSE
        return ("window " if len(self.windows) == 1 else "windows ") + ", ".join(f"'{n}'" for n in self.windows)

    def autoscaler_settings(self) -> dict[str, int | None]:
        """Keyword arguments for `modal.Server.autoscaler.update`. All three, always: a parameter left out keeps its
        previous override, so leaving a window that raised `max_containers` must set the base value back (None: 0,
        and no Server-level cap for max)."""
        return {"min_containers": self.min_containers, "max_containers": self.max_containers,
                "buffer_containers": self.buffer_containers}

    def matches(self, min_containers: int | None, max_containers: int | None, buffer_containers: int | None) -> bool:
        """Whether autoscaler settings read back from Modal are this floor (None and 0 alike for min and buffer)."""
        return ((min_containers or 0) == self.min_containers and (max_containers or None) == self.max_containers
                and (buffer_containers or 0) == (self.buffer_containers or 0))

    def same_values(self, other: Floor) -> bool:
        return self.matches(other.min_containers, other.max_containers, other.buffer_containers)

    def describe(self) -> str:
        cap = "unbounded" if self.max_containers is None else self.max_containers
        return (f"min_containers={self.min_containers}, max_containers={cap}, "
                f"buffer_containers={self.buffer_containers or 0}")


@dataclass(frozen=True)
class Change:
    """A boundary: at `when` (UTC) the floor becomes `floor`, because of `cause` (e.g. "window 'x' starts")."""

    when: datetime
    floor: Floor
    cause: str
    timezone: str  # the zone of the (first) window whose boundary this is, for showing `when` to people

    def describe(self) -> str:
        return f"{show(self.when, self.timezone)}: {self.cause} -> {self.floor.cause} ({self.floor.describe()})"


@dataclass(frozen=True)
class Boundary:
    """One cron trigger a deployment must schedule: `modal.Cron(cron, timezone=timezone)`."""

    cron: str
    timezone: str
    events: tuple[str, ...]  # e.g. ("business-hours start", "business-hours end")


# ---------------------------------------------------------------------------- resolution


def floor_at(instant: datetime, windows: Sequence[Window], base: Scaling) -> Floor:
    """The floor in force at `instant` (an aware datetime) and why."""
    _require_aware(instant)
    return _combine([w for w in windows if _active_at(w, instant)], base)


def next_boundary(instant: datetime, windows: Sequence[Window], base: Scaling) -> Change | None:
    """The next boundary after `instant` (the scheduled function sets the floor, overriding any `invoke scale`)."""
    _require_aware(instant)
    return next(_timeline(windows, base, instant, instant + HORIZON), None)


def next_change(instant: datetime, windows: Sequence[Window], base: Scaling) -> Change | None:
    """The next instant after `instant` at which the floor's values change (within a year), or None."""
    _require_aware(instant)
    now = floor_at(instant, windows, base)
    return next((c for c in _timeline(windows, base, instant, instant + HORIZON) if not c.floor.same_values(now)), None)


def boundaries(windows: Sequence[Window]) -> tuple[Boundary, ...]:
    """The distinct cron triggers of this schedule, one `modal.Cron` each. Expressions of one zone that differ only in
    their hour are merged (`0 8 * * MON-FRI` + `0 18 * * MON-FRI` -> `0 8,18 * * MON-FRI`): free workspaces are said to
    be limited to a handful of crons. Pure string work: app definitions call it in every container."""
    groups: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
    for w in windows:
        for kind, expr in (("start", w.start), ("end", w.end)):
            fields = expr.upper().split()
            mergeable = len(fields) == 5 and re.fullmatch(r"[0-9,-]+", fields[1]) is not None
            key = (w.timezone, fields[0], *fields[2:]) if mergeable else (w.timezone, "", " ".join(fields))
            hours, events = groups.setdefault(key, ([], []))
            if mergeable:
                hours.extend(h for h in fields[1].split(",") if h not in hours)
            events.append(f"{w.name} {kind}")
    return tuple(Boundary(cron=" ".join([key[1], ",".join(sorted(hours, key=lambda h: int(h.split("-")[0]))),
                                         *key[2:]]) if hours else key[2],
                          timezone=key[0], events=tuple(events)) for key, (hours, events) in groups.items())


def apply(now: datetime, windows: Sequence[Window], base: Scaling, set_autoscaler: Callable[..., Any], *,
          target: str = "server", log: Callable[[str], Any] = print) -> Floor:
    """Set the floor in force now through `set_autoscaler` and log what and why: the scheduled Function's body, also
    run by deploy, promote and rollback once they land (a deploy resets Modal's autoscaler to the base scaling)."""
    _require_aware(now)
    at = now
    upcoming = next_boundary(now, windows, base)
    if upcoming is not None and upcoming.when - now <= EARLY_TRIGGER:
        at = upcoming.when
    floor = floor_at(at, windows, base)
    set_autoscaler(**floor.autoscaler_settings())
    following = next_boundary(at, windows, base)
    zone = {w.name: w.timezone for w in windows}[floor.windows[0]] if floor.windows else "UTC"
    line = f"{target}: set {floor.describe()} ({floor.cause}, at {show(at, zone)})"
    line += f"; next boundary {following.describe()}" if following else "; no scheduled boundary within a year"
    log(line)
    return floor


def who_set(now: datetime, windows: Sequence[Window], base: Scaling, min_containers: int | None,
            max_containers: int | None, buffer_containers: int | None) -> str:
    """Who set the autoscaler values read back from Modal: "schedule"; "deploy" (the last deploy's base scaling while
    the schedule wants others: the floor was not applied after it landed); or "override" (`invoke scale` or the
    dashboard, holding until `next_boundary`)."""
    if floor_at(now, windows, base).matches(min_containers, max_containers, buffer_containers):
        return "schedule" if windows else "deploy"
    if _combine([], base).matches(min_containers, max_containers, buffer_containers):
        return "deploy"
    return "override"


# ---------------------------------------------------------------------------- warm hours


def warm_hours(windows: Sequence[Window], base: Scaling, start: datetime, end: datetime) -> float:
    """Warm replica-hours (min_containers over [start, end), boundary to boundary). Buffer containers run only while
    the server has traffic, so they are not a standing cost."""
    _require_aware(start)
    total = timedelta(0)
    floor, since = floor_at(start, windows, base), start
    for change in _timeline(windows, base, start, end):
        total += (change.when - since) * floor.min_containers
        floor, since = change.floor, change.when
    total += (end - since) * floor.min_containers
    return total.total_seconds() / 3600


def start_of_week(instant: datetime, tz: str = "UTC") -> datetime:
    """Monday 00:00 in `tz` of the week holding `instant`, as UTC: a fixed start for cost figures."""
    local = instant.astimezone(ZoneInfo(tz))
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime(monday.year, monday.month, monday.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


# ---------------------------------------------------------------------------- validation
# Each check raises ValueError with one line: what is wrong and what is allowed. The field-level ones leave out the
# value (settings.py's report of a field validator names the source, the field and the value); the others name all.

_FIELD = re.compile(r"[0-9A-Za-z*,/-]+")
_NAMES = {"month": tuple("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()),
          "day-of-week": tuple("SUN MON TUE WED THU FRI SAT".split())}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_cron(expr: str) -> str:
    """A window boundary: five-field cron in the portable core every scheduler reads alike; returns it normalised."""
    from cronsim import CronSim, CronSimError

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"a window boundary is a cron expression of 5 fields 'minute hour day-of-month month day-of-week' "
            f"(got {len(fields)}), e.g. '{EXAMPLE_CRON}'")
    for name, value in zip(("minute", "hour", "day-of-month", "month", "day-of-week"), fields):
        words = [t for t in re.findall(r"[A-Za-z]+", value) if t.upper() not in _NAMES.get(name, ())]
        bad = [c for c in value if not _FIELD.fullmatch(c)] + words
        if bad:
            raise ValueError(
                f"the {name} field has {bad[0]!r}; allowed in each field: numbers, '*', ',', '-', '/' and, for "
                "month and day-of-week, three-letter names (JAN-DEC, SUN-SAT); extensions such as L, W, # and ? "
                "are left out because schedulers read them differently")
    if not fields[0].isdigit():
        raise ValueError(
            "the minute field must be one number (0-59): a window boundary fires at most once an hour, e.g. "
            f"'{EXAMPLE_CRON}'")
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            "restricts both day-of-month and day-of-week, which cron joins with OR and some schedulers with AND; "
            "restrict only one of them")
    normal = " ".join(fields).upper()
    try:
        CronSim(normal, datetime(2000, 1, 1))
    except CronSimError as exc:
        if str(exc) == "Bad day-of-month" and _parses(" ".join([*fields[:2], "1", *fields[3:]])):
            raise ValueError(f"never fires: no month in '{fields[3]}' has day '{fields[2]}'") from None
        raise ValueError(f"not a valid cron expression ({exc}), e.g. '{EXAMPLE_CRON}'") from None
    return normal


def check_timezone(name: str) -> str:
    """An IANA time zone name, as modal.Cron takes it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone; allowed: an IANA name such as 'America/New_York', 'Europe/Paris' or "
                         "'UTC'") from None
    return name


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError("a window name is letters, digits, '.', '_' or '-' (it appears in logs and plan), e.g. "
                         "'business-hours'")
    return name


def check_window(w: Window, base: Scaling, *, allow_warm_replicas: bool = True, now: datetime | None = None) -> Window:
    """Everything about one window, given the base scaling it falls back to; returns it with normalised crons."""
    where = f"window '{w.name}'"
    try:
        check_name(w.name)
        start = _checked(w.start, "start")
        end = _checked(w.end, "end")
        check_timezone(w.timezone)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    w = w.model_copy(update={"start": start, "end": end})  # type: ignore[attr-defined]
    cap = w.max_containers if w.max_containers is not None else base.max_containers
    cap_source = "its max_containers" if w.max_containers is not None else "scaling.max_containers"
    if w.min_containers < 0 or (w.buffer_containers
                                or 0) < 0 or (w.max_containers is not None and w.max_containers < 1):
        raise ValueError(f"{where}: min_containers and buffer_containers must be 0 or more, max_containers 1 or more")
    if cap is not None and w.min_containers > cap:
        raise ValueError(
            f"{where}: min_containers = {w.min_containers} exceeds {cap_source} = {cap}; allowed: at most {cap}")
    if w.min_containers > 0 and not allow_warm_replicas:
        raise ValueError(f"{where}: min_containers = {w.min_containers} but this environment forbids warm replicas "
                         "(allow_warm_replicas = false); allowed: min_containers = 0")
    if w.start == w.end:
        raise ValueError(f"{where}: start and end are the same expression ('{w.start}'), so the window is never active")
    now = now or datetime.now(UTC)
    tz = ZoneInfo(w.timezone)
    if next(_fires(w.start, tz, now, now + HORIZON), None) is None:
        raise ValueError(f"{where}: start '{w.start}' does not fire within a year; a window must recur at least yearly")
    # Ends no more than a year apart mean every start is followed by an end within a year.
    previous = now
    for fire in itertools.chain(_fires(w.end, tz, now, now + 2 * HORIZON), [None]):
        if fire is None or fire - previous > HORIZON:
            raise ValueError(f"{where}: end '{w.end}' does not fire within a year of {show(previous, w.timezone)}, "
                             "so the window would not end; a window must end within a year of every start")
        if fire - now > HORIZON:
            break
        previous = fire
    for kind, expr in (("start", w.start), ("end", w.end)):
        _check_clock_changes(where, kind, expr, w.timezone, now)
    return w


def check_windows(windows: Sequence[Window], base: Scaling, *, allow_warm_replicas: bool = True,
                  now: datetime | None = None) -> tuple[Window, ...]:
    """A whole schedule: every window, and names unique (they identify windows in logs, plan and status)."""
    seen: set[str] = set()
    for w in windows:
        if w.name in seen:
            raise ValueError(f"window names must be unique; '{w.name}' appears more than once")
        seen.add(w.name)
    return tuple(check_window(w, base, allow_warm_replicas=allow_warm_replicas, now=now) for w in windows)


def explain(expr: str) -> str:
    """A cron expression in words, e.g. 'At 08:00 on Monday through Friday' (for plan)."""
    from cronsim import CronSim

    return CronSim(expr, datetime(2000, 1, 1)).explain()


def show(instant: datetime, tz: str) -> str:
    """An instant for people: UTC, and local time where the zone is not UTC."""
    utc = instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if tz == "UTC":
        return utc
    local = instant.astimezone(ZoneInfo(tz))
    return f"{utc} ({local:%a %Y-%m-%d %H:%M} {tz})"


# ---------------------------------------------------------------------------- internals


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant!r} has no time zone; pass an aware datetime, e.g. datetime.now(timezone.utc)")


def _parses(expr: str) -> bool:
    from cronsim import CronSim, CronSimError

    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError:
        return False
    return True


def _checked(expr: str, kind: str) -> str:
    try:
        return check_cron(expr)
    except ValueError as exc:
        raise ValueError(f"{kind} = {expr!r}: {exc}") from None


def _fires(expr: str, tz: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """UTC instants in (after, until] at which `expr` fires in `tz`."""
    from cronsim import CronSim

    it = CronSim(expr, after.astimezone(tz).replace(microsecond=0))
    while True:
        try:
            fire = next(it).astimezone(UTC)
        except StopIteration:
            return
        if fire > until:
            return
        if fire > after:  # a start inside a repeated hour can yield the hour's first pass; skip it
            yield fire


def _last_fire(expr: str, tz: ZoneInfo, at: datetime) -> datetime | None:
    """The latest UTC instant at or before `at` at which `expr` fires in `tz`."""
    from cronsim import CronSim

    # Reverse iteration steps back one second before matching: start one second after `at`.
    start = (at.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)).astimezone(tz)
    try:
        return next(CronSim(expr, start, reverse=True)).astimezone(UTC)
    except StopIteration:
        return None


def _active_at(w: Window, instant: datetime) -> bool:
    tz = ZoneInfo(w.timezone)
    started = _last_fire(w.start, tz, instant)
    if started is None:
        return False
    ended = _last_fire(w.end, tz, instant)
    return ended is None or started > ended


def _combine(active: Sequence[Window], base: Scaling) -> Floor:
    """Highest floor wins, field by field; a window's unset cap or buffer is the base's."""
    if not active:
        return Floor(base.min_containers, base.max_containers, base.buffer_containers)
    caps = [w.max_containers if w.max_containers is not None else base.max_containers for w in active]
    buffers = [w.buffer_containers if w.buffer_containers is not None else base.buffer_containers for w in active]
    return Floor(min_containers=max(w.min_containers for w in active),
                 max_containers=None if any(c is None for c in caps) else max(c for c in caps if c is not None),
                 buffer_containers=max((b for b in buffers if b is not None), default=None),
                 windows=tuple(w.name for w in active))


def _timeline(windows: Sequence[Window], base: Scaling, after: datetime, until: datetime) -> Iterator[Change]:
    """Every boundary in (after, until], in order, with the floor from it on: the schedule stepped exactly."""
    active = {w.name: _active_at(w, after) for w in windows}
    streams = []
    for order, w in enumerate(windows):
        tz = ZoneInfo(w.timezone)
        for kind, expr in (("start", w.start), ("end", w.end)):
            streams.append(zip(_fires(expr, tz, after, until), itertools.repeat(order), itertools.repeat(kind)))
    for when, group in itertools.groupby(heapq.merge(*streams), key=lambda event: event[0]):
        kinds: dict[int, set[str]] = {}
        for _, order, kind in group:
            kinds.setdefault(order, set()).add(kind)
        causes = []
        for order, seen in sorted(kinds.items()):
            w = windows[order]
            active[w.name] = seen == {"start"}  # a start and an end at once: the end wins
            causes.append(f"window '{w.name}' {'starts' if active[w.name] else 'ends'}")
        floor = _combine([w for w in windows if active[w.name]], base)
        yield Change(when=when, floor=floor, cause=", ".join(causes), timezone=windows[min(kinds)].timezone)


def _transitions(tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[tuple[datetime, timedelta, timedelta]]:
    """(UTC instant, offset before, offset after) of every change of `tz`'s UTC offset in [start, end)."""

    def offset(t: datetime) -> timedelta:
        return t.astimezone(tz).utcoffset() or timedelta(0)

    day = timedelta(days=1)
    t = start.astimezone(UTC).replace(microsecond=0)
    while t < end:
        before, after = offset(t), offset(t + day)
        if before != after:
            lo, hi = t, t + day  # offset(lo) == before, offset(hi) == after: bisect to the second
            while hi - lo > timedelta(seconds=1):
                mid = (lo + (hi - lo) / 2).replace(microsecond=0)
                if offset(mid) == before:
                    lo = mid
                else:
                    hi = mid
            yield hi, before, after
        t += day


def _check_clock_changes(where: str, kind: str, expr: str, tz_name: str, now: datetime) -> None:
    """Refuse a boundary that fires in local time a clock change skips or repeats (within the horizon)."""
    from cronsim import CronSim

    tz = ZoneInfo(tz_name)
    for when, before, after in _transitions(tz, now, now + HORIZON):
        lo = (when + min(before, after)).replace(tzinfo=None)  # local wall-clock times affected: [lo, hi)
        hi = (when + max(before, after)).replace(tzinfo=None)
        fire = next(CronSim(expr, lo - timedelta(seconds=1)), None)  # naive: plain wall-clock matching
        if fire is not None and fire < hi:
            what = "skipped" if after > before else "repeated"
            raise ValueError(
                f"{where}: {kind} '{expr}' fires at {fire:%H:%M} in {tz_name}, a local time that is {what} on "
                f"{lo:%Y-%m-%d} (clocks change between {lo:%H:%M} and {hi:%H:%M}), and schedulers disagree on such "
                "times; choose a boundary outside that hour, or timezone = 'UTC'")
