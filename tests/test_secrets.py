"""Plant recognisable fake credentials, run every task, and grep every output and every file for them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from infra.runtime.secrets import mask, scrub
from tests.conftest import REPO

PLANTED = {
    "HF_TOKEN": "hf_PLANTEDhuggingface0123456789",
    "MODAL_TOKEN_ID": "ak-PLANTEDmodalid0123456789",
    "MODAL_TOKEN_SECRET": "as-PLANTEDmodalsecret0123456789",
    "MODAL_KEY": "wk-PLANTEDproxykey0123456789",
    "MODAL_SECRET": "ws-PLANTEDproxysecret0123456789",
}


def leaks(text: str) -> list[str]:
    return [name for name, value in PLANTED.items() if value in text or value[6:20] in text]


def test_no_task_prints_or_writes_a_planted_token(cli, fake_server, tmp_path, monkeypatch):
    server = fake_server("--tokens", "5")
    cli.wire.default_upstream = server.url
    # The fake control plane takes the planted pairs as the workspace's token and proxy-auth key.
    monkeypatch.setattr(cli.wire, "token", (PLANTED["MODAL_TOKEN_ID"], PLANTED["MODAL_TOKEN_SECRET"]))
    monkeypatch.setattr(cli.wire, "proxy_token", (PLANTED["MODAL_KEY"], PLANTED["MODAL_SECRET"]))
    cli.env |= PLANTED
    # prod's promotion gate runs too (it measures staging's endpoint with its credentials), held to a limit no
    # timing noise reaches; its job summary is one more file that must not leak.
    cli.env |= {"INFRA_GATE__OBJECTIVES": '[{ metric = "ttft_p90_ms", level = 1, max = 60000 }]',
                "GITHUB_STEP_SUMMARY": str(tmp_path / "job-summary.md")}
    # Two chains that touch different environments, run side by side; each in its own order.
    staging_prod = [
        ["plan", "--env", "prod"],
        ["plan", "--env", "staging", "--json"],
        ["pipeline", "--env", "staging", "--recipe", "qwen3-8b-low-latency", "--yes"],
        ["pipeline", "--env", "staging", "--recipe", "qwen3-8b-low-latency", "--yes", "--json"],
        ["status", "--env", "staging", "--json"],
        ["promote", "--from", "staging", "--to", "prod", "--recipe", "qwen3-8b-low-latency", "--yes", "--json"],
        ["scale", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--min", "2"],  # a deployed server only
    ]
    dev = [
        ["build", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--json"],
        ["download", "--env", "dev", "--recipe", "qwen3.6-35b-vlm"],
        ["compile", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--dry-run"],
        ["deploy", "--env", "dev", "--recipe", "qwen3.6-35b-vlm"],
        ["smoke", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--json"],
        ["try", "--env", "dev", "--recipe", "qwen3.6-35b-vlm"],
        ["deploy", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--set", "scaling.max_containers=1"],  # a change
        ["rollback", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--yes"],
        ["bench", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--url", server.url, "--concurrency", "1,2",
         "--requests", "4", "--max-tokens", "4",
         "--output", str(tmp_path / "bench.json")],
    ]

    # In this process, one command after another: seventeen interpreter starts took a minute on a loaded machine. The
    # code runs from this repository, whose working tree may be dirty (a developer's): git is read in the test's own
    # clean checkout instead, wherever the stages ask (their Context's `repo` was bound to this repository when
    # stages/common.py was first imported, so patching gitinfo.REPO alone does not reach it).
    from infra.control import gitinfo

    read, on_branch = gitinfo.read, gitinfo.is_on_branch

    def clean(cwd: Path | None) -> Path:
        return cli.project if cwd in (None, REPO, gitinfo.REPO) else cwd

    monkeypatch.setattr(gitinfo, "REPO", cli.project)
    monkeypatch.setattr(gitinfo, "read", lambda cwd=None: read(clean(cwd)))
    monkeypatch.setattr(gitinfo, "is_on_branch", lambda commit, branch, cwd=None: on_branch(commit, branch, clean(cwd)))
    outputs = []
    for args in staging_prod + dev:
        done = cli.in_process(*args)
        outputs.append((args, done.returncode, done.stdout + done.stderr))
    # An error whose text contains a token (as a misbehaving SDK might raise): scrubbed, even with --debug.
    cli.wire.fail("AppPublish", f"permission denied for token {PLANTED['MODAL_TOKEN_SECRET']}")
    done = cli("deploy", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--force", "--debug")
    outputs.append((["deploy", "--force", "--debug"], done.returncode, done.stdout + done.stderr))
    for args, code, text in outputs[:-1]:
        assert code == 0, (args, text[-2000:])
    assert outputs[-1][1] != 0 and "****" in outputs[-1][2]
    for args, _, text in outputs:
        assert leaks(text) == [], (args, text[-1500:])
    # Every file any task wrote: local state, manifests, the fake Volumes, the bench report.
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file() and not p.name.startswith("requests-")
               and not checked_in(p, cli.project)]
    assert any("releases" in str(p) for p in written) and any("state" in str(p) for p in written)
    assert "Promotion gate passed" in (tmp_path / "job-summary.md").read_text()
    for path in written:
        assert leaks(path.read_text(errors="replace")) == [], path
    # Modal's proxy in front of the endpoint did get the planted proxy-auth pair (its key): where they belong.
    assert any(r["credentials"] == "valid" for r in cli.wire.proxied)


def checked_in(path: Path, project: Path) -> bool:
    """A file of the checkout the commands ran in, as this repository has it (this very test plants the tokens)."""
    if not path.is_relative_to(project) or ".git" in path.relative_to(project).parts:
        return path.is_relative_to(project / ".git")
    source = REPO / path.relative_to(project)
    return source.is_file() and source.read_bytes() == path.read_bytes()


def test_plan_masks_local_credentials(cli):
    done = cli("plan", "--env", "prod", **PLANTED)
    assert "HF_TOKEN hf_…(masked)" in done.stdout and "MODAL_TOKEN_SECRET as-…(masked)" in done.stdout
    assert leaks(done.stdout + done.stderr) == []


def test_mask_and_scrub():
    assert mask(None) == "not set" and mask("hf_abc123456") == "hf_…(masked)" and mask("plainsecret") == "…(masked)"
    assert scrub("token=hf_abc123456 end", {"HF_TOKEN": "hf_abc123456"}) == "token=**** end"
    assert scrub("short a b", {"HF_TOKEN": "a"}) == "short a b"  # too short to be a secret: left alone


def test_nothing_runs_a_shell_on_interpolated_values():
    offenders = []
    for path in [*REPO.glob("infra/**/*.py"), *REPO.glob("stages/**/*.py"), REPO / "tasks.py"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_manifest_json_holds_secret_names_only(tmp_path):
    from infra.perf.releases import Manifest
    from tests.fakes import records

    release = records.release(1, note=f"oops {PLANTED['HF_TOKEN']}")
    import os

    os.environ["HF_TOKEN"] = PLANTED["HF_TOKEN"]
    try:
        text = Manifest(env="prod", recipe="x", current=release, history=[release]).to_json()
    finally:
        del os.environ["HF_TOKEN"]
    assert PLANTED["HF_TOKEN"] not in text
    assert json.loads(text)["current"]["deployment"]["secrets"]["hf_token_secret"] == "huggingface-secret"
