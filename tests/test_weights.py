"""The weight download, run for real: `infra.runtime.weights.download` drives the real `huggingface_hub`
0.36.0 client (`snapshot_download`, `HfApi.model_info`) against a local Hub (tests/fakes/hub_server.py),
with a temporary folder as the Volume.

What must hold, because the server trusts it blindly: a completion marker exists only
when every file of the pinned commit is in the Volume and committed; a completed download
is never fetched again (no request at all when pinned, one metadata request when not);
an interrupted one leaves no marker and resumes; a token authenticates but is never
written down; and an offline server refuses to start without its weights.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path

import pytest

from infra.runtime import weights
from infra.runtime.weights import WeightsMissing
from tests.conftest import changed, deployment
from tests.fakes.hub_server import HubServer, MiB, make_repo

TOKEN = "hf_RightTokenForTheGatedRepo0123456789"
WRONG_TOKEN = "hf_WrongTokenSomeoneTypedBadly9876543210"


@pytest.fixture(autouse=True)
def _hub_client_isolated(monkeypatch, tmp_path):
    """The client must see only what a test gives it: no developer token, proxy or offline switch.

    `huggingface_hub` reads its settings when first imported and the token file at each
    request, so environment variables alone are not enough: patch its constants too.
    """
    from huggingface_hub import constants

    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-hf-home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_ENABLE_HF_TRANSFER", False)


@pytest.fixture(scope="module")
def repo():
    """acme/tiny-llm with two commits: v1 (older) and main, different config and weights."""
    return make_repo("acme/tiny-llm", history=True)


@pytest.fixture
def hub(repo):
    with HubServer(repo) as server:
        yield server


@pytest.fixture
def volume(tmp_path) -> Path:
    return tmp_path / "volume"


class VolumeCommits:
    """A `commit_volume` that notes, at each call, whether the marker (and ref file) already existed.

    Order matters: the files must be committed before the marker claims them, and the marker
    itself committed after it is written.
    """

    def __init__(self, volume: Path, repo_id: str, commit: str, ref: str | None = None):
        self.marker = weights.marker_path(volume, repo_id, commit)
        self.ref = weights.ref_path(volume, repo_id, ref) if ref else None
        self.snapshot = volume / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit
        self.calls: list[dict] = []

    def __call__(self) -> None:
        files = sorted(str(p.relative_to(self.snapshot)) for p in self.snapshot.rglob("*") if p.is_file())
        self.calls.append(
            {
                "marker": self.marker.exists(),
                "ref": self.ref.exists() if self.ref else None,
                "files": files,
            }
        )


def snapshot_dir(volume: Path, repo_id: str, commit: str) -> Path:
    return volume / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- pinned


def test_pinned_revision_is_downloaded_into_the_hf_cache_layout_with_the_hubs_bytes(repo, hub, volume):
    """A pinned commit that is not main's head is what lands on the Volume, nothing else is asked for."""
    old = repo.refs["v1"]
    assert old != repo.commit

    result = weights.download(repo.repo_id, old, volume, endpoint=hub.url)

    assert (result.repo, result.requested, result.commit, result.skipped) == (repo.repo_id, old, old, False)
    snapshot = snapshot_dir(volume, repo.repo_id, old)
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(repo.files(old))
    for name, data in repo.files(old).items():
        assert (snapshot / name).read_bytes() == data, name
    # The HF cache layout SGLang reads offline: snapshot entries are links to content-addressed blobs.
    big = snapshot / "model.safetensors"
    assert big.is_symlink()
    assert big.resolve().name == repo.sha256("model.safetensors", old)  # LFS blob named by its sha256
    assert big.resolve().parent == volume / "models--acme--tiny-llm" / "blobs"
    # Main's head was never touched: every request named the pinned commit.
    assert not snapshot_dir(volume, repo.repo_id, repo.commit).exists()
    named = [r.path for r in hub.requests if not r.path.startswith("/cdn/")]
    assert named and all(old in path for path in named), named
    # No ref file for a pinned revision: there is nothing to resolve.
    assert not (volume / weights.MARKERS / "acme--tiny-llm" / "refs").exists()


def test_marker_is_written_after_the_files_are_committed_and_committed_itself(repo, hub, volume):
    """commit_volume #1 sees every file and no marker; commit_volume #2 sees the marker."""
    commits = VolumeCommits(volume, repo.repo_id, repo.commit)

    weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url, commit_volume=commits)

    assert [c["marker"] for c in commits.calls] == [False, True]
    assert commits.calls[0]["files"] == sorted(repo.files())  # everything durable before the claim


def test_marker_records_repo_commit_file_list_and_size(repo, hub, volume):
    result = weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url)

    path = volume / ".infra-complete" / "acme--tiny-llm" / f"{repo.commit}.json"
    assert path == weights.marker_path(volume, repo.repo_id, repo.commit)
    marker = json.loads(path.read_text())
    assert marker["repo"] == repo.repo_id
    assert marker["requested"] == repo.commit
    assert marker["commit"] == repo.commit
    assert marker["files"] == sorted(repo.files()) == result.files
    assert marker["size_bytes"] == repo.size_bytes() == result.size_bytes
    assert repo.size_bytes() > 16 * MiB
    assert isinstance(marker["completed_at"], float)
    # Written atomically: no temporary file left next to it.
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_second_pinned_run_makes_no_request_at_all(repo, hub, volume):
    """A pinned, complete download must not even ask the Hub: prod may run with the Hub down."""
    first = weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url)
    hub.reset_requests()
    commits = VolumeCommits(volume, repo.repo_id, repo.commit)

    second = weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url, commit_volume=commits)

    assert hub.requests == []
    assert second.skipped is True
    assert (second.commit, second.files, second.size_bytes) == (first.commit, first.files, first.size_bytes)
    assert commits.calls == []  # nothing changed, nothing to commit


def test_second_pinned_run_needs_no_hub_at_all(repo, volume):
    """Same, with the server gone: a skipped download cannot depend on the network."""
    with HubServer(repo) as server:
        weights.download(repo.repo_id, repo.commit, volume, endpoint=server.url)
        url = server.url
    result = weights.download(repo.repo_id, repo.commit, volume, endpoint=url)
    assert result.skipped


# ---------------------------------------------------------------------------- unpinned


@pytest.mark.parametrize("revision", ["main", None])
def test_unpinned_revision_is_resolved_recorded_and_then_costs_one_metadata_request(repo, hub, volume, revision):
    commits = VolumeCommits(volume, repo.repo_id, repo.commit, ref="main")

    first = weights.download(repo.repo_id, revision, volume, endpoint=hub.url, commit_volume=commits)

    assert (first.requested, first.commit, first.skipped) == ("main", repo.commit, False)
    ref = volume / ".infra-complete" / "acme--tiny-llm" / "refs" / "main"
    assert ref == weights.ref_path(volume, repo.repo_id, "main")
    assert ref.read_text() == repo.commit
    assert weights.resolved_ref(volume, repo.repo_id, "main") == repo.commit
    assert json.loads(weights.marker_path(volume, repo.repo_id, repo.commit).read_text())["requested"] == "main"
    # Ref file and marker are both written between the two commits.
    assert [(c["marker"], c["ref"]) for c in commits.calls] == [(False, False), (True, True)]
    for name, data in repo.files().items():
        assert (snapshot_dir(volume, repo.repo_id, repo.commit) / name).read_bytes() == data

    hub.reset_requests()
    second = weights.download(repo.repo_id, revision, volume, endpoint=hub.url)

    assert second.skipped and second.commit == repo.commit
    assert [(r.method, r.path) for r in hub.requests] == [("GET", "/api/models/acme/tiny-llm/revision/main")]
    assert hub.file_requests() == []


def test_tag_resolves_to_its_commit_and_gets_its_own_ref_file(repo, hub, volume):
    result = weights.download(repo.repo_id, "v1", volume, endpoint=hub.url)

    assert (result.requested, result.commit) == ("v1", repo.refs["v1"])
    assert weights.resolved_ref(volume, repo.repo_id, "v1") == repo.refs["v1"]
    assert weights.resolved_ref(volume, repo.repo_id, "main") is None
    assert (snapshot_dir(volume, repo.repo_id, repo.refs["v1"]) / "config.json").read_bytes() == repo.files(
        repo.refs["v1"]
    )["config.json"]


def test_branch_that_moved_is_downloaded_again_at_its_new_commit(volume):
    """An unpinned branch follows the Hub: the marker of the old head does not satisfy the new one."""
    moving = make_repo("acme/moving-llm", history=True, big_file_size=1 * MiB)
    old, new = moving.refs["v1"], moving.refs["main"]
    moving.refs["main"] = old
    with HubServer(moving) as hub:
        first = weights.download(moving.repo_id, "main", volume, endpoint=hub.url)
        moving.refs["main"] = new  # someone pushed
        hub.reset_requests()
        second = weights.download(moving.repo_id, "main", volume, endpoint=hub.url)

    assert (first.commit, second.commit, second.skipped) == (old, new, False)
    assert hub.file_requests()  # the new commit's files were fetched
    assert weights.resolved_ref(volume, moving.repo_id, "main") == new
    assert weights.read_marker(volume, moving.repo_id, old) is not None  # the old download stays complete
    assert weights.read_marker(volume, moving.repo_id, new) is not None


# ---------------------------------------------------------------------------- interruption


def test_interrupted_download_leaves_no_marker_and_the_next_run_resumes_and_completes(repo, hub, volume):
    """The connection dies mid-file on every attempt: the job fails, claims nothing, and resumes later.

    The fault outlasts `huggingface_hub`'s own resume retries (5 in `http_get`), so the failure
    really reaches `download`. The bytes that did arrive are kept as a `.incomplete` blob and the
    next run asks only for the rest (a Range request).
    """
    hub.drop_file(repo.repo_id, "model.safetensors", times=6, after_bytes=12 * MiB)
    commits = VolumeCommits(volume, repo.repo_id, repo.commit)

    with pytest.raises(OSError):  # requests' errors are OSErrors; so is the client's size check
        weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url, commit_volume=commits)

    assert hub.dropped >= 1
    assert weights.read_marker(volume, repo.repo_id, repo.commit) is None
    assert not (volume / weights.MARKERS).exists()
    assert commits.calls == []  # nothing committed as if it were done
    blobs = volume / "models--acme--tiny-llm" / "blobs"
    partial = blobs / f"{repo.sha256('model.safetensors')}.incomplete"
    kept = partial.stat().st_size
    assert 0 < kept < len(repo.files()["model.safetensors"])

    hub.clear_faults()
    hub.reset_requests()
    result = weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url, commit_volume=commits)

    assert result.skipped is False
    assert result.files == sorted(repo.files())
    marker = weights.read_marker(volume, repo.repo_id, repo.commit)
    assert marker is not None and marker["files"] == sorted(repo.files())
    big = snapshot_dir(volume, repo.repo_id, repo.commit) / "model.safetensors"
    assert sha256(big) == repo.sha256("model.safetensors")
    assert not partial.exists()
    # Resumed, not restarted: the only download of the big file asked for the missing tail.
    big_gets = [r for r in hub.file_requests() if r.path.startswith("/cdn/")]
    assert [(r.range, r.status) for r in big_gets] == [(f"bytes={kept}-", 206)]
    assert [c["marker"] for c in commits.calls] == [False, True]


def test_hub_error_after_an_interrupted_download_does_not_mark_a_partial_snapshot_complete(repo, hub, volume):
    """`snapshot_download` swallows connection errors and 5xx from its file-list call and, for a
    pinned commit, returns whatever `snapshots/<commit>/` holds. After an interruption that is every
    file but the big one: a marker written then would make every later run skip, and the server
    start with weights missing."""
    hub.drop_file(repo.repo_id, "model.safetensors", times=6)
    with pytest.raises(OSError):
        weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url)
    hub.clear_faults()
    hub.fail_api(503)  # one bad answer from the Hub, as happens

    try:
        weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url)
    except Exception:
        pass  # failing is the right outcome; claiming completion is not
    marker = weights.read_marker(volume, repo.repo_id, repo.commit)
    assert marker is None or "model.safetensors" in marker["files"]


# ---------------------------------------------------------------------------- gated repositories


@pytest.fixture(scope="module")
def gated():
    return make_repo("gated-org/secret-llm", gated=True, big_file_size=1 * MiB)


@pytest.fixture
def gated_hub(gated):
    with HubServer(gated, token=TOKEN) as server:
        yield server


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "main"])
def test_gated_repo_downloads_with_the_token_and_never_writes_it_down(gated, gated_hub, volume, pinned):
    revision = gated.commit if pinned else "main"

    result = weights.download(gated.repo_id, revision, volume, token=TOKEN, endpoint=gated_hub.url)

    assert result.commit == gated.commit and not result.skipped
    authed = [r for r in gated_hub.requests if not r.path.startswith("/cdn/")]
    assert authed and all(r.authorization == f"Bearer {TOKEN}" for r in authed)
    assert TOKEN not in json.dumps(weights.as_dict(result))
    assert TOKEN not in repr(result)
    for path in (volume / weights.MARKERS).rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(), path
    # Nor anywhere else huggingface_hub wrote on the Volume (refs, locks, .no_exist...).
    for path in volume.rglob("*"):
        if path.is_file() and path.stat().st_size < 1 * MiB:
            assert TOKEN.encode() not in path.read_bytes(), path


def test_gated_repo_without_a_token_is_refused_and_nothing_is_marked(gated, gated_hub, volume):
    from huggingface_hub.errors import GatedRepoError

    with pytest.raises(GatedRepoError):
        weights.download(gated.repo_id, gated.commit, volume, endpoint=gated_hub.url)
    assert gated_hub.requests[0].authorization is None
    assert gated_hub.file_requests() == []
    assert not (volume / weights.MARKERS).exists()


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "main"])
def test_wrong_token_fails_without_showing_the_token(gated, gated_hub, volume, pinned):
    """The error reaches logs and the CLI: neither the token used nor the right one may be in it."""
    from huggingface_hub.errors import HfHubHTTPError

    revision = gated.commit if pinned else "main"
    with pytest.raises(HfHubHTTPError) as err:
        weights.download(gated.repo_id, revision, volume, token=WRONG_TOKEN, endpoint=gated_hub.url)

    assert err.value.response.status_code == 401
    shown = "".join(traceback.format_exception(err.value))  # the whole chain, as a log would print it
    assert "Invalid credentials" in shown
    for secret in (WRONG_TOKEN, TOKEN):
        assert secret not in shown
        assert secret not in repr(err.value.args)
    assert gated_hub.requests[0].authorization == f"Bearer {WRONG_TOKEN}"  # it was sent, to the Hub only
    assert gated_hub.file_requests() == []
    assert not (volume / weights.MARKERS).exists()


# ---------------------------------------------------------------------------- before serving


@pytest.fixture(scope="module")
def draft():
    return make_repo("acme/tiny-draft", big_file_size=1 * MiB)


def serving(repo, draft, env: str):
    """A real Deployment (recipe qwen3-8b-low-latency, with its draft model) pointed at the fake repos:
    the model pinned, the draft unpinned (it follows main), as the recipe has it."""
    d = deployment(env=env, model=repo.repo_id, model_revision=repo.commit)
    return changed(d,
                   speculative=d.recipe.speculative.model_copy(
                       update=dict(draft_model=draft.repo_id, draft_revision=None)))


def test_nothing_downloaded_means_both_models_missing(repo, draft, volume):
    d = serving(repo, draft, "prod")
    assert weights.missing_weights(volume, d) == [f"acme/tiny-llm@{repo.commit}", "acme/tiny-draft@main"]


def test_downloaded_models_are_found_by_commit_and_by_ref(repo, draft, volume):
    d = serving(repo, draft, "prod")
    with HubServer(repo, draft) as hub:
        weights.download(d.recipe.model, d.recipe.model_revision, volume, endpoint=hub.url)
        weights.download(d.recipe.draft_model, d.recipe.draft_revision, volume, endpoint=hub.url)

    assert weights.missing_weights(volume, d) == []
    weights.require_downloaded(volume, d)  # offline, complete: no error


def test_offline_server_refuses_to_start_without_its_weights(repo, draft, volume):
    d = serving(repo, draft, "prod")
    assert d.server.hf_hub_offline

    with pytest.raises(WeightsMissing) as err:
        weights.require_downloaded(volume, d)

    assert str(err.value) == (
        f"weights for acme/tiny-llm@{repo.commit} are not in the Volume: run `invoke download --env prod`"
    )


def test_offline_server_refuses_when_only_the_draft_is_missing(repo, draft, volume):
    d = serving(repo, draft, "staging")
    with HubServer(repo) as hub:
        weights.download(d.recipe.model, d.recipe.model_revision, volume, endpoint=hub.url)

    with pytest.raises(WeightsMissing) as err:
        weights.require_downloaded(volume, d)

    assert str(err.value) == ("weights for acme/tiny-draft@main are not in the Volume: "
                              "run `invoke download --env staging`")


def test_online_server_only_warns(repo, draft, volume, capsys):
    """dev runs with HF_HUB_OFFLINE unset: SGLang may fetch the weights itself, so no refusal."""
    d = serving(repo, draft, "dev")
    assert not d.server.hf_hub_offline

    weights.require_downloaded(volume, d)  # does not raise

    out = capsys.readouterr().out
    assert f"weights for acme/tiny-llm@{repo.commit} are not in the Volume: run `invoke download --env dev`" in out
    assert "weights for acme/tiny-draft@main are not in the Volume: run `invoke download --env dev`" in out
    assert out.count("warning:") == 2


def test_a_marker_for_another_commit_or_a_ref_without_a_marker_does_not_count(repo, draft, volume):
    """Only a marker for exactly the wanted commit proves the weights are there."""
    with HubServer(repo, draft) as hub:
        weights.download(repo.repo_id, repo.refs["v1"], volume, endpoint=hub.url)  # the old commit
        weights.download(draft.repo_id, "main", volume, endpoint=hub.url)
    d = serving(repo, draft, "prod")
    assert weights.missing_weights(volume, d) == [f"acme/tiny-llm@{repo.commit}"]

    # The draft's ref file survives but its marker is gone (a download that was rolled back).
    weights.marker_path(volume, draft.repo_id, draft.commit).unlink()
    assert weights.resolved_ref(volume, draft.repo_id, "main") == draft.commit
    assert weights.missing_weights(volume, d) == [f"acme/tiny-llm@{repo.commit}", "acme/tiny-draft@main"]


def test_deployment_with_revisions_pinned_by_the_download_is_served(repo, draft, volume):
    """What the deploy stage does: pin the draft to the commit the download resolved, then check."""
    with HubServer(repo, draft) as hub:
        weights.download(repo.repo_id, repo.commit, volume, endpoint=hub.url)
        resolved = weights.download(draft.repo_id, None, volume, endpoint=hub.url)
    d = serving(repo, draft, "prod")
    d = changed(d, speculative=d.recipe.speculative.model_copy(update=dict(draft_model=draft.repo_id)))
    pinned = d.with_recipe(d.recipe.with_revisions(draft_revision=resolved.commit))

    assert pinned.recipe.draft_revision == draft.commit
    assert weights.missing_weights(volume, pinned) == []
