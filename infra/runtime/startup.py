"""A server container's start, observed: restore the compile caches, start and warm SGLang, look for cache misses,
and record the start's timeline where the control side reads it (docs/cold-starts.md).

`infra/runtime/app.py` calls `start` from `@modal.enter`, and benchmarks/cold_start_gpu.py the same function, so a
benchmark prints what production records. No `modal` import: the record goes to `write`. A cache miss is named in the
record and warned about, or, with `[startup] refuse_on_cache_miss`, fails `@modal.enter` until the compile stage
reruns. Writing the record never fails a start, and holds one up at most RECORD_WAIT_SECONDS, only where the
container is about to end or be snapshotted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.runtime import compile_cache, kernels, lifecycle, timeline
from infra.runtime.deployment import Deployment
from infra.runtime.lifecycle import Readiness, ServerProcess, Timings

RECORD_WAIT_SECONDS = 10.0


class CacheMissRefused(lifecycle.ServerFailed):
    """The server compiled something while starting and the environment refuses to go ready on a miss."""


@dataclass
class Started:
    server: ServerProcess
    record: timeline.StartRecord
    writer: threading.Thread | None = field(default=None, repr=False)


def write_in_background(write: Callable[[dict], object], record: dict, wait: float) -> threading.Thread:
    """Hand `record` to `write` in a thread; wait at most `wait` seconds. Errors are printed, never raised."""

    def run() -> None:
        try:
            write(record)
        except BaseException as err:  # noqa: BLE001 - a record is never a reason to fail a start
            print(f"start record not written ({type(err).__name__}: {err}); the start itself is unaffected", flush=True)

    thread = threading.Thread(target=run, name="start-record", daemon=True)
    thread.start()
    thread.join(max(wait, 0))
    if wait > 0 and thread.is_alive():
        print(f"start record still being written after {wait:g} s; not waiting longer", flush=True)
    return thread


def restore_caches(d: Deployment, volume_root: str | Path, local_root: str | Path,
                   fingerprint: str | None = None) -> compile_cache.Restore:
    """This key's compiled caches from the (read-only) Volume to local disk at the fixed path, and a line about it."""
    result = compile_cache.restore(volume_root, fingerprint or kernels.kernel_fingerprint(d), local_root)
    if result.restored:
        print(f"compile cache {result.fingerprint}: {result.files} files, {(result.bytes or 0) / 1e6:.0f} MB "
              f"restored in {result.seconds:.1f} s", flush=True)
    else:
        print(f"compile cache {result.fingerprint}: {result.reason}; SGLang compiles as it starts "
              f"(run `invoke compile --env {d.env} --recipe {d.recipe.name}`)", flush=True)
    return result


def start(d: Deployment, argv: list[str], base_url: str, readiness: Readiness, *, volume_root: str | Path,
          local_root: str | Path, write: Callable[[dict], object], container_started: float | None = None,
          env: dict[str, str] | None = None, snapshot: bool = False, environ: dict[str, str] | None = None,
          on_line: Callable[[float, str], None] | None = None, wait_on_ready: float = 0.0,
          fingerprint: str | None = None) -> Started:
    """Restore, launch, wait until healthy, warm up, check for misses, record; raises what the lifecycle raises (the
    record says how far the start got), or CacheMissRefused. `container_started` (monotonic, default now) is where the
    record's total runs from; `fingerprint` restores another key's tree (the benchmark's variants; a server never)."""
    container_started = time.monotonic() if container_started is None else container_started
    started_at = time.time() - (time.monotonic() - container_started)
    environ = dict(os.environ if environ is None else environ)
    restore = restore_caches(d, volume_root, local_root, fingerprint)
    restored = compile_cache.listing(local_root)
    log = timeline.StartLog(also=on_line)
    expect = timeline.expected(d.recipe.speculative is not None, argv)

    def record(outcome: str, timings: Timings | None, misses: dict[str, compile_cache.CacheMisses] | None = None,
               error: str | None = None) -> timeline.StartRecord:
        return timeline.build_record(
            deployment=d, log=log, timings=timings, started_at=started_at,
            before_launch_s=log.t0 - container_started, restore=restore, misses=misses, outcome=outcome, expect=expect,
            error=error, kind="snapshot_boot" if snapshot else "start", environ=environ)

    launch = lifecycle.start_for_snapshot if snapshot else lifecycle.start_and_warm
    log.t0 = time.monotonic()
    try:
        server = launch(argv, base_url, readiness, env=env, on_line=log.feed)
    except BaseException as err:
        failed = record("failed", None, compile_cache.misses(local_root, restored), f"{err}")
        write_in_background(write, failed.to_data(), RECORD_WAIT_SECONDS)
        raise
    found = compile_cache.misses(local_root, restored)
    timings = server.timings.model_copy(deep=True)
    if found and d.startup.refuse_on_cache_miss:
        message = (f"compile-cache miss: SGLang compiled while starting ({compile_cache.describe_misses(found)}), so "
                   f"the caches published for key {restore.fingerprint} do not cover this start; refusing to go ready "
                   f"(startup.refuse_on_cache_miss = true in environment '{d.env}'). Rerun the compile stage for this "
                   f"key: `invoke compile --env {d.env} --recipe {d.recipe.name} --recompile`")
        done = record("refused", timings, found, message)
        server.stop(grace=0)
        write_in_background(write, done.to_data(), RECORD_WAIT_SECONDS)
        raise CacheMissRefused(message)
    if found:
        print(f"WARNING compile-cache miss: SGLang compiled while starting ({compile_cache.describe_misses(found)}); "
              f"this start was slower than the caches promise: rerun `invoke compile` for this key", flush=True)
    done = record("ready", timings, found)
    print("start timeline: " + timeline.describe(done), flush=True)
    writer = write_in_background(write, done.to_data(), RECORD_WAIT_SECONDS if snapshot else wait_on_ready)
    return Started(server, done, writer)


def restore_snapshot(d: Deployment, base_url: str, readiness: Readiness, *, write: Callable[[dict], object],
                     container_started: float | None = None,
                     environ: dict[str, str] | None = None) -> timeline.StartRecord:
    """After a GPU snapshot restore: take the memory back, one generation, and record how long that took."""
    container_started = time.monotonic() if container_started is None else container_started
    started_at = time.time() - (time.monotonic() - container_started)
    began = time.monotonic()
    outcome, error, timings = "ready", None, Timings()
    try:
        lifecycle.restore_from_snapshot(base_url, readiness)
        timings = Timings(ready_s=round(time.monotonic() - began, 3))
    except BaseException as err:
        outcome, error = "failed", f"{err}"
        raise
    finally:
        done = timeline.build_record(
            deployment=d, log=None, timings=timings, started_at=started_at,
            before_launch_s=began - container_started, restore=None, misses=None, outcome=outcome, error=error,
            kind="snapshot_restore", environ=dict(os.environ if environ is None else environ))
        write_in_background(write, done.to_data(), RECORD_WAIT_SECONDS if outcome == "failed" else 0.0)
    return done
