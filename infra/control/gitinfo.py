"""The git facts a release records and the prod guard checks: commit, dirty tree, whether it is on main."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.runtime.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GitInfo:
    commit: str
    dirty: bool
    branch: str | None

    @property
    def tag(self) -> str:
        """The Modal deployment tag: the commit, marked when the tree had uncommitted changes."""
        return f"git-{self.commit[:12]}{'-dirty' if self.dirty else ''}"


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def read(cwd: Path | None = None) -> GitInfo:
    cwd = cwd or REPO
    head = _git("rev-parse", "HEAD", cwd=cwd)
    if head.returncode != 0:
        raise UserError(f"{cwd} is not a git checkout with a commit: releases record the commit they deploy")
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    branch = _git("symbolic-ref", "--short", "-q", "HEAD", cwd=cwd).stdout.strip() or None
    return GitInfo(commit=head.stdout.strip(), dirty=bool(status.stdout.strip()), branch=branch)


def is_on_branch(commit: str, branch: str, cwd: Path | None = None) -> bool:
    """True when `commit` is contained in `branch` (locally or as origin/<branch>)."""
    cwd = cwd or REPO
    for ref in (branch, f"origin/{branch}"):
        if _git("rev-parse", "--verify", "-q", ref, cwd=cwd).returncode == 0:
            if _git("merge-base", "--is-ancestor", commit, ref, cwd=cwd).returncode == 0:
                return True
    return False
