"""What `upgrade-check.yml` runs weekly: find new SGLang and modal releases and new commits of the pinned
model and draft revisions, and open one pull request per recipe with `invoke upgrade`'s migration.

Found without being looked for: PyPI's JSON API names the newest releases, the Hub names the commit each
model's main branch points at; for each recipe that is behind, `invoke upgrade --dry-run --json` gives the
report (the pull request's body, infra/control/upgrade.py `markdown`), `invoke upgrade --force` writes the
migrated recipe on a branch, and `gh pr create` opens it. A branch that already exists on the remote means
the pull request is open already: nothing is opened twice. `--print` shows what it would open, and changes
nothing. Every network wait is bounded (`--timeout`, 15 s) and its failure names the address.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from infra.control import sglang_flags
from infra.control.upgrade import MODAL_PIN, PYPROJECT, VERSION_RE, Report, markdown
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import Recipe

PYPI = "https://pypi.org/pypi"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Moves:
    """What one recipe is behind on: the `invoke upgrade` flags that catch it up."""

    recipe: str
    sglang: str | None = None
    modal: str | None = None
    model_revision: str | None = None
    draft_revision: str | None = None

    @property
    def any(self) -> bool:
        return any((self.sglang, self.modal, self.model_revision, self.draft_revision))

    def flags(self) -> list[str]:
        out = ["--recipe", self.recipe]
        for flag, value in (("--sglang", self.sglang), ("--modal", self.modal),
                            ("--model-revision", self.model_revision), ("--draft-revision", self.draft_revision)):
            out += [flag, value] if value else []
        return out

    @property
    def branch(self) -> str:
        parts = [f"sglang-{self.sglang}" if self.sglang else "", f"modal-{self.modal}" if self.modal else "",
                 f"model-{self.model_revision[:8]}" if self.model_revision else "",
                 f"draft-{self.draft_revision[:8]}" if self.draft_revision else ""]
        return f"upgrade/{self.recipe}/" + "-".join(p for p in parts if p)


def newest_release(package: str, *, index: str = PYPI, timeout: float = 15.0) -> str:
    """The newest final release of `package` on PyPI (pre-releases and yanked files skipped)."""
    url = f"{index}/{package}/json"
    try:
        answer = requests.get(url, timeout=timeout)
        answer.raise_for_status()
    except requests.RequestException as exc:
        raise SystemExit(f"upgrade-check: {url}: {exc.__class__.__name__}: {exc} (check the network or --index)")
    releases = [v for v, files in answer.json()["releases"].items()
                if VERSION_RE.fullmatch(v) and files and not all(f.get("yanked") for f in files)]
    return max(releases, key=sglang_flags.version_key)


def head_commit(repo: str, *, endpoint: str | None = None) -> str:
    from infra.runtime import weights

    return weights.commit_of(repo, "main", endpoint=endpoint)


def moves_for(recipe: Recipe, *, sglang: str, modal: str, pinned_modal: str, commits: dict[str, str]) -> Moves:
    """The upgrade flags that bring `recipe` to the newest releases and the models' newest commits."""
    newer = sglang_flags.version_key(sglang) > sglang_flags.version_key(recipe.sglang_version)
    model = commits.get(recipe.model)
    draft = commits.get(recipe.draft_model) if recipe.draft_model else None
    return Moves(
        recipe=recipe.name,
        sglang=sglang if newer else None,
        modal=modal if sglang_flags.version_key(modal) > sglang_flags.version_key(pinned_modal) else None,
        model_revision=model if model and model != recipe.model_revision else None,
        draft_revision=draft if draft and draft != recipe.draft_revision else None,
    )


def invoke(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True)


def report_for(moves: Moves, env: str, cwd: Path = REPO) -> Report:
    done = invoke("upgrade", "--env", env, *moves.flags(), "--dry-run", "--json", cwd=cwd)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"upgrade-check: invoke upgrade {' '.join(moves.flags())} --dry-run: {done.stderr.strip()}")
    return Report.model_validate(json.loads(done.stdout)[0]["detail"])


def open_pull_request(moves: Moves, env: str, cwd: Path = REPO) -> str:
    """On its own branch: the flag table if new, the migration written, pushed, and the pull request opened."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    if git("ls-remote", "--exit-code", "--heads", "origin", moves.branch).returncode == 0:
        return f"{moves.branch}: already open"
    git("checkout", "-B", moves.branch)
    if moves.sglang and moves.sglang not in sglang_flags.supported_versions():
        table = invoke("sglang-flags", "--version", moves.sglang, cwd=cwd)
        if table.returncode != 0:
            raise SystemExit(f"upgrade-check: invoke sglang-flags --version {moves.sglang}: {table.stderr.strip()}")
    body = markdown(report_for(moves, env, cwd))
    written = invoke("upgrade", "--env", env, *moves.flags(), "--force", cwd=cwd)
    if written.returncode != 0:
        raise SystemExit(f"upgrade-check: invoke upgrade {' '.join(moves.flags())}: {written.stderr.strip()}")
    git("commit", "-qam", f"Upgrade {moves.recipe}: {moves.branch.rsplit('/', 1)[1]}")
    git("push", "-q", "origin", moves.branch)
    title = f"Upgrade {moves.recipe}: {moves.branch.rsplit('/', 1)[1]}"
    done = subprocess.run(["gh", "pr", "create", "--head", moves.branch, "--title", title, "--body-file", "-"],
                          input=body, cwd=cwd, capture_output=True, text=True)
    git("checkout", "-")
    if done.returncode != 0:
        raise SystemExit(f"upgrade-check: gh pr create {moves.branch}: {done.stderr.strip()}")
    return f"{moves.branch}: opened {done.stdout.strip()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.upgrade_check", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="prod", help="environment whose plan the pull request shows")
    parser.add_argument("--index", default=PYPI, help="PyPI's JSON API")
    parser.add_argument("--hub", default=None, help="the Hub's address (default: huggingface_hub's)")
    parser.add_argument("--print", action="store_true", help="print each pull request's body; open nothing")
    args = parser.parse_args(argv)
    sglang, modal = newest_release("sglang", index=args.index), newest_release("modal", index=args.index)
    pinned_modal = MODAL_PIN.search(PYPROJECT.read_text()).group(1)
    repos = {r for recipe in RECIPES.values() for r in (recipe.model, recipe.draft_model) if r}
    commits = {repo: head_commit(repo, endpoint=args.hub) for repo in sorted(repos)}
    print(f"newest: SGLang {sglang}, modal {modal} (pinned {pinned_modal}); "
          + ", ".join(f"{repo}@{commit[:8]}" for repo, commit in commits.items()))
    for recipe in RECIPES.values():
        moves = moves_for(recipe, sglang=sglang, modal=modal, pinned_modal=pinned_modal, commits=commits)
        if not moves.any:
            print(f"{recipe.name}: up to date")
            continue
        if not args.print:
            print(open_pull_request(moves, args.env))
        elif moves.sglang and moves.sglang not in sglang_flags.supported_versions():
            print(f"--- {moves.branch}: needs `invoke sglang-flags --version {moves.sglang}` first (not run: --print)")
        else:
            print(f"--- {moves.branch}\n{markdown(report_for(moves, args.env))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
