"""Stand-in for `python -m sglang.bench_serving` (SGLang 0.5.11): the options benchmarks/bench_vs_bench_serving.py
passes, the `openai` dataset replayed as 0.5.11 does, and bench_serving's JSON-lines result with its key names.

As 0.5.11 (bench_serving.py, benchmark/datasets/openai_dataset.py): the JSONL is read in order, `messages` is the
prompt, `max_tokens` the output length, sent as `max_completion_tokens`, every other key but `model` sent unchanged;
`--warmup-requests` requests first, then a 1 s pause, then the run; one aiohttp session per request; TTFT to the first
content, TPOT = (latency - TTFT) / (output_len - 1) with output_len from the usage chunk; it prints the lines its
real counterpart prints before and after the run. Not a benchmark: it lets the comparison script run on CPU."""

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

EXCLUDED = {"messages", "max_tokens", "max_completion_tokens", "model"}


def dataset(path, n):
    rows = [json.loads(line) for line in open(path) if line.strip()][:n]
    return [(r["messages"], r.get("max_tokens", 256), {k: v for k, v in r.items() if k not in EXCLUDED}) for r in rows]


async def one(url, model, row):
    messages, output_len, extra = row
    payload = {"model": model, "messages": messages, "max_completion_tokens": output_len, "stream": True}
    payload.setdefault("temperature", 0.0)
    payload.setdefault("ignore_eos", True)
    payload.update(extra)
    started = time.perf_counter()
    ttft, latency, itl, last = 0.0, 0.0, [], started
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/chat/completions", json=payload) as resp:
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line:
                    continue
                chunk = line.removeprefix("data: ")
                latency = time.perf_counter() - started
                if chunk == "[DONE]":
                    continue
                data = json.loads(chunk)
                output_len = (data.get("usage") or {}).get("completion_tokens", output_len)
                delta = ((data.get("choices") or [{}])[0] or {}).get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content"):
                    now = time.perf_counter()
                    if not ttft:
                        ttft = now - started
                    else:
                        itl.append(now - last)
                    last = now
    return {"start": started, "ttft": ttft, "latency": latency, "itl": itl, "output_len": output_len}


async def run(args):
    rows = dataset(args.dataset_path, args.num_prompts)
    warm = [(rows[0][0], min(rows[0][1], 32), rows[0][2])] * args.warmup_requests
    print(f"Starting warmup with {args.warmup_requests} sequences...", flush=True)
    await asyncio.gather(*(one(args.base_url, args.model, row) for row in warm))
    print(f"Warmup completed with {args.warmup_requests} sequences. Starting main benchmark run...", flush=True)
    time.sleep(1.0)
    sem = asyncio.Semaphore(args.max_concurrency)

    async def limited(row):
        async with sem:
            return await one(args.base_url, args.model, row)

    t0 = time.perf_counter()
    outs = await asyncio.gather(*(limited(row) for row in rows))
    duration = time.perf_counter() - t0
    print("\n{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="), flush=True)
    ttft = [o["ttft"] * 1000 for o in outs]
    tpot = [(o["latency"] - o["ttft"]) * 1000 / (o["output_len"] - 1) for o in outs if o["output_len"] > 1]
    itl = [x * 1000 for o in outs for x in o["itl"]]
    out_tokens = sum(o["output_len"] for o in outs)
    return {"backend": args.backend, "dataset_name": args.dataset_name, "max_concurrency": args.max_concurrency,
            "completed": len(outs), "duration": duration, "total_input_tokens": 0, "total_output_tokens": out_tokens,
            "request_throughput": len(outs) / duration, "output_throughput": out_tokens / duration,
            "median_ttft_ms": statistics.median(ttft), "median_itl_ms": statistics.median(itl) if itl else 0.0,
            "median_tpot_ms": statistics.median(tpot),
            "median_e2e_latency_ms": statistics.median(o["latency"] * 1000 for o in outs),
            "accept_length": None}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("--backend", "--base-url", "--model", "--tokenizer", "--output-file", "--dataset-path"):
        p.add_argument(flag, required=True)
    p.add_argument("--dataset-name", choices=["openai"], required=True)
    for flag in ("--num-prompts", "--max-concurrency", "--warmup-requests", "--seed"):
        p.add_argument(flag, type=int, required=True)
    p.add_argument("--disable-tqdm", action="store_true")
    args = p.parse_args()
    result = asyncio.run(run(args))
    with open(args.output_file, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))
