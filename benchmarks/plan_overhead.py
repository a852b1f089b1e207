"""How much `plan` and the app module cost on top of importing Modal itself.

Each measurement is a fresh interpreter (what a user or CI pays), repeated; the
median is printed with the ratio to `import modal` alone.

    python benchmarks/plan_overhead.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:  # a measurement of a failure is no measurement: say which and why
        sys.exit(f"{' '.join(argv[1:])} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - started


def deployment_json(env: str, recipe: str) -> str:
    """What a deploy puts in INFRA_DEPLOYMENT for the app module (infra/runtime/current.py), resolved as deploy does."""
    sys.path.insert(0, str(REPO))
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings

    return resolve(load_settings(env, recipe), recipe).to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))}
    env["PYTHONPATH"] = str(REPO)
    # The app module reads the deployment a deploy baked in (INFRA_DEPLOYMENT), not INFRA_ENV/INFRA_RECIPE.
    app_env = env | {"INFRA_DEPLOYMENT": deployment_json("prod", "qwen3-8b-low-latency"), "MODAL_ENVIRONMENT": "prod"}
    py = sys.executable
    cases = {
        "python -c pass": ([py, "-c", "pass"], env),
        "import modal": ([py, "-c", "import modal"], env),
        "import infra.runtime.app": ([py, "-c", "import infra.runtime.app"], app_env),
        "invoke plan --env prod --json": ([py, "-m", "invoke", "plan", "--env", "prod", "--json"], env),
    }
    timed(cases["import modal"][0], env)  # warm the file cache once
    medians = {name: statistics.median(timed(argv, e) for _ in range(repeat)) for name, (argv, e) in cases.items()}
    base = medians["import modal"]
    print(f"median of {repeat} fresh interpreters each")
    print(f"{'':34} {'seconds':>8} {'x import modal':>15}")
    for name, seconds in medians.items():
        print(f"{name:34} {seconds:8.3f} {seconds / base:15.2f}")


if __name__ == "__main__":
    main()
