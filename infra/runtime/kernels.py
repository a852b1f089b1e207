"""The compile job: every JIT cache of the recipe's SGLang stack compiled ahead of time, published keyed.

SGLang compiles on first use (DeepGEMM's FP8 GEMMs for tens of minutes cold, Triton, torch.compile'd piecewise
graphs, FlashInfer and sgl-kernel modules, the first speculative decode), and a server that finds none of it pays all
of it before it may take traffic. This job pays it once per key (compile_cache.py), into compile_cache.LOCAL_ROOT, the
path servers restore to. No `modal` import: tests run `compile_kernels` against the stand-in `sglang` package.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import Field

from infra.runtime import compile_cache, lifecycle, sglang_args, spec, timeline
from infra.runtime.deployment import Deployment
from infra.runtime.files import MARKERS, write_atomically
from infra.runtime.lifecycle import Readiness, ServerProcess, Timings
from infra.runtime.model import Stored
from infra.runtime.recipes.base import Warmup

# Beyond compile_deep_gemm's own --timeout, which misses a crashed server (a deployment's: spec.compile_budget).
KILL_AFTER = sglang_args.COMPILE_TIMEOUT + 300
BURST = 8  # concurrent warm-up requests after the sequential ones: batched shapes compile too


class CompileFailed(RuntimeError):
    pass


class CompileRecord(Stored):
    """The compile job's marker (and what `invoke compile` prints). Markers written before the timeline was recorded
    read with `server_timeline` and `deep_gemm_shapes` empty (tests/test_kernels.py)."""

    key: dict
    fingerprint: str
    argv: list[str] | None = None
    launch_argv: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = Field(default_factory=dict)
    server_timings: Timings = Field(default_factory=Timings)
    server_timeline: list[timeline.Phase] = Field(default_factory=list)
    deep_gemm: bool = False
    deep_gemm_shapes: timeline.DeepGemm | None = None
    caches: dict[str, compile_cache.Tally] = Field(default_factory=dict)
    files: int = 0
    completed_at: float = 0.0


def kernel_key(d: Deployment) -> dict:
    r = d.recipe
    return compile_cache.cache_key(
        sglang_image=r.sglang_image, gpu_type=r.gpu_type, tp_size=r.tp_size, model=r.model,
        model_revision=r.model_revision, draft_model=r.draft_model, draft_revision=r.draft_revision,
        # The shapes follow from the full argument list (CUDA-graph sizes, speculative settings...).
        server_args=sglang_args.server_args(d, snapshot_phase=d.startup.gpu_snapshot))


def kernel_fingerprint(d: Deployment) -> str:
    return compile_cache.fingerprint(kernel_key(d))


def marker_path(cache_dir: str | Path, d: Deployment) -> Path:
    return Path(cache_dir) / MARKERS / f"{d.recipe.name}-{kernel_fingerprint(d)}.json"


def compile_kernels(d: Deployment, cache_dir: str | Path, *, commit_volume: Callable[[], None] = lambda: None,
                    env: dict[str, str] | None = None, kill_after: float | None = None,
                    local_root: str | Path = compile_cache.LOCAL_ROOT, port: int | None = None,
                    force: bool = False) -> dict:
    """The Modal job's body; `force` compiles even where a marker says this key is done (`compile --recompile`)."""
    if kill_after is None:
        kill_after = spec.compile_budget(d).deep_gemm_kill_after_seconds or KILL_AFTER
    r = d.recipe
    return warm_caches(
        key=kernel_key(d), marker=marker_path(cache_dir, d), compile_argv=sglang_args.compile_command(d),
        launch_argv=sglang_args.launch_command(d, port),  # host and port change no compiled shape
        readiness=Readiness(timeout=r.readiness_timeout, poll_interval=r.health_poll_interval, warmup=r.warmup,
                            model=r.model, startup_budget=r.startup_timeout),
        burst=min(BURST, r.target_concurrency), volume_root=cache_dir, local_root=local_root,
        commit_volume=commit_volume, env=env, kill_after=kill_after, force=force)


def warm_caches(*, key: dict, marker: Path, compile_argv: list[str] | None, launch_argv: list[str],
                readiness: Readiness, volume_root: str | Path, local_root: str | Path,
                commit_volume: Callable[[], None] = lambda: None, env: dict[str, str] | None = None,
                kill_after: float = KILL_AFTER, burst: int = BURST, force: bool = False,
                on_line: Callable[[str, float, str], None] | None = None) -> dict:
    """compile_deep_gemm with the server's own arguments (bounded in time), then the real server warmed up with the
    recipe's requests and a burst, then the tree published and committed, and only then the marker (a matching one
    skips it all). `on_line(step, t, line)` also sees every line of both steps."""
    if marker.exists() and not force:
        return CompileRecord.read_json(marker.read_text()).to_data() | {"skipped": True}
    env = dict(os.environ if env is None else env) | compile_cache.environment(local_root)
    compile_cache.prepare(local_root)
    seconds: dict[str, float] = {}

    deepgemm = compile_cache.deepgemm_enabled(env)
    gemm_log = timeline.StartLog(also=on_line and functools.partial(on_line, "compile_deep_gemm"))
    if deepgemm and compile_argv:
        started = gemm_log.t0 = time.monotonic()
        _run_deep_gemm(compile_argv, env, kill_after, gemm_log.feed)
        seconds["deep_gemm"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    base_url = f"http://127.0.0.1:{launch_argv[launch_argv.index('--port') + 1]}"
    log = timeline.StartLog(t0=started, also=on_line and functools.partial(on_line, "server"))
    try:
        server = lifecycle.start_and_warm(launch_argv, base_url, readiness, env=env,
                                          on_line=log.feed)
    except lifecycle.ServerFailed as err:
        raise CompileFailed(f"the server did not start and warm up for the compile cache: {err}") from None
    try:
        _burst(base_url, readiness.warmup, readiness.model, burst, server)
    finally:
        server.stop(grace=lifecycle.STOP_GRACE_SECONDS)
    seconds["server"] = round(time.monotonic() - started, 1)
    timings = server.timings

    published = compile_cache.publish(local_root, volume_root, key, replace=force)
    seconds["publish"] = published.seconds
    commit_volume()
    record = CompileRecord(
        key=key, fingerprint=compile_cache.fingerprint(key), argv=compile_argv, launch_argv=launch_argv,
        seconds=round(sum(seconds.values()), 1), phases=seconds, server_timings=timings,
        server_timeline=timeline.segments(log.milestones(timings), timings.warmup_s, timings.ready_s),
        deep_gemm=deepgemm, deep_gemm_shapes=gemm_log.deep_gemm(), caches=published.caches,
        files=published.files, completed_at=time.time())
    write_atomically(marker, json.dumps(record.to_data(), indent=1))
    commit_volume()
    return record.to_data() | {"skipped": False}


def _run_deep_gemm(argv: list[str], env: dict[str, str], kill_after: float,
                   on_line: Callable[[float, str], None] | None = None) -> None:
    process = ServerProcess(argv, env=env, tail_lines=30, on_line=on_line)
    code = process.wait_exit(kill_after)
    if code is None:
        process.stop(grace=0)
        raise CompileFailed(f"compile_deep_gemm still running after {kill_after:g} s; killed. Last "
                            f"lines:\n{process.tail()}")
    tail = process.tail()
    process.stop(grace=0)  # its helper server may outlive it: nothing may stay behind
    if code != 0:
        raise CompileFailed(f"compile_deep_gemm exited with code {code}; last lines:\n{tail}")


def _burst(base_url: str, warmup: Warmup, model: str, n: int, server: ServerProcess) -> None:
    """`n` warm-up requests at once: batched prefill and decode shapes compile here, not for users."""
    if n < 2:
        return
    one = warmup.model_copy(update={"count": 1})
    with ThreadPoolExecutor(n) as pool:  # leaves once every request is done
        sent = [pool.submit(lifecycle.warm_up, base_url, one, model, server=server) for _ in range(n)]
    errors = [f.exception() for f in sent if f.exception() is not None]
    if errors:
        raise CompileFailed(f"{len(errors)} of {n} concurrent warm-up requests failed: {errors[0]}")
