"""Stages and the pipeline through the real ModalRemote and modal client in front of the fake control plane
(tests/wire.py), the stand-in SGLang compiler and a real streaming server behind the fake's Server proxy."""

from __future__ import annotations

import json
import subprocess

import modal
import pytest
from grpclib import Status

from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf.releases import Manifest, ReleaseStore
from infra.runtime.errors import ConfigError, Refused, StageError
from infra.runtime.remote import LOCKS_DICT, MissingCredentials
from stages import build, compile, deploy, download, pipeline, smoke, trial
from stages.common import Context
from tests.conftest import changed
from tests.fakes.recorded import Recorded
from tests.wire import compile_runner

RECIPE = "qwen3-8b-low-latency"
REMOTE_WORK = {"build_image", "run_download", "run_compile", "deploy", "rollback", "update_autoscaler"}


def git_repo(path, branch="main"):
    path.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", branch)
    run("-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q", "--allow-empty", "-m", "initial")
    return path


@pytest.fixture
def world(tmp_path, fake_server, wire):
    """The fake control plane, whose Servers forward to a real local OpenAI server, and a clean git checkout."""

    class World:
        server = fake_server("--tokens", "12")
        modal = Recorded()
        repo = git_repo(tmp_path / "checkout")

        def ctx(self, env="dev", *overrides, **options) -> Context:
            settings = load_settings(env, RECIPE, parse_overrides(list(overrides)))
            return Context(settings=settings, remote=self.modal, repo=self.repo, say=lambda m: None, **options)

        def deployment(self, ctx):
            return resolve(ctx.settings, RECIPE)

        def manifest(self, ctx) -> Manifest:
            return ReleaseStore(self.modal).read(self.deployment(ctx))

    world = World()
    world.wire = wire
    wire.default_upstream = world.server.url
    return world


def test_pipeline_from_nothing_to_a_smoke_tested_endpoint(world):
    ctx = world.ctx()
    results = pipeline.run(ctx, world.deployment(ctx))
    assert [r.stage for r in results] == ["build", "download", "compile", "deploy", "smoke"]
    assert all(r.status == "ran" for r in results)
    names = world.modal.call_names()
    assert [n for n in names if n in REMOTE_WORK] == ["build_image", "run_download", "run_compile", "deploy"]
    # The draft model was unpinned: download resolved it and every later stage used the commit.
    manifest = world.manifest(ctx)
    release = manifest.current
    assert release.draft_revision and len(release.draft_revision) == 40
    assert release.deployment.recipe.speculative.draft_revision == release.draft_revision
    assert release.smoke_passed and release.url == f"{world.wire.proxy_url}/srv/dev--{release.app_name}-server"
    assert release.tag.startswith("git-") and not release.dirty
    chats = [r for r in world.server.requests() if r["path"] == "/v1/chat/completions"]
    assert chats[-1]["body"]["messages"][0]["role"] == "system"  # the reference's pirate prompt
    assert chats[-1]["headers"].get("Modal-Session-Id", "").startswith("smoke-")


def test_noop_rerun_makes_no_remote_call_except_the_smoke_test(world):
    ctx = world.ctx()
    pipeline.run(ctx, world.deployment(ctx))
    before = len(world.modal.calls())
    results = pipeline.run(world.ctx(), world.deployment(ctx))
    assert [r.status for r in results] == ["up-to-date"] * 4 + ["ran"]
    rerun = world.modal.calls()[before:]
    # Only the smoke stage's bookkeeping: recording its result on the release, under the lock.
    assert {c["method"] for c in rerun} <= {"acquire_lock", "read_file", "write_file", "release_lock"}
    assert all(c["args"].get("path", "releases/") .startswith("releases/") for c in rerun)
    assert all("smoke by" in c["args"]["holder"] for c in rerun if "holder" in c["args"])


def test_force_reruns_stages_and_remote_markers_keep_them_idempotent(world):
    ctx = world.ctx()
    pipeline.run(ctx, world.deployment(ctx))
    results = pipeline.run(world.ctx(force=True), world.deployment(ctx))
    # Modal itself skips the deploy of an unchanged definition, and the stage says so.
    assert [r.status for r in results] == ["ran", "ran", "ran", "unchanged", "ran"]
    assert all(d.skipped for d in results[1].detail.downloads)  # the Volume markers were found
    assert results[2].detail.skipped is True


def test_recompile_compiles_again_where_the_volume_says_done(world):
    """After `invoke status` warned of cache misses: `invoke compile --recompile` replaces this key's caches."""
    ctx = world.ctx()
    d = world.deployment(ctx)
    download.run(ctx, d)
    first = compile.run(ctx, d)
    assert compile.run(world.ctx(force=True), d).detail.skipped is True  # --force alone: the Volume's marker holds
    again = compile.run(world.ctx(), d, compile.Options(recompile=True))
    assert (first.detail.skipped, again.status, again.detail.skipped) == (False, "ran", False)
    assert first.detail.server_timeline[-1].phase == "warmup_3"  # its server's start, phase by phase (--json)
    assert "its server, without the caches: ready in" in first.message
    assert [c["args"]["force"] for c in world.modal.calls() if c["method"] == "run_compile"] == [False, False, True]


def test_dry_run_changes_nothing(world):
    ctx = world.ctx(dry_run=True)
    results = pipeline.run(ctx, world.deployment(ctx))
    assert {r.status for r in results} == {"dry-run"}
    assert [n for n in world.modal.call_names() if n in REMOTE_WORK | {"write_file"}] == []


def test_pipeline_stops_at_the_first_failure_naming_the_stage(world):
    world.wire.runners["compile_kernels"] = lambda job: compile_runner(job, FAKE_COMPILE_FAIL="3")
    ctx = world.ctx()
    with pytest.raises(StageError) as err:
        pipeline.run(ctx, world.deployment(ctx))
    assert err.value.stage == "compile"
    assert str(err.value).startswith("compile failed: CompileFailed: compile_deep_gemm exited with code 3")
    assert "deploy" not in world.modal.call_names()
    assert world.manifest(ctx).current is None


def test_failed_deploy_leaves_the_manifest_unchanged(world):
    ctx = world.ctx()
    pipeline.run(ctx, world.deployment(ctx))
    before = world.manifest(ctx)
    world.wire.fail("AppPublish", "image build failed", Status.INVALID_ARGUMENT)
    with pytest.raises(modal.exception.InvalidError, match="image build failed"):
        deploy.run(world.ctx(force=True), world.deployment(ctx))
    after = world.manifest(ctx)
    assert after.to_json() == before.to_json()
    generations = [entry for key, entry in world.wire.dict_entries("dev", LOCKS_DICT).items() if "#" in key]
    assert generations and all(entry["released"] for entry in generations)  # the lock was released


def test_smoke_retries_503_until_a_replica_answers(world, fake_server):
    world.wire.default_upstream = fake_server("--unavailable-first", "3").url
    ctx = world.ctx()
    pipeline.run(ctx, world.deployment(ctx))
    assert world.manifest(ctx).current.smoke.attempts == 4


def test_smoke_failure_is_recorded_and_fails_the_stage(world, fake_server):
    world.wire.default_upstream = fake_server("--chat-status", "500").url
    ctx = world.ctx()
    with pytest.raises(StageError, match=r"smoke failed: dev/qwen3-8b-low-latency at .*HTTP 500 .*model overloaded"):
        pipeline.run(ctx, world.deployment(ctx))
    current = world.manifest(ctx).current
    assert current.smoke.passed is False and "HTTP 500" in current.smoke.error


def test_smoke_needs_text_back(world, fake_server):
    world.wire.default_upstream = fake_server("--tokens", "0").url
    ctx = world.ctx()
    with pytest.raises(StageError, match="without any text or reasoning text"):
        pipeline.run(ctx, world.deployment(ctx))


def test_vlm_smoke_turns_thinking_off_sends_the_image_and_needs_an_answer(world, fake_server):
    server = fake_server()
    world.wire.default_upstream = server.url
    settings = load_settings("dev", "qwen3.6-35b-vlm")
    ctx = Context(settings=settings, remote=world.modal, repo=world.repo, say=lambda m: None)
    d = resolve(settings, "qwen3.6-35b-vlm")
    result = smoke.run(ctx, d, smoke.Options(url=server.url))
    assert result.detail.passed and result.detail.reply.startswith("tok0")
    assert result.detail.checked == 'answer text in content with chat_template_kwargs {"enable_thinking": false}'
    assert "smoke passed (answer text in content" in result.message
    body = server.requests()[-1]["body"]
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["top_k"] == 20 and body["stream"] is True
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_smoke_refuses_reasoning_alone_unless_the_recipe_accepts_it(world, fake_server):
    server = fake_server("--reasoning")  # what SGLang's reasoning parser streams for a thinking reply
    world.wire.default_upstream = server.url
    settings = load_settings("dev", "qwen3.6-35b-vlm")
    ctx = Context(settings=settings, remote=world.modal, repo=world.repo, say=lambda m: None)
    d = resolve(settings, "qwen3.6-35b-vlm")
    with pytest.raises(StageError, match=r"only reasoning_content \(\d+ characters\) and no answer"):
        smoke.run(ctx, d, smoke.Options(url=server.url))
    lenient = changed(d, smoke=d.recipe.smoke.model_copy(update=dict(accept_reasoning_only=True)))
    result = smoke.run(ctx, lenient, smoke.Options(url=server.url))
    assert result.detail.passed and result.detail.checked.startswith("content or reasoning_content")
    assert result.detail.reasoning_chars > 0


def test_smoke_sends_proxy_auth_headers_where_the_endpoint_asks_for_them(world, monkeypatch):
    monkeypatch.setenv("MODAL_KEY", "wk-test-key")
    monkeypatch.setenv("MODAL_SECRET", "ws-test-secret")
    ctx = world.ctx()
    private = changed(world.deployment(ctx), proxy_auth=True)
    smoke.run(ctx, private, smoke.Options(url=world.server.url))
    headers = world.server.requests()[-1]["headers"]
    assert headers["Modal-Key"] == "wk-test-key" and headers["Modal-Secret"] == "ws-test-secret"
    smoke.run(ctx, changed(private, proxy_auth=False), smoke.Options(url=world.server.url))  # a public endpoint
    assert "Modal-Key" not in world.server.requests()[-1]["headers"]


def test_stages_without_credentials_say_how_to_set_them(world, monkeypatch):
    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.delenv("MODAL_TOKEN_SECRET")
    ctx = world.ctx()
    with pytest.raises(MissingCredentials, match="set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"):
        build.run(ctx, world.deployment(ctx))
    assert world.modal.calls() == [] and world.wire.rpcs() == []


def test_gated_model_needs_an_existing_secret(world):
    ctx = world.ctx()
    d = changed(world.deployment(ctx), gated=True, hf_token_secret=None)
    with pytest.raises(ConfigError, match="is gated: set secrets.hf_token_secret"):
        download.run(ctx, d)
    d = changed(d, hf_token_secret="hf-secret")
    with pytest.raises(ConfigError, match="secrets.hf_token_secret = 'hf-secret': no such Modal Secret in environment "
                                          "dev"):
        download.run(ctx, d)
    assert "run_download" not in world.modal.call_names()
    world.wire.create_secret("dev", "hf-secret", {"HF_TOKEN": "hf_" + "x" * 30})
    assert download.run(ctx, d).status == "ran"


def test_prod_requires_resolved_revisions_before_compile_or_deploy(world):
    ctx = world.ctx("prod", force=True, yes=True)
    with pytest.raises(Refused, match="environment 'prod' requires pinned revisions: draft model "
                                      "Tengyunw/qwen3_8b_eagle3"):
        compile.run(ctx, world.deployment(ctx))
    download.run(ctx, world.deployment(ctx))
    assert compile.run(ctx, world.deployment(ctx)).status == "ran"


def test_try_starts_ephemerally_and_always_stops(world, fake_server):
    ctx = world.ctx()
    result = trial.run(ctx, world.deployment(ctx))
    assert result.detail.passed
    names = world.modal.call_names()
    app = world.deployment(ctx).app_name
    assert "ephemeral" in names and "deploy" not in names
    assert world.wire.app_states("dev", app) == ["APP_STATE_STOPPED"]  # started, then stopped
    world.wire.default_upstream = fake_server("--chat-status", "400").url
    with pytest.raises(StageError):
        trial.run(ctx, world.deployment(ctx))
    assert world.wire.app_states("dev", app) == ["APP_STATE_STOPPED"] * 2


def test_release_manifest_json_round_trip(world):
    ctx = world.ctx()
    pipeline.run(ctx, world.deployment(ctx))
    raw = (world.wire.volume_dir("dev", "sglang-releases") / "releases" / f"{RECIPE}.json").read_text()
    manifest = Manifest.from_json(raw)
    assert manifest.to_json() == raw
    assert json.loads(raw)["current"]["kind"] == "deploy"
