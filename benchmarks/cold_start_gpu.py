"""Cold starts on a real GPU with real SGLang, phase by phase, through the project's own code (issues 15 and 23).

Shapes (--shape):
  tiny   the GPU suite's tiny Qwen3 + tiny EAGLE-3 drafter (tests/gpu/real_sglang.py): minutes in all.
  real   the low-latency recipe's real architecture, Qwen3-8B-FP8 + a full-width EAGLE-3 drafter, dummy weights
         (tests/gpu/real_shape.py). On one H200, compile_deep_gemm alone took 629 s and the compile job 946 s;
         a start without any cache is estimated at ~12 minutes: use --detach.

Steps (--steps, run in the order given; default compile,cached):
  compile       every cache wiped, then the compile job's own body (infra/runtime/kernels.py `warm_caches`):
                compile_deep_gemm where DeepGEMM is on, then the server started, warmed up, stopped and its
                caches published to a folder standing in for the kernel Volume. Its server start is a start
                without the caches (DeepGEMM excepted: compile_deep_gemm ran first). CPU use is sampled.
  cached        a new container: every local cache wiped, then infra/runtime/startup.py `start`, exactly as
                infra/runtime/app.py calls it: the published tree restored at the fixed path, SGLang launched,
                healthy, warmed up, the cache tree compared with what was restored (misses), the start's
                timeline recorded. What this benchmark prints is that record: production's parser.
  no-piecewise  (real) `cached` with --disable-piecewise-cuda-graph (SGLang 0.5.11 captures them by default).
  uncached      (optional, long) a container that finds no published caches at all: everything, DeepGEMM
                included, is compiled inside the start. Its own step so that it can run detached, alone.
  snapshot      (real, one GPU) `cached` with the GPU-snapshot flags, memory released, then resumed and one
                request served: `startup.restore_snapshot`, timed.
  vlm           (optional) the vision recipe's arguments on the Qwen3.6-35B-A3B-FP8 stand-in config
                (tests/gpu/real_shape.py): a start without caches (DeepGEMM compiling lazily), recorded as far as it
                gets, then the recipe's smoke test with its image. On one H200: ready in 354.5 s, smoke passed.

Every step's result goes to OUT/results.json as soon as it ends, every start's record to OUT/starts.jsonl (what
the `sglang-starts` Modal Dict holds in production), every process's output to OUT/logs/<step>[-<process>].log,
each line prefixed with seconds since that process's launch. A step starts only if its estimate (ESTIMATE)
fits in what is left of --budget; otherwise it is recorded as skipped, with the reason.

Long runs (a lent GPU machine runs one command for minutes at most): --detach starts the same command in the
background with its output in OUT/run.log and returns; `--poll OUT [--for S]` prints what the run wrote since
the last poll until it ends (OUT/DONE) or S seconds pass, then the state of every step.

    python benchmarks/cold_start_gpu.py [--shape tiny|real] [--steps compile,cached,...] [--out DIR] [--json FILE]
    python benchmarks/cold_start_gpu.py --shape real --steps compile,cached,no-piecewise --out /tmp/cs --detach
    python benchmarks/cold_start_gpu.py --poll /tmp/cs --for 540
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.perf import smoketest  # noqa: E402
from infra.runtime import compile_cache, kernels, sglang_args, spec, startup, timeline  # noqa: E402
from tests.gpu import real_sglang as real  # noqa: E402
from tests.gpu import real_shape as rs  # noqa: E402

STEPS = ("compile", "cached", "no-piecewise", "uncached", "snapshot", "vlm")
FROM_THE_TREE = ("cached", "no-piecewise", "snapshot")  # the compile step's published caches, restored
# Seconds a step needs at least, from what was measured (real: one H200, SGLang 0.5.11, 2026-12-01; tiny: one H100,
# 2026-11-23): it is not started with less left. The uncached real start is compile_deep_gemm's JIT inside a start.
ESTIMATE = {
    "tiny": {"compile": 300, "cached": 120, "no-piecewise": 120, "uncached": 300, "snapshot": 120, "vlm": 600},
    "real": {"compile": 1000, "cached": 170, "no-piecewise": 140, "uncached": 800, "snapshot": 140, "vlm": 450},
}
HOME = Path.home()
# Where each cache goes when its variable is not set: removed before each start, and
# checked afterwards: anything found there escaped the compile-cache root.
PER_USER = [HOME / ".triton", HOME / ".cache" / "flashinfer", HOME / ".cache" / "tvm-ffi", HOME / ".cache" / "sglang",
            HOME / ".cache" / "deep_gemm", HOME / ".cache" / "torch_extensions", HOME / ".nv"]


def per_user_caches() -> list[Path]:
    return PER_USER + [Path(p) for p in glob.glob("/tmp/torchinductor_*")]


def wipe(local_root: Path) -> None:
    for path in per_user_caches() + [local_root]:
        shutil.rmtree(path, ignore_errors=True)


def escaped() -> dict[str, int]:
    """Files that landed in a per-user default instead of the root: should be none."""
    out = {}
    for path in per_user_caches():
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        if files:
            out[str(path)] = len(files)
    return out


def gpu_mib() -> int | None:
    try:
        return real.gpu_memory_used_mib()
    except Exception:  # noqa: BLE001 - a number reported, never a reason to stop
        return None


# ---------------------------------------------------------------------------- the run, its files and its logs


class Run:
    def __init__(self, out: Path, deadline: float):
        self.out, self.deadline = out, deadline
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.path = out / "results.json"
        self.result: dict = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.result.setdefault("steps", {})

    def left(self) -> float:
        return self.deadline - time.time()

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S', time.gmtime())} left {self.left():.0f} s] {text}", flush=True)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        os.replace(tmp, self.path)

    def write_start(self, record: dict) -> int:
        """Where production writes to the `sglang-starts` Dict (infra/runtime/remote.py), this run appends to a file."""
        with open(self.out / "starts.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return 0

    def log(self, name: str) -> LineLog:
        return LineLog(self.logs / f"{name}.log")


class LineLog:
    """Every line of one process, prefixed with seconds since `t0` (its launch, near enough)."""

    def __init__(self, path: Path):
        self.file = open(path, "w", buffering=1)
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def on_line(self, t: float, line: str) -> None:
        self.write(t - self.t0, line)

    def write(self, seconds: float, line: str) -> None:
        with self.lock:
            if not self.file.closed:  # a server outlives its start's log only if a step forgot to stop it
                self.file.write(f"{seconds:9.3f} {line}\n")

    def close(self) -> None:
        self.file.close()


class CpuSampler:
    """/proc/stat every `interval` s while the compile job runs: busy cores (sum of per-core use), labelled by step."""

    def __init__(self, interval: float = 5.0):
        self.interval, self.step, self.samples = interval, "compile_deep_gemm", []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _times() -> list[tuple[int, int]]:
        out = []
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                v = [int(x) for x in line.split()[1:]]
                out.append((sum(v), v[3] + (v[4] if len(v) > 4 else 0)))
        return out

    def start(self) -> CpuSampler:
        if Path("/proc/stat").exists():
            self._thread.start()
        return self

    def _run(self) -> None:
        prev = self._times()
        while not self._stop.wait(self.interval):
            cur = self._times()
            busy = sum(0.0 if t2 <= t1 else 1.0 - (i2 - i1) / (t2 - t1) for (t1, i1), (t2, i2) in zip(prev, cur))
            prev = cur
            self.samples.append((self.step, round(busy, 2)))

    def stop(self) -> dict:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval + 1)
        out = {}
        for step in dict.fromkeys(s for s, _ in self.samples):
            busy = [b for s, b in self.samples if s == step]
            out[step] = {"samples": len(busy), "busy_cores_mean": round(sum(busy) / len(busy), 2),
                         "busy_cores_max": max(busy)}
        return out | {"cores": os.cpu_count()}


# ---------------------------------------------------------------------------- the shapes


def deployment(shape: str, *, no_piecewise: bool = False, snapshot: bool = False):
    if shape == "real":
        return rs.deployment(port=real.free_port(), no_piecewise=no_piecewise, snapshot=snapshot)
    return real.tiny_deployment(port=real.free_port(), snapshot=snapshot)


def environment(shape: str, hub: Path, root: Path) -> dict[str, str]:
    # The tiny model is bf16: no FP8 GEMMs for DeepGEMM. The real shape is FP8 in 128x128 blocks, as the recipe's model.
    return real.server_environment(hub, root) | {"SGLANG_ENABLE_JIT_DEEPGEMM": "1" if shape == "real" else "0"}


def models(shape: str, hub: Path) -> dict:
    return rs.build_real_shape_models(hub) if shape == "real" else real.build_tiny_models(hub)


# ---------------------------------------------------------------------------- steps


def step_compile(run: Run, ctx: dict) -> dict:
    d = deployment(ctx["shape"])
    root, volume = ctx["root"], ctx["volume"]
    wipe(root)
    shutil.rmtree(volume, ignore_errors=True)
    key = kernels.kernel_key(d)
    budget = spec.compile_budget(d)
    logs = {"compile_deep_gemm": run.log("compile-compile_deep_gemm"), "server": run.log("compile-server")}
    sampler = CpuSampler().start()

    def on_line(step: str, seconds: float, line: str) -> None:
        if step == "server":
            sampler.step = "server"
        logs[step].write(seconds, line)

    began = time.monotonic()
    try:
        job = kernels.warm_caches(
            key=key, marker=volume / kernels.MARKERS / f"{d.recipe.name}-{compile_cache.fingerprint(key)}.json",
            compile_argv=sglang_args.compile_command(d), launch_argv=sglang_args.launch_command(d),
            readiness=real.readiness(d, min(d.recipe.startup_timeout, max(120.0, run.left() - 60))),
            volume_root=volume, local_root=root, env=environment(ctx["shape"], ctx["hub"], root),
            kill_after=max(60.0, min(budget.deep_gemm_kill_after_seconds or 1e9, run.left() - 240)), on_line=on_line,
        )
    finally:
        cpu = sampler.stop()
        for log in logs.values():
            log.close()
    ctx["fingerprint"] = job["fingerprint"]
    timings = job["server_timings"]
    return {
        "ok": True, "fingerprint": job["fingerprint"], "job_phases_s": job["phases"],
        "job_s": round(time.monotonic() - began, 1),
        "compile_budget": budget.to_data(), "cpu": cpu, "deep_gemm_shapes": job.get("deep_gemm_shapes"),
        "server_timings": timings, "server_timeline": job["server_timeline"], "caches": job["caches"],
        "escaped": escaped(),
    }


def started(run: Run, ctx: dict, name: str, d, *, volume: Path, snapshot: bool = False, fingerprint: str | None = None,
            extra_env: dict[str, str] | None = None, cap: float | None = None):
    """A new container's start through infra/runtime/startup.start; returns (server or None, info)."""
    root = ctx["root"]
    wipe(root)
    log = run.log(name)
    info: dict = {"argv": sglang_args.launch_command(d), "gpu_mib_before": gpu_mib()}
    budget = max(60.0, min(float(d.recipe.startup_timeout), run.left() - 30, cap or float("inf")))
    run.say(f"{name}: launching ({len(info['argv'])} arguments, budget {budget:.0f} s)")
    try:
        done = startup.start(d, sglang_args.launch_command(d), f"http://127.0.0.1:{d.server.port}",
                             real.readiness(d, budget),
                             volume_root=volume, local_root=root, write=run.write_start,
                             env=environment(ctx["shape"], ctx["hub"], root) | (extra_env or {}), snapshot=snapshot,
                             on_line=log.on_line,
                             wait_on_ready=30, fingerprint=fingerprint)
    except BaseException as err:  # noqa: BLE001 - recorded; the record itself is in starts.jsonl
        info |= {"ok": False, "error": f"{type(err).__name__}: {err}"[-4000:], "record": last_start(run)}
        log.close()
        return None, info
    # The log stays open while the server runs: what it prints serving the step's requests (a smoke test, a
    # benchmark) belongs to it too. Line-buffered, so nothing is lost when the process exits.
    info |= {"ok": True, "record": done.record.to_data(), "gpu_mib_ready": gpu_mib(), "escaped": escaped()}
    run.say(f"{name}: {timeline.describe(done.record)}")
    return done.server, info


def last_start(run: Run) -> dict | None:
    path = run.out / "starts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else None


def step_served(run: Run, ctx: dict, name: str, **options) -> dict:
    """A start from the compile step's tree. A variant of the arguments (no-piecewise) has a key of its own but is
    given the recipe's tree, as measured on 2026-12-01: what it would otherwise compile are misses, and say so."""
    if not (ctx["volume"] / compile_cache.PUBLISHED).is_dir():
        return {"skipped": True, "reason": "no published compile-cache tree (run the compile step first)"}
    fingerprint = run.result.get("fingerprint") if options else None
    server, info = started(run, ctx, name, deployment(ctx["shape"], **options), volume=ctx["volume"],
                           fingerprint=fingerprint)
    if server is not None:
        server.stop(grace=0)
    return info


def step_uncached(run: Run, ctx: dict) -> dict:
    server, info = started(run, ctx, "uncached", deployment(ctx["shape"]), volume=run.out / "no-volume")
    if server is not None:
        server.stop(grace=0)
    return info


def step_snapshot(run: Run, ctx: dict) -> dict:
    if not (ctx["volume"] / compile_cache.PUBLISHED).is_dir():
        return {"skipped": True, "reason": "no published compile-cache tree (run the compile step first)"}
    d = deployment(ctx["shape"], snapshot=True)
    server, info = started(run, ctx, "snapshot", d, volume=ctx["volume"], snapshot=True,
                           fingerprint=run.result.get("fingerprint"))  # the recipe's tree, as for no-piecewise
    if server is None:
        return info
    try:
        info["gpu_mib_released"] = gpu_mib()
        time.sleep(5)
        restored = startup.restore_snapshot(d, f"http://127.0.0.1:{d.server.port}", real.readiness(d, 120),
                                            write=run.write_start)
        info |= {"restore_to_ready_s": restored.launch_to_ready_s, "gpu_mib_resumed": gpu_mib(),
                 "restore_record": restored.to_data()}
    except BaseException as err:  # noqa: BLE001
        info |= {"ok": False, "error": f"{type(err).__name__}: {err}"[-4000:]}
    finally:
        server.stop(grace=0)
    return info


def step_vlm(run: Run, ctx: dict) -> dict:
    """The vision recipe launched at all: a start without caches (DeepGEMM compiling lazily, rs.VLM_LAUNCH_ENV), its
    warm-up with the packaged image, then the recipe's own smoke test (the image again, thinking off) through
    infra/perf/smoketest.check, as `invoke smoke` runs it."""
    model = rs.build_vlm_model(ctx["hub"])
    d = rs.vlm_deployment(port=real.free_port())
    # At most ESTIMATE's seconds to turn ready: what is left of the budget belongs to the steps after it.
    server, info = started(run, ctx, "vlm", d, volume=run.out / "no-volume", extra_env=rs.VLM_LAUNCH_ENV,
                           cap=ESTIMATE[ctx["shape"]]["vlm"] - 60)
    info |= {"model": {k: v for k, v in model.items() if k != "config"}, "env_beyond_the_image": rs.VLM_LAUNCH_ENV}
    if server is None:
        return info
    try:
        url = f"http://127.0.0.1:{d.server.port}"
        info["smoke"] = smoketest.check(d, url, deadline=min(120.0, max(30.0, run.left() - 20)), say=run.say).to_data()
        run.say(f"vlm: smoke test passed, {info['smoke']['output_tokens']} tokens, TTFT {info['smoke']['ttft']} s")
    except Exception as err:  # noqa: BLE001 - the exact failure is the result
        info["smoke"] = {"passed": False, "error": f"{type(err).__name__}: {err}"[-4000:]}
        run.say(f"vlm: smoke test FAILED: {info['smoke']['error'][:300]}")
    finally:
        server.stop(grace=0)
    return info


# ---------------------------------------------------------------------------- what it prints


def phase_table(columns: dict[str, list[dict]]) -> list[str]:
    """Phases side by side: one column per start (their `phases` from timeline.segments)."""
    names: list[str] = []
    for phases in columns.values():
        names += [p["phase"] for p in phases if p["phase"] not in names]
    order = [m for m, _ in timeline.MILESTONES] + ["warmup_wait"] + [n for n in names if n.startswith("warmup_")]
    names = [n for n in order if n in names]
    lines = [f"  {'phase (s)':<22}" + "".join(f"{title:>16}" for title in columns)]
    for n in names:
        cells = []
        for phases in columns.values():
            found = next((p["seconds"] for p in phases if p["phase"] == n), None)
            cells.append(f"{'-' if found is None else format(found, '.1f'):>16}")
        lines.append(f"  {n:<22}" + "".join(cells))
    return lines


def summary(timings: dict) -> dict:
    warm = timings.get("warmup_s") or [0.0]
    return {"start_to_healthy_s": timings["healthy_s"], "first_speculative_request_s": warm[0],
            "rest_of_warmup_s": round(sum(warm[1:]), 3), "launch_to_ready_s": timings["ready_s"]}


def compare(result: dict) -> None:
    """The compile job's (uncached) start beside the cached one, as issue 15's table had it."""
    steps = result["steps"]
    compiled, cached = steps.get("compile") or {}, steps.get("cached") or {}
    if not (compiled.get("ok") and cached.get("ok")):
        return
    record = cached["record"]
    result["without"] = summary(compiled["server_timings"])
    result["with"] = summary({"healthy_s": next(p["end_s"] for p in record["phases"] if p["phase"] == "healthy"),
                              "warmup_s": record["warmup_s"], "ready_s": record["launch_to_ready_s"]})
    result["restore"] = record["restore"]
    result["caches"] = compiled["caches"]
    result["escaped_without"], result["escaped_with"] = compiled["escaped"], cached["escaped"]
    result["ratio"] = {k: round(result["with"][k] / result["without"][k], 3) if result["without"][k] else None
                       for k in result["with"]}
    with_copy = result["with"]["launch_to_ready_s"] + (record["restore"].get("seconds") or 0)
    result["ratio"]["launch_to_ready_plus_restore"] = round(with_copy / result["without"]["launch_to_ready_s"], 3)


def render(result: dict) -> str:
    steps = result["steps"]
    lines = [f"cold start, {result['shape']} shape, compile-cache key {result.get('fingerprint', '?')}"]
    columns = {}
    if (c := steps.get("compile")) and c.get("ok"):
        columns["compile job"] = c["server_timeline"]
    for name in ("uncached", "cached", "no-piecewise", "snapshot", "vlm"):
        if (s := steps.get(name)) and s.get("record"):
            columns[name] = s["record"]["phases"]
    if columns:
        lines += phase_table(columns)
    for name, s in steps.items():
        if s.get("record"):
            lines.append(f"  {name}: {timeline.describe(timeline.StartRecord.read(s['record']))}")
        elif s.get("skipped"):
            lines.append(f"  {name}: skipped ({s['reason']})")
        elif s.get("error"):
            lines.append(f"  {name}: FAILED {s['error'].splitlines()[0][:200]}")
    if (c := steps.get("compile")) and c.get("ok"):
        if shapes := c.get("deep_gemm_shapes"):
            lines.append(f"  compile_deep_gemm: {len(shapes['shapes'])} GEMM shape(s) JIT-compiled in "
                         f"{shapes['seconds']:.1f} s ("
                         + ", ".join(f"N {s['n']} K {s['k']}: {s['seconds'] or 0:.1f} s" for s in shapes["shapes"])
                         + ")")
        lines.append(f"  compile job: {json.dumps(c['job_phases_s'])}; CPU {json.dumps(c['cpu'])}")
    if "ratio" in result:
        w, c, r = result["without"], result["with"], result["ratio"]
        lines.append(f"  {'':<28} {'without caches':>15} {'with caches':>12} {'ratio':>7}")
        for label, k in (("process start to healthy", "start_to_healthy_s"), ("first speculative request",
                         "first_speculative_request_s"), ("rest of the warm-up", "rest_of_warmup_s"),
                         ("launch to ready", "launch_to_ready_s")):
            lines.append(f"  {label:<28} {w[k]:>13.1f} s {c[k]:>10.1f} s {r[k]:>7.3f}")
        restore = result["restore"]
        lines.append(f"  {'restore copy (with only)':<28} {'':>15} {restore.get('seconds', 0):>10.1f} s   "
                     f"({restore.get('files', 0)} files, {(restore.get('bytes') or 0) / 1e6:.0f} MB)")
        lines.append(f"  launch to ready + restore, ratio: {r['launch_to_ready_plus_restore']:.3f} (target <= 0.5)")
        sizes = ", ".join(f"{k} {v['files']} files/{v['bytes'] / 1e6:.1f} MB" for k, v in result["caches"].items()
                          if k != "total")
        lines.append(f"  published caches: {sizes}")
        lines.append(f"  escaped to per-user defaults: without {result['escaped_without'] or 'none'}, "
                     f"with {result['escaped_with'] or 'none'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- detached runs


def detach(argv: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "DONE").unlink(missing_ok=True)
    with open(out / "run.log", "ab") as log:
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *[a for a in argv if a != "--detach"]],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    (out / "pid").write_text(str(child.pid))
    print(f"started in the background, pid {child.pid}; its output: {out / 'run.log'}; "
          f"poll it with: python benchmarks/cold_start_gpu.py --poll {out} --for 540", flush=True)


def poll(out: Path, seconds: float) -> None:
    """Print what the run wrote since the last poll, until it ends or `seconds` pass; then each step's state."""
    until = time.monotonic() + seconds
    offset_file = out / ".poll-offset"
    while True:
        offset = int(offset_file.read_text()) if offset_file.exists() else 0
        log = out / "run.log"
        if log.exists():
            with open(log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
            offset_file.write_text(str(offset + len(chunk)))
        if (out / "DONE").exists() or time.monotonic() >= until:
            break
        time.sleep(min(5.0, max(until - time.monotonic(), 0.1)))
    done = (out / "DONE").exists()
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {"steps": {}}
    states = {n: ("skipped" if s.get("skipped") else "ok" if s.get("ok") else "failed" if "ok" in s else "running")
              for n, s in results.get("steps", {}).items()}
    print(f"== {'finished' if done else 'still running'}: {json.dumps(states)}", flush=True)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=("tiny", "real"), default="tiny")
    p.add_argument("--steps", default="compile,cached",
                   help=f"comma-separated, run in the order given ({', '.join(STEPS)}); the starts from the published "
                        "caches (cached, no-piecewise, snapshot) after compile")
    p.add_argument("--out", default="/tmp/cold-start-gpu",
                   help="results.json, starts.jsonl, logs/ (and run.log detached)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--hub", default=None, help="Hugging Face cache for the models (default: OUT/hub)")
    p.add_argument("--volume", default=None, help="stands in for the kernel Volume (default: OUT/volume)")
    p.add_argument("--root", default=compile_cache.LOCAL_ROOT, help="the fixed local compile-cache root")
    p.add_argument("--budget", type=float, default=7200, help="seconds for the whole run; steps that do not fit are "
                                                              "skipped")
    p.add_argument("--detach", action="store_true", help="run in the background (output in OUT/run.log) and return")
    p.add_argument("--poll", metavar="OUT", help="print a detached run's new output until it ends or --for seconds "
                                                 "pass")
    p.add_argument("--for", dest="for_", type=float, default=540, help="with --poll: seconds to wait at most")
    args = p.parse_args(argv)
    if args.poll:
        return poll(Path(args.poll), args.for_)
    out = Path(args.out)
    if args.detach:
        return detach(argv, out)
    steps = [s for s in args.steps.split(",") if s]
    if unknown := [s for s in steps if s not in STEPS]:
        raise SystemExit(f"cold_start_gpu: unknown step(s) {unknown}; known: {', '.join(STEPS)}")
    if "compile" in steps and (early := [s for s in steps[: steps.index("compile")] if s in FROM_THE_TREE]):
        raise SystemExit(f"cold_start_gpu: {', '.join(early)} start(s) from what compile publishes: list them after it")
    try:
        run_steps(args, out, steps)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        (out / "DONE").touch()


def run_steps(args, out: Path, steps: list[str]) -> None:
    run = Run(out, time.time() + args.budget)
    if reason := real.unavailable_reason():
        run.result["unavailable"] = reason
        run.save()
        raise SystemExit(f"cold_start_gpu: {reason}")
    hub = Path(args.hub or out / "hub")
    ctx = {"shape": args.shape, "hub": hub, "root": Path(args.root), "volume": Path(args.volume or out / "volume")}
    run.result |= {"shape": args.shape, "models": models(args.shape, hub), "root": args.root, "gpu_mib_idle": gpu_mib(),
                   "python": sys.version.split()[0], "cores": os.cpu_count()}
    try:
        run.result["gpu"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                           timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    run.save()
    bodies = {"compile": lambda: step_compile(run, ctx), "cached": lambda: step_served(run, ctx, "cached"),
              "no-piecewise": lambda: step_served(run, ctx, "no-piecewise", no_piecewise=True),
              "uncached": lambda: step_uncached(run, ctx), "snapshot": lambda: step_snapshot(run, ctx),
              "vlm": lambda: step_vlm(run, ctx)}
    for name in dict.fromkeys(steps):  # in the order given (a step named twice runs once)
        need = ESTIMATE[args.shape][name]
        if (left := run.left()) < need:
            run.result["steps"][name] = {"skipped": True,
                                         "reason": f"{left:.0f} s left of the budget, the step needs {need} s"}
            run.say(f"{name}: skipped ({run.result['steps'][name]['reason']})")
            run.save()
            continue
        run.say(f"{name}: start")
        began = time.monotonic()
        run.result["steps"][name] = {}
        run.save()
        try:
            entry = bodies[name]()
        except BaseException as err:  # noqa: BLE001 - a step's failure is its result; the others still run
            entry = {"ok": False, "error": f"{type(err).__name__}: {err}"[-4000:],
                     "traceback": traceback.format_exc()[-4000:]}
        entry["step_s"] = round(time.monotonic() - began, 1)
        if name == "compile" and entry.get("fingerprint"):
            run.result["fingerprint"] = entry["fingerprint"]
        run.result["steps"][name] = entry
        compare(run.result)
        run.save()
        run.say(f"{name}: done in {entry['step_s']} s "
                f"({'ok' if entry.get('ok') else 'skipped' if entry.get('skipped') else 'FAILED'})")
    compare(run.result)
    run.save()
    if args.json:
        Path(args.json).write_text(json.dumps(run.result, indent=1, default=str))
    print(render(run.result), flush=True)


if __name__ == "__main__":
    main()
