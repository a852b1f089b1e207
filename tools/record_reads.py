"""Count string-key reads in the project's code: `x["key"]` and `x.get("key")` (also `.pop`, `.setdefault`).

Issue 29 asks that records (what this project persists or prints as JSON) be read by attribute outside their own
models. This counts every string-key read in infra/, stages/ and tasks.py by AST, leaving out the bodies of model
classes (a pydantic model's own validators and upgrades are where a record's raw layout may be read), and sorts
each module into one of two kinds:

- INPUT: what it reads by key is not a record of this project but another system's data or the user's input (the
  OpenAI stream SGLang sends, Modal's API answers and billing rows, log lines, settings files and variables, SGLang's
  own flag tables). Those stay dicts on purpose; the reason is given per module.
- everything else: reads of records or of dicts the project builds itself; the number to bring down.

    python tools/record_reads.py            # per module, record reads first, then the totals
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL_BASES = {"BaseModel", "Stored", "Frozen", "BaseSettings", "_Strict"}
INPUT = {
    "infra/perf/client.py": "the OpenAI-compatible stream SGLang sends (SSE JSON chunks)",
    "infra/control/costs.py": "Modal's billing answers (rates, report rows, their tags)",
    "infra/control/settings.py": "the environment's TOML file and INFRA_* variables, before validation",
    "infra/control/sglang_flags.py": "SGLang's own flag tables, read from its wheels (sglang_versions.json)",
    "infra/control/upgrade.py": "PyPI's and the Hub's JSON answers, and a recipe's source being rewritten",
    "infra/runtime/modal_objects.py": "Modal's object listings",
    "infra/runtime/modal_rpc.py": "Modal's gRPC answers",
    "infra/runtime/remote.py": "Modal's answers (app history, deploy results, the lock entry)",
    "infra/runtime/lifecycle.py": "SGLang's HTTP answers (/health, /get_server_info)",
    "infra/runtime/weights.py": "the Hub's answers and cache layout",
    "stages/logs.py": "Modal's log entries",
    "stages/runner.py": "invoke's configuration and the flag tables' summary",
}


def string_key_reads(tree: ast.AST) -> list[int]:
    """Line numbers of string-key reads outside model classes."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")) in MODEL_BASES
                                                  for b in node.bases):
            skip |= {id(n) for n in ast.walk(node)}
    lines = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop", "setdefault") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            lines.append(node.lineno)
    return lines


def count(repo: Path = REPO) -> Counter:
    paths = [*repo.glob("infra/**/*.py"), *repo.glob("stages/*.py"), repo / "tasks.py"]
    return Counter({str(p.relative_to(repo)): n for p in sorted(paths)
                    if (n := len(string_key_reads(ast.parse(p.read_text()))))})


def main() -> int:
    found = count()
    records = {m: n for m, n in found.items() if m not in INPUT}
    for module, n in sorted(records.items(), key=lambda kv: -kv[1]):
        print(f"{n:5d}  {module}")
    print(f"{sum(records.values()):5d}  string-key reads outside models, in {len(records)} modules")
    inputs = sum(n for m, n in found.items() if m in INPUT)
    print(f"{inputs:5d}  more in modules that read other systems' data or the user's input (INPUT)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
