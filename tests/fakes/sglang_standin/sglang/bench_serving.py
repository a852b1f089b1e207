"""Stand-in for `python -m sglang.bench_serving`: the options benchmarks/bench_vs_bench_serving.py passes,
streamed chat requests at a fixed concurrency, and bench_serving's JSON-lines result with its key names.

Not a benchmark: it lets the comparison script run end to end on CPU against the stand-in server."""

import argparse
import asyncio
import json
import statistics
import time

import aiohttp


async def one(session, url, model, input_len, output_len):
    payload = {"model": model, "messages": [{"role": "user", "content": " hello" * input_len}],
               "max_completion_tokens": output_len, "stream": True, "temperature": 0.0, "ignore_eos": True}
    started = time.perf_counter()
    times = []
    async with session.post(f"{url}/v1/chat/completions", json=payload) as resp:
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                event = json.loads(line[5:])
                if (event.get("choices") or [{}])[0].get("delta", {}).get("content"):
                    times.append(time.perf_counter())
    return started, times, time.perf_counter()


async def run(args):
    sem = asyncio.Semaphore(args.max_concurrency)
    async with aiohttp.ClientSession() as session:
        async def limited():
            async with sem:
                return await one(session, args.base_url, args.model, args.random_input_len, args.random_output_len)

        await asyncio.gather(*(limited() for _ in range(args.warmup_requests)))
        t0 = time.perf_counter()
        results = await asyncio.gather(*(limited() for _ in range(args.num_prompts)))
        duration = time.perf_counter() - t0
    ttft = [(t[0] - s) * 1000 for s, t, _ in results if t]
    itl = [(b - a) * 1000 for _, t, _ in results for a, b in zip(t, t[1:])]
    tpot = [(t[-1] - t[0]) * 1000 / (len(t) - 1) for _, t, _ in results if len(t) > 1]
    e2e = [(e - s) * 1000 for s, _, e in results]
    out_tokens = sum(len(t) for _, t, _ in results)
    return {"backend": args.backend, "dataset_name": args.dataset_name, "max_concurrency": args.max_concurrency,
            "completed": len(results), "duration": duration, "total_input_tokens": args.random_input_len * len(results),
            "total_output_tokens": out_tokens, "request_throughput": len(results) / duration,
            "output_throughput": out_tokens / duration, "median_ttft_ms": statistics.median(ttft),
            "median_itl_ms": statistics.median(itl), "median_tpot_ms": statistics.median(tpot),
            "median_e2e_latency_ms": statistics.median(e2e), "accept_length": None}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("--backend", "--base-url", "--model", "--tokenizer", "--dataset-name", "--output-file"):
        p.add_argument(flag, required=True)
    for flag in ("--random-input-len", "--random-output-len", "--num-prompts", "--max-concurrency", "--warmup-requests", "--seed"):
        p.add_argument(flag, type=int, required=True)
    p.add_argument("--random-range-ratio", type=float, required=True)
    p.add_argument("--disable-tqdm", action="store_true")
    args = p.parse_args()
    result = asyncio.run(run(args))
    with open(args.output_file, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))
