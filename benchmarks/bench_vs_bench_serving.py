"""`invoke bench` beside `python -m sglang.bench_serving` on the same requests, on one SGLang server (issue 32).

What makes the two comparable, run by run:
- the same requests: each `invoke bench` run writes the requests it measured (`--write-requests`), and the
  bench_serving run that follows replays exactly that file (`--dataset-name openai`, which keeps the file's order
  and sends every key as written; only max_tokens travels as max_completion_tokens, which SGLang reads the same);
- no warm-up counted on either side: `--warmup 0` and `--warmup-requests 0`; the server is warmed once, before the
  first measured run, by an unmeasured `invoke bench` round at the highest concurrency;
- the same prefix cache: SGLang's radix cache is flushed (POST /flush_cache) before every run, so each run starts
  from an empty cache and sends distinct prompts (`--prefix-cache off` launches with --disable-radix-cache instead);
- the same concurrency (a closed loop of C streams), greedy sampling, ignore_eos, usage reported in the stream;
- repeats alternate the tools (ours, theirs, ours, ...) so that drift of the server shows in both.
The client's own overhead is counted, not inferred: both tools replay the same requests against a zero-latency
loopback server (tests/fakes/openai_server.py, --ttft 0 --itl 0), where every millisecond measured is the client's
(and that tiny server's, the same for both), and each run's client CPU time per request is read (invoke bench's own
count; bench_serving's process CPU from /proc between its "Starting main benchmark run" and result lines).

    # a server that is already running
    python benchmarks/bench_vs_bench_serving.py --url http://127.0.0.1:30000 --model NAME --tokenizer PATH
    # start one itself: the 8B recipe's real shape with dummy weights (tests/gpu/real_shape.py), or the tiny model
    python benchmarks/bench_vs_bench_serving.py --launch real --out /tmp/bvb [--detach]

On the lent GPU machine (../shared/gpu/README.md: the stripped SGLang 0.5.11 site unpacked in /tmp/site), detached,
from a copy of the project in /tmp, within 12 minutes with the server's start (--budget 660 s by default):

    rm -rf /tmp/proj && cp -a . /tmp/proj && cd /tmp/proj && PYTHONPATH=/tmp/site:/tmp/proj \
        python3 benchmarks/bench_vs_bench_serving.py --launch real --out /tmp/bvb --detach
    # then, until /tmp/bvb/DONE exists:  tail -3 /tmp/bvb/run.log;  at the end copy /tmp/bvb/{results.json,table.txt,
    # run.log,server.log} to $OUT

It prints, per concurrency level, the median over repeats of each tool's TTFT p50, TPOT p50, ITL p50 and output
tok/s, their ratio (invoke bench / bench_serving), the loopback floors and what is left once they are taken away.
OUT/results.json is rewritten after every run; OUT/DONE marks the end. Needs SGLang (bench_serving) and this project.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAKE_SERVER = REPO / "tests" / "fakes" / "openai_server.py"
# (key, label, digits, higher is better)
METRICS = [("ttft_p50_ms", "TTFT p50 ms", 1), ("tpot_p50_ms", "TPOT p50 ms", 2), ("itl_p50_ms", "ITL p50 ms", 2),
           ("e2e_p50_s", "E2E p50 s", 3), ("output_tok_s", "output tok/s", 1),
           ("client_cpu_ms_per_request", "client CPU ms/req", 2)]
AGREE = 0.10  # the bar: within +-10%


# ---------------------------------------------------------------------------- one run of each tool


def ours(args, url: str, c: int, n: int, work: Path, name: str, *, warmup_only: bool = False) -> dict:
    """One `invoke bench` run at one level; its measured requests written to WORK/NAME.requests.jsonl."""
    report, sent = work / f"{name}.invoke.json", work / f"{name}.requests.jsonl"
    cmd = [sys.executable, "-m", "invoke", "bench", "--url", url, "--model", args.model, "--concurrency", str(c),
           "--requests", str(n), "--prompt-tokens", str(args.prompt_tokens), "--max-tokens", str(args.max_tokens),
           "--temperature", "0", "--warmup", "0", "--label", name, "--output", str(report), "--write-requests",
           str(sent)]
    done = subprocess.run(cmd, cwd=REPO, env=args.client_env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"invoke bench failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    (level,) = json.loads(report.read_text())["levels"]
    out = {"tool": "invoke bench", "dataset": str(sent), "ok": level["requests"]["ok"],
           "failed": level["requests"]["failed"],
           "output_tokens": level["output_tokens"]["total"],
           "ttft_p50_ms": level["ttft_s"]["p50"] * 1000, "tpot_p50_ms": level["tpot_s"]["p50"] * 1000,
           "itl_p50_ms": level["itl_s"]["p50"] * 1000, "e2e_p50_s": level["e2e_s"]["p50"],
           "output_tok_s": level["throughput"]["output_tokens_per_s"],
           "client_cpu_ms_per_request": level["client"]["cpu_ms_per_request"], "client_busy": level["client"]["busy"]}
    return out if not warmup_only else {"ok": out["ok"], "failed": out["failed"]}


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def theirs(args, url: str, c: int, dataset: Path, n: int, work: Path, name: str) -> dict:
    """One bench_serving run replaying `dataset`, its CPU time read around the measured part."""
    out_file = work / f"{name}.bench_serving.jsonl"
    cmd = [sys.executable, "-m", "sglang.bench_serving", "--backend", "sglang-oai-chat", "--base-url", url,
           "--model", args.model, "--tokenizer", args.tokenizer, "--dataset-name", "openai", "--dataset-path",
           str(dataset),
           "--num-prompts", str(n), "--max-concurrency", str(c), "--warmup-requests", "0", "--output-file",
           str(out_file),
           "--disable-tqdm", "--seed", "1"]
    env = args.client_env | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu: dict[str, float | None] = {}
    tail: list[str] = []
    deadline = time.monotonic() + args.timeout
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if "Starting main benchmark run" in line:
            cpu["start"] = cpu_seconds(proc.pid)
        elif "Serving Benchmark Result" in line:
            cpu["end"] = cpu_seconds(proc.pid)
        if time.monotonic() > deadline:
            proc.kill()
            break
    code = proc.wait(timeout=60)
    if code != 0 or not out_file.exists():
        raise RuntimeError(f"bench_serving failed ({code}): {''.join(tail)[-3000:]}")
    r = json.loads(out_file.read_text().strip().splitlines()[-1])
    spent = cpu["end"] - cpu["start"] if cpu.get("start") is not None and cpu.get("end") is not None else None
    return {"tool": "bench_serving", "dataset": str(dataset), "ok": r["completed"], "failed": n - r["completed"],
            "output_tokens": r["total_output_tokens"], "input_tokens": r.get("total_input_tokens"),
            "ttft_p50_ms": r["median_ttft_ms"], "tpot_p50_ms": r["median_tpot_ms"], "itl_p50_ms": r["median_itl_ms"],
            "e2e_p50_s": r["median_e2e_latency_ms"] / 1000, "output_tok_s": r["output_throughput"],
            "client_cpu_ms_per_request": None if spent is None else spent * 1000 / n,
            "accept_length": r.get("accept_length")}


def flush(url: str, tries: int = 5) -> dict:
    """Empty SGLang's radix cache. It refuses (400) while any request is still running or waiting, so it is asked
    to wait for that (`timeout`, SGLang 0.5.11) and asked again after a pause, a few times."""
    answer: dict = {}
    for attempt in range(1, tries + 1):
        req = urllib.request.Request(f"{url}/flush_cache?timeout=10", data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return {"status": resp.status, "attempts": attempt}
        except urllib.error.HTTPError as err:
            answer = {"status": err.code, "attempts": attempt, "body": err.read()[:200].decode(errors="replace")}
        time.sleep(1.0)
    return answer


# ---------------------------------------------------------------------------- the comparison


class Results:
    def __init__(self, out: Path, deadline: float):
        self.out, self.deadline = out, deadline
        self.data: dict = {"levels": {}, "loopback": {}, "runs": []}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S', time.gmtime())} left {self.left():.0f} s] {text}", flush=True)

    def save(self) -> None:
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.out / "results.json")


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pair(args, res: Results, url: str, c: int, n: int, work: Path, name: str, *, flush_cache: bool) -> dict:
    """Ours, then theirs on exactly the requests ours sent; the cache flushed before each where asked."""
    entry: dict = {"name": name, "concurrency": c, "requests": n}
    if flush_cache:
        entry["flush_before_ours"] = flush(url)
    entry["ours"] = ours(args, url, c, n, work, name)
    if flush_cache:
        entry["flush_before_theirs"] = flush(url)
    entry["theirs"] = theirs(args, url, c, Path(entry["ours"]["dataset"]), n, work, name)
    for when in ("flush_before_ours", "flush_before_theirs"):
        if flush_cache and entry[when]["status"] != 200:
            raise RuntimeError(f"{url}/flush_cache answered {entry[when]} ({when}): the prefix cache would differ")
    return entry


def summarize(runs: list[dict]) -> dict:
    """Median over repeats of each tool's figures, their ratio, and the spread of the per-repeat ratios."""
    out: dict = {"repeats": len(runs), "ours": {}, "theirs": {}, "ratio": {}, "ratio_range": {}}
    for key, _, _ in METRICS:
        a, b = median([r["ours"][key] for r in runs]), median([r["theirs"][key] for r in runs])
        out["ours"][key], out["theirs"][key] = a, b
        out["ratio"][key] = round(a / b, 3) if a is not None and b else None
        each = [r["ours"][key] / r["theirs"][key] for r in runs if r["ours"][key] is not None and r["theirs"][key]]
        out["ratio_range"][key] = [round(min(each), 3), round(max(each), 3)] if each else None
    out["failed"] = sum(r["ours"]["failed"] + r["theirs"]["failed"] for r in runs)
    return out


def attribute(level: dict, floor: dict | None) -> dict | None:
    """What the client overhead measured on the loopback explains of the difference on SGLang (per latency metric)."""
    if not floor:
        return None
    out = {}
    for key in ("ttft_p50_ms", "tpot_p50_ms", "itl_p50_ms"):
        a, b = level["ours"][key], level["theirs"][key]
        fa, fb = floor["ours"][key], floor["theirs"][key]
        if None in (a, b, fa, fb) or not b:
            continue
        client = fa - fb  # ms more (or less) that our client itself adds, on a server that adds nothing
        out[key] = {"difference_ms": round(a - b, 3), "client_difference_ms": round(client, 3),
                    "residual_ms": round(a - b - client, 3), "ratio_without_client": round((a - client) / b, 3)}
    return out


def compare(args, res: Results, url: str, work: Path, *, flush_cache: bool) -> None:
    top = max(args.concurrency)
    res.say(f"warm-up: an unmeasured invoke bench run at concurrency {top}, {2 * top} requests")
    res.data["warmup"] = ours(args, url, top, 2 * top, work, "warmup", warmup_only=True)
    runs: dict[int, list[dict]] = {c: [] for c in args.concurrency}
    for repeat in range(1, args.repeats + 1):
        for c, n in zip(args.concurrency, args.requests):
            if res.left() < args.min_left:
                res.say(f"c={c} repeat {repeat}: skipped, {res.left():.0f} s left of the budget")
                res.data.setdefault("skipped", []).append(f"c{c}-r{repeat}")
                continue
            entry = pair(args, res, url, c, n, work, f"c{c}-r{repeat}", flush_cache=flush_cache)
            runs[c].append(entry)
            res.data["runs"].append(entry)
            res.data["levels"][str(c)] = summarize(runs[c])
            res.save()
            res.say(f"c={c} repeat {repeat}: TTFT {entry['ours']['ttft_p50_ms']:.1f} / "
                    f"{entry['theirs']['ttft_p50_ms']:.1f} ms, TPOT {entry['ours']['tpot_p50_ms']:.2f} / "
                    f"{entry['theirs']['tpot_p50_ms']:.2f} ms, output {entry['ours']['output_tok_s']:.0f} / "
                    f"{entry['theirs']['output_tok_s']:.0f} tok/s")


def loopback(args, res: Results, work: Path) -> None:
    """Both tools against a server that answers at once: the floor each client adds, on the same requests."""
    from tests.gpu import real_sglang as real

    port = real.free_port()
    log = open(work / "loopback-server.log", "w")
    server = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", str(port), "--tokens", str(args.max_tokens),
                               "--ttft", "0", "--itl", "0"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_listening(url, 30)
        for c, n in zip(args.concurrency, args.requests):
            entries = []
            for repeat in range(1, args.loopback_repeats + 1):
                if res.left() < args.min_left / 2:
                    res.say(f"loopback c={c}: skipped, {res.left():.0f} s left")
                    break
                entries.append(pair(args, res, url, c, n, work, f"loopback-c{c}-r{repeat}", flush_cache=False))
            if entries:
                res.data["loopback"][str(c)] = summarize(entries) | {"runs": entries}
                res.save()
                floor = res.data["loopback"][str(c)]
                res.say(f"loopback c={c}: TTFT {floor['ours']['ttft_p50_ms']:.2f} / "
                        f"{floor['theirs']['ttft_p50_ms']:.2f} ms, TPOT {floor['ours']['tpot_p50_ms']:.3f} / "
                        f"{floor['theirs']['tpot_p50_ms']:.3f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def wait_listening(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=5):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s: {err}") from None
            time.sleep(0.1)


# ---------------------------------------------------------------------------- starting SGLang (--launch)


def launch(args, res: Results):
    """One SGLang server at the chosen shape, through the project's launch command and lifecycle; the JIT caches
    under --root are used as found (what the compile step or an earlier start left), or restored from --volume."""
    from infra.runtime import compile_cache, kernels, lifecycle, sglang_args
    from tests.gpu import real_sglang as real
    from tests.gpu import real_shape as rs

    if reason := real.unavailable_reason():
        raise SystemExit(f"bench_vs_bench_serving --launch: {reason}")
    hub = Path(args.hub or res.out / "hub")
    if args.launch == "real":
        models = rs.build_real_shape_models(hub)
        d = rs.deployment(port=real.free_port())
    else:
        models = real.build_tiny_models(hub)
        d = real.tiny_deployment(port=real.free_port())
    if args.prefix_cache == "off":
        d = d.with_recipe(d.recipe.model_copy(update=dict(extra_flags=d.recipe.extra_flags
                                                          + (("--disable-radix-cache", None),))))
    root = Path(args.root)
    restored = compile_cache.restore(args.volume, compile_cache.fingerprint(kernels.kernel_key(d)),
                                     root) if args.volume else None
    found = {c.folder: sum(1 for p in (root / c.folder).rglob("*") if p.is_file()) if (root / c.folder).is_dir() else 0
             for c in compile_cache.CACHES}
    env = real.server_environment(hub, root) | {"SGLANG_ENABLE_JIT_DEEPGEMM": "1" if args.launch == "real" else "0"}
    if args.launch == "real" and not any(n for folder, n in found.items() if "deep" in folder):
        # Without the compile step's kernels a start would JIT every M of the 4 FP8 GEMM shapes first (~10 min):
        # compile only the M values capture and the requests use.
        env["SGLANG_JIT_DEEPGEMM_PRECOMPILE"] = "0"
    argv = sglang_args.launch_command(d)
    url = f"http://127.0.0.1:{d.server.port}"
    res.data["server"] = {"shape": args.launch, "argv": argv, "caches_found": found,
                          "restored": restored and restored.to_data(),
                          "env_beyond_the_suite": {k: env[k]
                                                   for k in ("SGLANG_ENABLE_JIT_DEEPGEMM",
                                                             "SGLANG_JIT_DEEPGEMM_PRECOMPILE") if k in env},
                          "model": d.recipe.model, "tokenizer": models["target"]}
    res.save()
    res.say(f"launching SGLang ({args.launch} shape, caches found: {found})")
    log = open(res.out / "server.log", "w", buffering=1)
    began = time.monotonic()
    server = lifecycle.start_and_warm(argv, url, real.readiness(d, max(60.0, res.left() - 240)), env=env,
                                      on_line=lambda t, line: log.write(f"{t - began:9.2f} {line}\n"))
    res.data["server"] |= {"ready_s": round(time.monotonic() - began, 1), "timings": server.timings.to_data()}
    res.save()
    res.say(f"SGLang ready in {res.data['server']['ready_s']} s")
    args.model, args.tokenizer = d.recipe.model, models["target"]
    args.client_env = env
    return server, url, log


# ---------------------------------------------------------------------------- output


def render(data: dict) -> str:
    lines = [f"invoke bench / sglang.bench_serving, the same requests ({data.get('prompt_tokens')} prompt words, "
             f"{data.get('max_tokens')} output tokens, greedy, ignore_eos), prefix cache: {data.get('prefix_cache')}"]
    for c, lv in data.get("levels", {}).items():
        floor = data.get("loopback", {}).get(c)
        lines += ["", f"concurrency {c}: median of {lv['repeats']} repeats (failed requests: {lv['failed']})",
                  f"  {'metric':<18} {'invoke bench':>13} {'bench_serving':>14} {'ratio':>7} {'range':>13} "
                  f"{'loopback ours':>14} {'loopback theirs':>16}"]
        for key, label, digits in METRICS:
            fmt = lambda x, d=digits: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
            rng = lv["ratio_range"].get(key)
            lines.append(f"  {label:<18} {fmt(lv['ours'][key]):>13} {fmt(lv['theirs'][key]):>14} "
                         f"{fmt(lv['ratio'][key], 3):>7} {('-' if not rng else f'{rng[0]:.3f}-{rng[1]:.3f}'):>13} "
                         f"{fmt(floor['ours'][key] if floor else None, 3):>14} "
                         f"{fmt(floor['theirs'][key] if floor else None, 3):>16}")
        for key, a in (lv.get("attribution") or {}).items():
            lines.append(f"  {key}: difference {a['difference_ms']:+.2f} ms, of which the client itself "
                         f"{a['client_difference_ms']:+.2f} ms (loopback); ratio without it "
                         f"{a['ratio_without_client']:.3f}")
        within = {k: (r is not None and abs(r - 1) <= AGREE) for k, r in lv["ratio"].items()
                  if k in ("ttft_p50_ms", "tpot_p50_ms", "output_tok_s")}
        lines.append(f"  within +-{AGREE:.0%}: {json.dumps(within)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main


def detach(argv: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "DONE").unlink(missing_ok=True)
    with open(out / "run.log", "ab") as log:
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *[a for a in argv if a != "--detach"]],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    (out / "pid").write_text(str(child.pid))
    print(f"started in the background, pid {child.pid}; output {out / 'run.log'}; results {out / 'results.json'}; "
          f"{out / 'DONE'} when finished", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running SGLang server (with --model and --tokenizer)")
    where.add_argument("--launch", choices=("real", "tiny"),
                       help="start one: the 8B recipe's real shape or the tiny model")
    p.add_argument("--model", help="with --url: the served model name")
    p.add_argument("--tokenizer", help="with --url: the model's tokenizer (path or repo id), for bench_serving")
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--requests", default="16,64", help="requests per run, one per --concurrency item")
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool per level, alternating")
    p.add_argument("--loopback-repeats", type=int, default=1,
                   help="runs of each tool per level on the loopback (0: none)")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prefix-cache", choices=("flush", "off"), default="flush",
                   help="flush: /flush_cache before every run; off: with --launch, --disable-radix-cache")
    p.add_argument("--timeout", type=float, default=300, help="seconds for one tool's run")
    p.add_argument("--budget", type=float, default=660, help="seconds for everything, the server's start included")
    p.add_argument("--min-left", type=float, default=60, help="a run starts only with this many seconds of the budget "
                                                              "left")
    p.add_argument("--out", help="folder for results.json, every run's files and the server's log (default: a "
                                 "temporary one)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--hub", help="with --launch: Hugging Face cache to build the models in (default OUT/hub)")
    p.add_argument("--root", default="/root/.cache/sglang-compile",
                   help="with --launch: the compile-cache root, used as found (the compile step's and earlier starts')")
    p.add_argument("--volume", help="with --launch: a published compile-cache tree to restore into --root first")
    p.add_argument("--detach", action="store_true", help="run in the background (output OUT/run.log, OUT/DONE at the "
                                                         "end)")
    args = p.parse_args(argv)
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.requests = [int(x) for x in args.requests.split(",")]
    if len(args.requests) != len(args.concurrency):
        p.error("--requests needs one number per --concurrency level")
    if args.url and not (args.model and args.tokenizer):
        p.error("--url needs --model and --tokenizer")
    if args.url and args.prefix_cache == "off":
        p.error("--prefix-cache off launches the server with --disable-radix-cache: it needs --launch")
    if (args.detach or args.launch) and not args.out:
        p.error("--launch and --detach need --out")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.detach:
        return detach(argv, Path(args.out))
    out = Path(args.out or tempfile.mkdtemp(prefix="bvb-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "DONE").unlink(missing_ok=True)
    work = out / "runs"
    work.mkdir(exist_ok=True)
    res = Results(out, time.monotonic() + args.budget)
    res.data |= {"prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens, "prefix_cache": args.prefix_cache,
                 "concurrency": args.concurrency, "requests": args.requests, "repeats": args.repeats,
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count()}
    args.client_env = dict(os.environ)
    server = log = None
    began = time.monotonic()
    try:
        if args.launch:
            server, url, log = launch(args, res)
        else:
            url = args.url.rstrip("/")
        res.data |= {"url": url, "model": args.model, "tokenizer": args.tokenizer}
        compare(args, res, url, work, flush_cache=args.prefix_cache == "flush")
        if server is not None:
            server.stop(grace=0)
            server = None
        if args.loopback_repeats:
            loopback(args, res, work)
        for c, lv in res.data["levels"].items():
            lv["attribution"] = attribute(lv, res.data["loopback"].get(c))
    except BaseException as err:
        res.data["error"] = f"{type(err).__name__}: {err}"[-4000:]
        res.data["traceback"] = traceback.format_exc()[-4000:]
        raise
    finally:
        if server is not None:
            server.stop(grace=0)
        if log is not None:
            log.close()
        res.data["total_s"] = round(time.monotonic() - began, 1)
        res.save()
        text = render(res.data)
        (out / "table.txt").write_text(text + "\n")
        print(text, flush=True)
        if args.json:
            shutil.copy(out / "results.json", args.json)
        (out / "DONE").touch()
    if res.data.get("skipped"):
        print(f"skipped for lack of budget: {res.data['skipped']}", flush=True)


if __name__ == "__main__":
    main()
