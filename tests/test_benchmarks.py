"""The benchmark scripts still run: each briefly, as a user would, judged on what it prints, never on how fast."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_plan_overhead_runs_every_case_once():
    """benchmarks/plan_overhead.py had stopped running: the app module reads INFRA_DEPLOYMENT, which it did not set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_", "FAKE_"))}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plan_overhead.py"), "--repeat", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^(.+?)\s+(\d+\.\d{3})\s+(\d+\.\d{2})$", done.stdout, re.M)
    assert [name for name, _, _ in rows] == ["python -c pass", "import modal", "import infra.runtime.app",
                                             "invoke plan --env prod --json"]
    assert all(float(seconds) > 0 for _, seconds, _ in rows)
