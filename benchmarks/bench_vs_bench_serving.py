"""`invoke bench --url` beside `python -m sglang.bench_serving` on the same server, printed side by side.

Both tools stream chat completions (`--backend sglang-oai-chat`), with the same prompt and
output lengths (bench_serving's `random-ids` dataset: that many random token ids, decoded;
invoke bench: that many " hello" tokens), the same sampling (temperature 0, which
bench_serving always sends and invoke bench sends by default; ignore_eos on both), the same
number of requests per level, and one warm-up round each. For each concurrency level it
prints each tool's TTFT, ITL, TPOT and E2E medians and output throughput, and the ratio
invoke bench / bench_serving.

    python benchmarks/bench_vs_bench_serving.py --url http://127.0.0.1:30000 --model NAME \\
        --tokenizer PATH_OR_REPO [--concurrency 1,16] [--requests 16,64] [--prompt-tokens 512] \\
        [--max-tokens 128] [--json out.json]

Needs SGLang installed (for bench_serving) and this repository (for invoke bench).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (label, invoke bench reader, bench_serving reader, digits). Times in ms, E2E in s.
METRICS = [
    ("TTFT p50 ms", lambda lv: lv["ttft_s"]["p50"] * 1000, lambda b: b["median_ttft_ms"], 1),
    ("ITL p50 ms", lambda lv: lv["itl_s"]["p50"] * 1000, lambda b: b["median_itl_ms"], 2),
    ("TPOT p50 ms", lambda lv: lv["tpot_s"]["p50"] * 1000, lambda b: b["median_tpot_ms"], 2),
    ("E2E p50 s", lambda lv: lv["e2e_s"]["p50"], lambda b: b["median_e2e_latency_ms"] / 1000, 3),
    ("output tok/s", lambda lv: lv["throughput"]["output_tokens_per_s"], lambda b: b["output_throughput"], 1),
    ("req/s", lambda lv: lv["throughput"]["requests_per_s"], lambda b: b["request_throughput"], 2),
]
RATIO_KEYS = {"TTFT p50 ms": "ttft_p50", "ITL p50 ms": "itl_p50", "TPOT p50 ms": "tpot_p50", "E2E p50 s": "e2e_p50",
              "output tok/s": "output_tok_s", "req/s": "req_s"}


def run_invoke_bench(args, concurrency: int, requests: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "invoke", "bench", "--url", args.url, "--model", args.model,
           "--concurrency", str(concurrency), "--requests", str(requests), "--prompt-tokens", str(args.prompt_tokens),
           "--max-tokens", str(args.max_tokens), "--temperature", "0", "--label", f"invoke-bench-c{concurrency}",
           "--output", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"invoke bench failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    (level,) = json.loads(out.read_text())["levels"]
    return level


def run_bench_serving(args, concurrency: int, requests: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "sglang.bench_serving", "--backend", "sglang-oai-chat", "--base-url", args.url,
           "--model", args.model, "--tokenizer", args.tokenizer, "--dataset-name", "random-ids",
           "--random-input-len", str(args.prompt_tokens), "--random-output-len", str(args.max_tokens),
           "--random-range-ratio", "1.0", "--num-prompts", str(requests), "--max-concurrency", str(concurrency),
           "--warmup-requests", str(concurrency), "--output-file", str(out), "--disable-tqdm", "--seed", "1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"bench_serving failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(out.read_text().strip().splitlines()[-1])


def compare(args) -> dict:
    levels = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (c, n) in enumerate(zip(args.concurrency, args.requests)):
            ours = run_invoke_bench(args, c, n, Path(tmp) / f"invoke-{c}.json")
            theirs = run_bench_serving(args, c, n, Path(tmp) / f"bench-serving-{c}.jsonl")
            rows, ratios = [], {}
            for label, get_ours, get_theirs, digits in METRICS:
                a, b = get_ours(ours), get_theirs(theirs)
                ratio = a / b if a is not None and b else None
                rows.append({"metric": label, "invoke_bench": a, "bench_serving": b, "ratio": ratio, "digits": digits})
                ratios[RATIO_KEYS[label]] = None if ratio is None else round(ratio, 3)
            levels.append({
                "concurrency": c, "requests": n, "rows": rows, "ratios": ratios,
                "invoke_bench": {"ok": ours["requests"]["ok"], "failed": ours["requests"]["failed"],
                                 "output_tokens": ours["output_tokens"]["total"]},
                "bench_serving": {"completed": theirs["completed"], "output_tokens": theirs["total_output_tokens"],
                                  "input_tokens": theirs["total_input_tokens"], "accept_length": theirs.get("accept_length")},
            })
    return {"url": args.url, "model": args.model, "prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens,
            "sampling": {"temperature": 0, "ignore_eos": True}, "levels": levels}


def render(result: dict) -> str:
    lines = [f"{result['url']}  model={result['model']}  prompt~{result['prompt_tokens']} tokens  "
             f"max_tokens={result['max_tokens']}  temperature=0  ignore_eos"]
    for lv in result["levels"]:
        lines.append("")
        lines.append(f"concurrency {lv['concurrency']}, {lv['requests']} requests "
                     f"(invoke bench {lv['invoke_bench']['ok']} ok, bench_serving {lv['bench_serving']['completed']} completed; "
                     f"output tokens {lv['invoke_bench']['output_tokens']} vs {lv['bench_serving']['output_tokens']})")
        lines.append(f"  {'metric':<14} {'invoke bench':>13} {'bench_serving':>14} {'ratio':>7}")
        for r in lv["rows"]:
            fmt = lambda x, d=r["digits"]: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
            lines.append(f"  {r['metric']:<14} {fmt(r['invoke_bench']):>13} {fmt(r['bench_serving']):>14} "
                         f"{'-' if r['ratio'] is None else format(r['ratio'], '.3f'):>7}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True, help="the model's tokenizer (path or repo id) for bench_serving")
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--requests", default="16,64", help="requests per level, one per --concurrency item")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--timeout", type=float, default=300, help="seconds for each tool's run at each level")
    p.add_argument("--json", help="also write the comparison here")
    args = p.parse_args()
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.requests = [int(x) for x in args.requests.split(",")]
    if len(args.requests) != len(args.concurrency):
        p.error("--requests needs one number per --concurrency level")
    result = compare(args)
    print(render(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
