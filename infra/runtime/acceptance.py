"""The GPU acceptance suite, run where the recipe runs: `python -m pytest tests/gpu` and its report, read back.

`invoke gpu-test` runs it in a Modal Function with the recipe's own image, GPU and Volumes, as exactly the command a
developer runs on a machine with a GPU, so the two cannot drift (docs/acceptance.md). Standard library and pydantic
only: containers import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from infra.runtime.model import Stored

SHAPES = ("tiny", "real", "model")
Shape = Literal["tiny", "real", "model"]
SUITE = "tests/gpu"
PROJECT = "/root/project"  # where the suite and the code it imports are mounted in the container
SHAPE_VARIABLE = "GPU_SUITE_SHAPE"
RECIPE_VARIABLE = "GPU_SUITE_RECIPE"
REPORT_VARIABLE = "GPU_SUITE_REPORT"
# pytest's own options only: where its report goes, no cache folder in a read-only mount, and no addopts from
# pyproject.toml (xdist's `-n 4` is for the CPU suite; the GPU suite runs one server at a time).
PYTEST_OPTIONS = ("-o", "addopts=", "-p", "no:cacheprovider", "-rA", "-q")
OUTPUT_TAIL = 6000  # characters of pytest's output kept in the result


class Case(Stored):
    """One test as pytest's JUnit report has it."""

    test: str  # tests/gpu/test_x.py::test_name
    outcome: Literal["passed", "failed", "error", "skipped"]
    seconds: float
    message: str | None = None  # the failure's or the skip's first line


class SuiteResult(Stored):
    """What one run of the suite found: every test's outcome, the numbers it measured, where it ran."""

    shape: Shape
    recipe: str
    command: list[str]
    exit_code: int
    seconds: float
    cases: list[Case]
    report: dict = {}  # GPU_SUITE_REPORT: what the tests measured
    gpu: str | None = None  # nvidia-smi -L
    sglang: str | None = None  # the installed SGLang's version
    output_tail: str = ""

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cases)

    @property
    def failing(self) -> list[Case]:
        return [c for c in self.cases if c.outcome in ("failed", "error")]

    @property
    def passed(self) -> bool:
        """Every test that ran passed, at least one ran, and pytest agrees (exit code 0)."""
        return self.exit_code == 0 and not self.failing and self.count("passed") > 0


class AcceptanceRun(BaseModel):
    """What a release keeps of one run at one shape (infra/perf/releases.py `Release.acceptance`)."""

    model_config = ConfigDict(extra="ignore")  # a newer version's fields, read by an older one

    passed: bool
    at: float
    seconds: float
    gpu: str | None = None
    sglang: str | None = None
    cases: list[Case] = []
    report: dict = {}

    @classmethod
    def of(cls, r: SuiteResult) -> AcceptanceRun:
        return cls(passed=r.passed, at=time.time(), seconds=r.seconds, gpu=r.gpu, sglang=r.sglang, cases=r.cases,
                   report=r.report)


class JunitCase(BaseModel):
    """A <testcase> element's attributes in pytest's JUnit XML (another program's output: the rest is ignored)."""

    name: str = "?"
    file: str | None = None
    classname: str = ""
    time: float = 0.0


class JunitOutcome(BaseModel):
    """A <failure>, <error> or <skipped> element's `message` attribute."""

    message: str | None = None


def parse_junit(xml: str) -> list[Case]:
    """pytest's JUnit XML, one Case per <testcase>: its file::name, outcome, time and first message line."""
    cases = []
    for tc in ET.fromstring(xml).iter("testcase"):
        case = JunitCase.model_validate(tc.attrib)
        outcome, message = "passed", None
        for tag, kind in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if (found := tc.find(tag)) is not None:
                outcome = kind
                text = (JunitOutcome.model_validate(found.attrib).message or found.text or "").strip()
                message = text.splitlines()[0][:300] if text else None
                break
        cases.append(Case(test=f"{case.file or case.classname.replace('.', '/') + '.py'}::{case.name}",
                          outcome=outcome, seconds=round(case.time, 3), message=message))
    return cases


def _probe(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_suite(shape: str, recipe: str, *, project: str | Path = PROJECT, suite: str = SUITE,
              env: dict[str, str] | None = None, timeout: float | None = None) -> SuiteResult:
    """The suite's result, whatever the tests found; raises only where the suite cannot run at all."""
    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r}: allowed: {', '.join(SHAPES)}")
    with tempfile.TemporaryDirectory(prefix="gpu-test-") as tmp:
        junit, report = Path(tmp) / "junit.xml", Path(tmp) / "report.json"
        began = time.monotonic()
        chosen = {SHAPE_VARIABLE: shape, RECIPE_VARIABLE: recipe, REPORT_VARIABLE: str(report)}  # tests/gpu reads them
        done = subprocess.run([sys.executable, "-m", "pytest", suite, *PYTEST_OPTIONS, f"--junitxml={junit}"],
                              cwd=project, env=dict(os.environ if env is None else env) | chosen,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        seconds = round(time.monotonic() - began, 1)
        if not junit.exists():  # pytest never got to collect (an import error in conftest, a bad option)
            raise RuntimeError(f"pytest wrote no report (exit {done.returncode}): {done.stdout[-2000:]}")
        cases = parse_junit(junit.read_text())
        measured = json.loads(report.read_text()) if report.exists() else {}
    sglang = _probe([sys.executable, "-c", "import importlib.metadata as m; print(m.version('sglang'))"])
    return SuiteResult(shape=shape, recipe=recipe, command=["python", "-m", "pytest", suite], exit_code=done.returncode,
                       seconds=seconds, cases=cases, report=measured, gpu=_probe(["nvidia-smi", "-L"]), sglang=sglang,
                       output_tail=done.stdout[-OUTPUT_TAIL:])


def main(argv: list[str] | None = None) -> int:
    """The Function's body from a shell on any machine with a GPU; exit code 0 only when the suite passed."""
    import argparse

    p = argparse.ArgumentParser(description="python -m pytest tests/gpu at one shape, its JUnit report read back")
    p.add_argument("--shape", choices=SHAPES, default="tiny")
    p.add_argument("--recipe", default="qwen3-8b-low-latency")
    p.add_argument("--project", default=".", help="the checkout that holds tests/gpu (default: here)")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    r = run_suite(args.shape, args.recipe, project=Path(args.project).resolve())
    for c in r.cases:
        print(f"{c.outcome:<8} {c.seconds:>8.1f}  {c.test}" + (f"  ({c.message})" if c.message else ""), flush=True)
    print(f"{'passed' if r.passed else 'FAILED'}: shape {r.shape}, exit {r.exit_code}, {r.seconds:.0f} s, "
          f"GPU {r.gpu}, SGLang {r.sglang}", flush=True)
    if args.json:
        Path(args.json).write_text(r.model_dump_json(indent=1))
    return 0 if r.passed else 1


if __name__ == "__main__":
    sys.exit(main())
