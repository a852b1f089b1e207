"""Promotion, rollback, the prod guard, status and scale: the real ModalRemote in front of the fake control plane
(tests/wire.py), real git, a real streaming server behind the fake's Server proxy."""

from __future__ import annotations

import subprocess
import threading

import pytest

from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf.releases import ReleaseStore
from infra.runtime.errors import ConfigError, Refused, StageError
from stages import deploy, flags, pipeline, promote, rollback, scale, status
from stages.common import Context
from tests.fakes.recorded import Recorded
from tests.test_stages import git_repo
from tests.wire import stage_world

RECIPE = "qwen3-8b-low-latency"
APP = "sglang-qwen3-8b-low-latency"


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo, message="change"):
    (repo / "file.txt").write_text(message)
    git(repo, "add", "file.txt")
    git(repo, "-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q", "-m", message)


@pytest.fixture
def flow(tmp_path, fake_server, wire):
    class Flow:
        server = fake_server("--tokens", "6")
        modal = Recorded()
        repo = git_repo(tmp_path / "checkout")

        def calls(self, method: str, env: str | None = None) -> list[dict]:
            """The arguments of each `method` call, in order (those for environment `env`, where given)."""
            return [c["args"] for c in self.modal.calls() if c["method"] == method
                    and env in (None, c["args"]["d"].modal.environment)]

        def ctx(self, env, *overrides, **options):
            options.setdefault("interactive", False)
            options.setdefault("say", lambda m: None)
            settings = load_settings(env, RECIPE, parse_overrides(list(overrides)))
            return Context(settings=settings, remote=self.modal, repo=self.repo, **options)

        def d(self, ctx):
            return resolve(ctx.settings, RECIPE)

        def manifest(self, env):
            ctx = self.ctx(env)
            return ReleaseStore(self.modal).read(self.d(ctx))

        def staging(self):
            ctx = self.ctx("staging")
            pipeline.run(ctx, self.d(ctx))
            return self.manifest("staging").current

        def promote(self, *prod_settings, options=promote.Options(RECIPE), **context):
            """Staging's release to prod. The gate is off unless `prod_settings` say otherwise: these tests are
            about the promotion's mechanics, and fast fake timings are noise to a 10% budget (the gate's own
            tests, with controlled timing: tests/test_promotion_gate.py)."""
            context.setdefault("yes", True)
            prod = self.ctx("prod", *(prod_settings or ("gate.enabled=false",)), **context)
            return promote.run(self.ctx("staging"), prod, options)

    stage_world(wire, Flow.server.url)
    flow = Flow()
    flow.wire = wire
    return flow


def test_promotion_deploys_the_same_release_with_prods_own_scaling(flow):
    staged = flow.staging()
    result = flow.promote()
    assert result.status == "ran"
    prod = flow.manifest("prod").current
    assert prod.kind == "promote"
    assert prod.promoted_from.env == "staging" and prod.promoted_from.release_id == staged.release_id
    assert (prod.commit, prod.image, prod.model_revision, prod.draft_revision) == (
        staged.commit, staged.image, staged.model_revision, staged.draft_revision)
    assert prod.smoke_passed
    deploy_call = flow.calls("deploy")[-1]
    assert deploy_call["d"].modal.environment == "prod" and deploy_call["d"].scaling.min_containers == 1
    assert deploy_call["tag"] == staged.tag
    assert flow.wire.autoscaler("prod", APP)["min_containers"] == 1
    # prod never downloaded or compiled: staging's caches are prod's.
    assert [c["args"]["d"].modal.environment for c in flow.modal.calls()
            if c["method"] in ("run_download", "run_compile")] == ["staging", "staging"]


def test_promotion_refuses_without_a_staging_release(flow):
    with pytest.raises(Refused, match="staging has no release of qwen3-8b-low-latency: run `invoke pipeline --env "
                                      "staging` first"):
        flow.promote()
    assert "deploy" not in flow.modal.call_names()


def test_promotion_refuses_a_release_whose_smoke_test_failed(flow, fake_server):
    flow.wire.default_upstream = fake_server("--chat-status", "500").url
    with pytest.raises(StageError):
        flow.staging()
    with pytest.raises(Refused, match=r"staging's current release .* is not validated: its smoke test failed"):
        flow.promote()
    assert flow.manifest("prod").current is None


def test_promotion_refuses_when_the_checkout_is_not_what_staging_runs(flow):
    flow.staging()
    commit(flow.repo, "newer work")
    with pytest.raises(Refused, match="this checkout is at .* but staging runs .*: `git checkout .*` or pass "
                                      "--from-manifest"):
        flow.promote()
    assert flow.calls("deploy", "prod") == []


def test_promotion_between_the_same_environment_is_refused(flow):
    with pytest.raises(ConfigError, match="promote --from prod --to prod: source and target are the same environment"):
        promote.run(flow.ctx("prod"), flow.ctx("prod"), promote.Options(RECIPE))


def test_promotion_needs_yes_without_a_terminal(flow):
    flow.staging()
    with pytest.raises(Refused, match="needs confirmation: no terminal, so pass --yes"):
        flow.promote(yes=False)


def test_failed_prod_smoke_rolls_back_automatically(flow, fake_server):
    flow.staging()
    flow.promote()  # prod v1, healthy
    first = flow.manifest("prod").current
    commit(flow.repo, "second release")
    flow.staging()  # staging's smoke passes on the good endpoint...
    flow.wire.upstreams["prod", APP] = fake_server("--chat-status", "500").url  # ...then prod's fails
    with pytest.raises(StageError, match=r"promote failed: prod smoke test failed .*; rolled back to v1"):
        flow.promote()
    manifest = flow.manifest("prod")
    assert manifest.current.kind == "rollback" and manifest.current.rolled_back_to == first.version
    assert manifest.current.commit == first.commit
    failed = manifest.history[1]
    assert failed.kind == "promote" and failed.smoke.passed is False
    rollbacks = [(c["d"].app_name, c["d"].modal.environment, c["version"]) for c in flow.calls("rollback")]
    assert rollbacks == [(APP, "prod", first.version)]


def test_concurrent_promotions_the_second_is_refused(flow, fake_server):
    flow.staging()
    # a slow prod smoke test holds the lock
    flow.wire.upstreams["prod", APP] = fake_server("--ttft", "1.5", "--tokens", "3").url
    outcomes: list = []

    def attempt():
        try:
            outcomes.append(flow.promote())
        except Refused as err:
            outcomes.append(err)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert len(refused) == 1
    assert "another release operation on prod/qwen3-8b-low-latency is in progress" in str(refused[0])
    assert len([o for o in outcomes if not isinstance(o, Refused)]) == 1
    assert len(flow.calls("deploy", "prod")) == 1


def test_rollback_to_previous_and_named_versions(flow):
    ctx = flow.ctx("dev")
    deploy.run(ctx, flow.d(ctx))
    commit(flow.repo, "two")
    deploy.run(ctx, flow.d(ctx))
    result = rollback.run(flow.ctx("dev"), flow.d(ctx))
    assert result.detail.rolled_back_to == 1
    manifest = flow.manifest("dev")
    assert manifest.current.kind == "rollback" and manifest.current.version == 3
    with pytest.raises(Refused, match="has no recorded release v9"):
        rollback.run(flow.ctx("dev"), flow.d(ctx), rollback.Options(to=9))
    assert rollback.run(flow.ctx("dev"), flow.d(ctx), rollback.Options(to=2)).detail.rolled_back_to == 2
    with pytest.raises(ConfigError, match="--to 'latest': expected an app version such as v3"):
        flags.app_version("--to", "latest")
    assert flags.app_version("--to", "v3") == flags.app_version("--to", "3") == 3


# ---------------------------------------------------------------------------- the prod guard


def test_guard_refuses_a_dirty_tree_unless_forced(flow):
    (flow.repo / "tracked.txt").write_text("a")
    git(flow.repo, "add", "tracked.txt")  # staged, uncommitted: dirty
    ctx = flow.ctx("prod", yes=True)
    flow.modal.run_download(flow.d(ctx))  # resolve revisions so only the guard can refuse
    with pytest.raises(Refused, match="refusing to deploy to guarded environment 'prod' from a dirty working tree"):
        deploy.run(ctx, flow.d(ctx))
    assert "deploy" not in flow.modal.call_names()
    ctx.force = True
    result = deploy.run(ctx, flow.d(ctx))
    assert result.detail.tag.endswith("-dirty")


def test_guard_refuses_a_commit_not_on_main(flow):
    git(flow.repo, "checkout", "-q", "-b", "feature")
    commit(flow.repo, "feature work")
    ctx = flow.ctx("prod", yes=True)
    flow.modal.run_download(flow.d(ctx))
    with pytest.raises(Refused, match="it is not on branch 'main'"):
        deploy.run(ctx, flow.d(ctx))
    git(flow.repo, "checkout", "-q", "main")
    git(flow.repo, "merge", "-q", "feature")
    assert deploy.run(ctx, flow.d(ctx)).status == "ran"


def test_guard_asks_on_a_terminal_and_refuses_without_one(flow):
    ctx = flow.ctx("prod")
    flow.modal.run_download(flow.d(ctx))
    with pytest.raises(Refused, match="needs confirmation: no terminal, so pass --yes"):
        deploy.run(ctx, flow.d(ctx))
    ctx.interactive = True
    with pytest.raises(Refused, match="not confirmed; nothing changed"):
        deploy.run(ctx, flow.d(ctx), confirm=lambda prompt: "n")
    asked = []
    assert deploy.run(ctx, flow.d(ctx), confirm=lambda prompt: asked.append(prompt) or "y").status == "ran"
    assert asked and "to prod (Modal environment prod)" in asked[0]


def test_unguarded_environments_do_not_ask(flow):
    (flow.repo / "x").write_text("dirty")
    ctx = flow.ctx("dev")
    assert deploy.run(ctx, flow.d(ctx), confirm=lambda p: pytest.fail("asked")).status == "ran"


# ---------------------------------------------------------------------------- status and scale


def test_status_shows_releases_and_drift(flow):
    ctx = flow.ctx("dev")
    pipeline.run(ctx, flow.d(ctx))
    report = status.run(ctx, flow.d(ctx))
    assert "drift: none" in report.message and report.detail.drift == []
    changed = flow.ctx("dev", "recipes.qwen3-8b-low-latency.target_concurrency=4", "scaling.max_containers=1")
    report = status.run(changed, flow.d(changed))
    assert report.detail.drift == ["recipe.target_concurrency: 10 -> 4", "scaling.max_containers: 2 -> 1"]
    assert "smoke passed" in report.message


def test_status_before_any_deploy(flow):
    ctx = flow.ctx("staging")
    assert status.run(ctx, flow.d(ctx)).message == "staging/qwen3-8b-low-latency: nothing deployed yet"


def test_scale_changes_min_containers_without_redeploy_and_warns(flow):
    ctx = flow.ctx("prod")
    flow.modal.run_download(flow.d(ctx))
    deploy.run(flow.ctx("prod", yes=True), flow.d(ctx))  # a Server to scale: Modal refuses to scale none
    deploys = len(flow.calls("deploy"))
    result = scale.run(ctx, flow.d(ctx), scale.Options(3))
    assert "min_containers now 3" in result.message
    assert "the next deploy resets it to the settings value (1)" in result.message
    assert [c["min_containers"] for c in flow.calls("update_autoscaler")] == [3]
    assert flow.wire.autoscaler("prod", APP)["min_containers"] == 3
    assert len(flow.calls("deploy")) == deploys
    with pytest.raises(ConfigError, match="forbids warm replicas"):
        scale.run(flow.ctx("dev"), flow.d(flow.ctx("dev")), scale.Options(1))
    with pytest.raises(ConfigError, match="exceeds max_containers = 4"):
        scale.run(ctx, flow.d(ctx), scale.Options(5))
