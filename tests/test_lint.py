"""The lint the style promises, as part of the README's test command (so `.ci/run` and every CI run enforce it).

ruff's rules and the line length (120) live in pyproject.toml ([tool.ruff]); this runs the pinned ruff on the
whole repository and shows its findings when any remain.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def ruff(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_the_repository_passes_ruff_at_the_configured_line_length():
    done = ruff("check", "--no-cache", ".")
    assert done.returncode == 0, f"`ruff check .` found problems (fix them; line length 120):\n{done.stdout}"


def test_the_lint_catches_a_long_line(tmp_path):
    """The check above can fail: the project's own configuration refuses a 121-character line."""
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "long.py").write_text("X = " + repr("x" * 115) + "\n")
    done = ruff("check", "--no-cache", ".", cwd=tmp_path)
    assert done.returncode == 1 and "E501" in done.stdout, done.stdout
