"""`invoke logs`: what the server and the last download or compile job printed, as `modal app logs` shows it.

Two apps per recipe: the server (`<app>`, deployed) and its jobs (`<app>-jobs`, run ephemerally by
`invoke download` and `invoke compile`, stopped when the job ends, so found among the Environment's recently
stopped apps). Each is read through modal 1.6.4's public log API (`App.logs.tail`, `.fetch`, `.stream`) by
infra/runtime/remote.py.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from infra.control import attainment
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.remote import LIVE, App
from stages.common import Context, StageResult, dry_run, result

STAGE = "logs"
TAIL = 100  # lines per app without --since, as `modal app logs`


@dataclass(frozen=True)
class Options:
    since: str | None = None  # 30m, 2h, 7d or a UTC time: every line since then instead of the last `tail`
    follow: bool = False  # then stream the server's new lines until Ctrl-C or the app stops
    tail: int = TAIL


@dataclass(frozen=True)
class Logs:
    apps: list[dict]  # [{"app_id", "name", "role", "state", "lines": [{"at", "source", "text", "container"}]}]


def check(options: Options, *, as_json: bool) -> Options:
    """The flags, before anything is read (shared by the task and the tests)."""
    if options.follow and as_json:
        raise ConfigError("--follow prints lines as they come and --json prints one document at the end: give one")
    if options.tail < 1:
        raise ConfigError(f"--tail {options.tail}: allowed: a whole number of lines, 1 or more")
    if options.since is not None:
        attainment.window(options.since, None, datetime.now(UTC))  # a bad --since is one line now, offline
    return options


def chosen(apps: list[App], d: Deployment) -> list[dict]:
    """The server app (its live one, else the newest stopped) and the newest jobs app, with their roles."""
    picked = []
    for role, name in (("server", d.app_name), ("jobs", d.jobs_app_name)):
        mine = sorted((a for a in apps if a.name == name), key=lambda a: (a.live, a.created_at or 0))
        if mine:
            picked.append(dataclasses.asdict(mine[-1]) | {"role": role})
    return picked


def line(entry: dict) -> str:
    when = datetime.fromtimestamp(entry["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{when}Z {entry['source']:<6} {entry['text'].rstrip(chr(10))}"


def heading(app: dict, count: int, since: datetime | None, tail: int) -> str:
    which = f"since {since:%Y-%m-%d %H:%M} UTC" if since else f"the last {tail}"
    return f"{app['name']} ({app['role']}, {app['state']}, {app['app_id']}): {count} line(s), {which}"


def run(ctx: Context, d: Deployment, options: Options = Options(), *,
        write: Callable[[str], None] = lambda text: print(text, flush=True)) -> StageResult[Logs]:
    where = f"{d.app_name} and its last jobs ({d.jobs_app_name}) in Modal environment {d.modal.environment}"
    what = f"every line since {options.since}" if options.since else f"the last {options.tail} lines"
    then = ", then follow the server's new lines" if options.follow else ""
    if done := dry_run(ctx, STAGE, d, f"read {what} of {where}{then}"):
        return done
    ctx.remote.require_credentials()
    since = attainment.window(options.since, None, ctx.clock())[0] if options.since else None
    apps = chosen(ctx.remote.apps(d.modal.environment), d)
    if not apps:
        return result(STAGE, d, "ran", f"{d.env}/{d.recipe.name}: no app {d.app_name} or {d.jobs_app_name} in Modal "
                                       f"environment {d.modal.environment}: nothing deployed or run yet", Logs([]))
    read = [app | {"lines": ctx.remote.app_logs(app["app_id"], since, None, options.tail)} for app in apps]
    blocks = ["\n".join([heading(app, len(app["lines"]), since, options.tail), *map(line, app["lines"])])
              for app in read]
    if not options.follow:
        return result(STAGE, d, "ran", "\n\n".join(blocks), Logs(read))
    return result(STAGE, d, "ran", follow(ctx, read, blocks, write), Logs(read))


def follow(ctx: Context, read: list[dict], blocks: list[str], write: Callable[[str], None]) -> str:
    """Print what was read, then the server's new lines as they come; the closing line says why it ended."""
    write("\n\n".join(blocks))
    server = next((app for app in read if app["role"] == "server"), None)
    if server is None or server["state"] not in LIVE:
        return "not following: the server app is not running"
    seen = {(e["at"], e["text"]) for e in server["lines"]}
    write(f"following {server['name']} ({server['app_id']}): Ctrl-C to stop")
    try:
        for entry in ctx.remote.follow_logs(server["app_id"], None):
            if (entry["at"], entry["text"]) not in seen:
                write(line(entry))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return f"stopped following {server['name']} (Ctrl-C)"
    return f"{server['name']} stopped: no more lines"
