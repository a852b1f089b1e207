"""How closely `invoke bench` measures a server whose timing is known, idle and under load.

Starts tests/fakes/openai_server.py with a fixed time to first token and inter-token
gap, measures it with the project's bench engine at several concurrency levels,
and prints measured vs configured values and the error in percent. The target is
within 5% at 1 and 32 concurrent streams (tests assert the same thing with wide
margins; a ±5% assertion on two shared cores would be flaky, so the number lives here).

    python benchmarks/bench_accuracy.py [--levels 1,32] [--requests-per-stream 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.perf import bench  # noqa: E402
from tests.conftest import free_port  # noqa: E402

TTFT, ITL, TOKENS = 0.2, 0.02, 30
E2E = TTFT + (TOKENS - 1) * ITL


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,32")
    parser.add_argument("--requests-per-stream", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(REPO / "tests/fakes/openai_server.py"), "--port", str(port),
                               "--ttft", str(TTFT), "--itl", str(ITL), "--tokens", str(TOKENS)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout.readline().startswith(b"LISTENING")
        worst = 0.0
        print(f"{'conc':>4}  {'metric':<22}{'configured':>11}{'measured':>11}{'error %':>9}")
        for level in (int(x) for x in args.levels.split(",")):
            plan = bench.Plan(concurrency=(level,), requests=level * args.requests_per_stream)
            report = bench.run(f"http://127.0.0.1:{port}", bench.Workload(prompt_tokens=16, max_tokens=TOKENS * 2),
                               plan)
            (lv,) = report["levels"]
            rows = [("TTFT p50 s", TTFT, lv["ttft_s"]["p50"]), ("ITL p50 s", ITL, lv["itl_s"]["p50"]),
                    ("TPOT p50 s", ITL, lv["tpot_s"]["p50"]), ("E2E p50 s", E2E, lv["e2e_s"]["p50"]),
                    ("tok/s total", level * TOKENS / E2E, lv["throughput"]["output_tokens_per_s"])]
            for name, want, got in rows:
                error = 100 * (got - want) / want
                worst = max(worst, abs(error))
                print(f"{level:>4}  {name:<22}{want:>11.4f}{got:>11.4f}{error:>+9.2f}")
            print(f"      client busy: {lv['client']['busy']}, cpu {lv['client']['cpu_utilization']}")
        print(f"worst error: {worst:.2f}% (target: within 5%)")
        return 0 if worst <= 5 else 1
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    raise SystemExit(main())
