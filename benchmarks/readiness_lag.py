"""How long after SGLang's ready line /health first answers 200, and what every /health poll got meanwhile.

tests/gpu/test_real_sglang.py::test_ready_within_a_second_of_sglang_answering_healthy once held that lag under one poll
interval + 1.5 s, as SGLang 0.5.11 behaves; at 0.5.17 (the recipe migrated by `invoke upgrade`) it measured 4.2 s.
This starts the tiny server the GPU suite uses, at whatever SGLang is installed, polls /health back to back from the
launch, and writes every poll (when, status, how long it took) and the log lines around the ready line, so the lag
is read rather than guessed. Needs a GPU and SGLang (../shared/gpu/README.md).

    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/readiness_lag.py --out /tmp/lag.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import requests

from infra.runtime import sglang_args
from infra.runtime.lifecycle import ServerProcess
from tests.gpu import real_sglang as real

AFTER_HEALTHY_S = 5.0  # keep polling this long after the first 200, to see whether it holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-speculative", action="store_true", help="serve the target alone (no EAGLE-3 drafter)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds the start may take")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lag-"))
    real.build_tiny_models(root / "hub")
    d = real.tiny_deployment(port=real.free_port(), speculative=not args.no_speculative)
    url = f"http://127.0.0.1:{d.server.port}/health"
    t0 = time.monotonic()
    lines: list[tuple[float, str]] = []
    server = ServerProcess(sglang_args.launch_command(d), env=real.server_environment(root / "hub", root / "jit"),
                           tail_lines=200, on_line=lambda at, line: lines.append((round(at - t0, 3), line)))
    polls: list[tuple[float, int | str, float]] = []
    healthy_at = None
    try:
        while time.monotonic() - t0 < args.budget and server.exit_code() is None:
            sent = time.monotonic()
            try:
                status: int | str = requests.get(url, timeout=25).status_code
            except requests.RequestException as err:
                status = type(err).__name__
            polls.append((round(sent - t0, 3), status, round(time.monotonic() - sent, 3)))
            if status == 200 and healthy_at is None:
                healthy_at = sent - t0
            if healthy_at is not None and time.monotonic() - t0 > healthy_at + AFTER_HEALTHY_S:
                break
            time.sleep(0.1)
    finally:
        server.stop(grace=10)
    ready = next((at for at, line in lines if real.READY_LINE in line), None)
    around = [(at, line) for at, line in lines if ready is not None and ready - 10 <= at <= (healthy_at or ready) + 2]
    result = {
        "sglang": real.GPU_SGLANG_VERSION, "speculative": not args.no_speculative, "ready_line_s": ready,
        "first_healthy_poll_sent_s": healthy_at, "lag_s": None if ready is None or healthy_at is None
        else round(healthy_at - ready, 3), "polls_from_ready_line": [p for p in polls if ready and p[0] >= ready - 3],
        "log_around_ready_line": around, "log_tail": lines[-60:],
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("sglang", "ready_line_s", "first_healthy_poll_sent_s", "lag_s")}))
    for at, status, took in result["polls_from_ready_line"][:40]:
        print(f"poll {at:9.3f} s  {status}  {took:.3f} s")
    for at, line in around[-40:]:
        print(f"log  {at:9.3f} s  {line[:160]}")


if __name__ == "__main__":
    main()
