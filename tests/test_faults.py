"""Faults leave nothing half-done; what records the boundary's calls passes them on unchanged; plans are stable."""

from __future__ import annotations

import inspect
import json
import subprocess

import pytest

from infra.control.resolve import resolve
from infra.control.settings import load_settings
from infra.perf import gate
from infra.perf.releases import ReleaseStore
from infra.runtime import kernels, weights
from infra.runtime.errors import Refused
from infra.runtime.remote import ModalRemote, Remote
from stages import pipeline, promote
from stages.common import Context
from tests.conftest import deployment, free_port, project_copy, standin_env
from tests.fakes.hub_server import HubServer, make_repo
from tests.fakes.recorded import Recorded
from tests.test_weights import _hub_client_isolated  # noqa: F401  (autouse: a clean Hub client)


def failing_commit():
    raise OSError("volume commit failed: Modal returned 500")


def test_a_volume_commit_failure_fails_the_download_and_leaves_no_marker(tmp_path):
    repo = make_repo("acme/commit-fails")
    with HubServer(repo) as hub:
        with pytest.raises(OSError, match="volume commit failed"):
            weights.download(repo.repo_id, repo.commit, tmp_path, endpoint=hub.url, commit_volume=failing_commit)
    assert weights.read_marker(tmp_path, repo.repo_id, repo.commit) is None


def test_a_volume_commit_failure_fails_the_compile_and_leaves_no_marker(tmp_path):
    d = deployment()
    with pytest.raises(OSError, match="volume commit failed"):
        kernels.compile_kernels(d, tmp_path, commit_volume=failing_commit, env=standin_env(),
                                local_root=tmp_path / "local", port=free_port())
    assert not kernels.marker_path(tmp_path, d).exists()


def test_manifest_write_refuses_when_someone_else_wrote_first(wire):
    d = deployment()
    store = ReleaseStore(ModalRemote())
    mine = store.read(d)
    theirs = store.read(d)
    store.write(d, theirs, expected_revision=0)
    with pytest.raises(Refused, match=r"changed while we worked \(revision 0 -> 1\); nothing recorded"):
        store.write(d, mine, expected_revision=0)
    assert store.read(d).revision == 1


def test_the_recorded_boundary_has_the_real_boundarys_methods_and_signatures():
    protocol = {n for n, v in vars(ModalRemote).items() if callable(v) and not n.startswith("_")}
    assert Remote is ModalRemote and {"deploy", "read_file", "deploy_sentinel"} <= protocol
    real, recorded = ModalRemote(), Recorded()
    for name in protocol:
        assert inspect.signature(getattr(recorded, name)) == inspect.signature(getattr(real, name)), name


def test_plan_json_is_stable_and_secret_free(cli):
    first = cli("plan", "--env", "prod", "--json")
    second = cli("plan", "--env", "prod", "--json", HF_TOKEN="hf_abcdefghijklmnop")
    assert first.returncode == 0 and first.stdout == second.stdout
    plans = json.loads(first.stdout)
    assert [p["recipe"] for p in plans] == ["qwen3-8b-low-latency", "qwen3.6-35b-vlm"]
    assert "hf_abcdefghijklmnop" not in second.stdout


def test_plan_text_says_whether_the_endpoint_is_public(cli):
    dev = cli("plan", "--env", "dev", "--recipe", "qwen3-8b-low-latency").stdout
    prod = cli("plan", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--full").stdout
    assert "Endpoint       PUBLIC (no auth)" in dev and "WARNING        endpoint is public" in dev
    assert "Endpoint       private: Modal proxy auth" in prod
    # Issue 25: the standing cost is Modal's bill, GPUs and CPU and memory, times prod's narrow-region multiplier.
    assert ("Cost           per replica: (2×H100 $7.90 + 4 cores $0.19 + 16 GiB $0.13) × 1.75 (narrow region us-east) "
            "= $14.38/h") in prod
    assert ("               rates: offline table (modal.com/pricing, 2026-07-01); region multiplier: "
            "modal.com/docs/guide/region-selection, read 2026-12-01") in prod
    assert "Standing cost  1 warm replica(s) = $14.38/h, 1440 GPU-hours and $10,350.79 per 30 days" in prod
    assert "Draft model    Tengyunw/qwen3_8b_eagle3 @ (unset) [UNPINNED]" in prod


def test_invoke_list_and_help_explain_every_task(cli):
    listing = cli("--list").stdout
    for name in ("plan", "build", "download", "compile", "deploy", "smoke", "bench", "promote", "rollback", "status",
                 "try", "pipeline", "scale"):
        assert f"  {name} " in listing, name
        helptext = cli("--help", name).stdout
        assert "Docstring:" in helptext and "--" in helptext
        options = [line for line in helptext.splitlines() if line.strip().startswith("-")]
        assert all(len(line.split(None, 2)) >= 2 for line in options)
    assert "environment: dev, staging or prod" in cli("--help", "deploy").stdout


def test_promote_from_manifest_runs_from_a_worktree_of_the_staged_commit(tmp_path, wire):
    tree = project_copy(tmp_path)
    git = lambda *a: subprocess.run(["git", *a], cwd=tree, check=True, capture_output=True)  # noqa: E731
    for env in ("staging", "prod"):  # the Modal Secret their settings name (secrets.hf_token_secret)
        wire.create_secret(env, "huggingface-secret", {"HF_TOKEN": "hf_" + "x" * 30})
    modal = ModalRemote()
    staging = load_settings("staging", "qwen3-8b-low-latency")
    ctx = Context(settings=staging, remote=modal, repo=tree, say=lambda m: None)
    pipeline.run(ctx, resolve(staging, "qwen3-8b-low-latency"))
    staged = ReleaseStore(modal).read(resolve(staging, "qwen3-8b-low-latency")).current
    (tree / "NEWS").write_text("work after the release")
    git("add", "NEWS")
    git("-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q", "-m", "later work")

    prod = load_settings("prod", "qwen3-8b-low-latency")
    target = Context(settings=prod, remote=modal, repo=tree, yes=True, say=lambda m: None)
    with pytest.raises(Refused, match="--from-manifest"):
        promote.run(Context(settings=staging, remote=modal, repo=tree), target, promote.Options("qwen3-8b-low-latency"))
    # The worktree's promotion is a fresh `invoke` in another process: the same fake control plane, through the
    # environment the `wire` fixture set.
    # The worktree runs its own commit's gate; skipped here (timing is not this test's subject), and the skip and
    # its reason travel to the worktree's promotion and into the manifest.
    skip = gate.skip_override("worktree test", environ={})
    options = promote.Options("qwen3-8b-low-latency", from_manifest=True, skip_gate=skip)
    result = promote.run(Context(settings=staging, remote=modal, repo=tree), target, options)
    assert result.status == "ran"
    current = ReleaseStore(modal).read(resolve(prod, "qwen3-8b-low-latency")).current
    assert current.kind == "promote" and current.commit == staged.commit and current.smoke_passed
    assert current.gate.verdict == "skipped" and current.gate.override.reason == "worktree test"
    assert subprocess.run(["git", "worktree", "list"], cwd=tree, capture_output=True, text=True).stdout.count("\n") == 1
