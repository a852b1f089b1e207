"""Each release's cold starts on the control side (infra/control/coldstarts.py): which release a recorded start belongs
to, what `invoke status` says of them, and the summary a replaced release keeps in its manifest (the Dict forgets)."""

from __future__ import annotations

import time

import pytest

from infra.control import coldstarts
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf.releases import ReleaseStore
from infra.runtime import remote, timeline
from infra.runtime.remote import ModalRemote
from stages import deploy, rollback, status
from stages.common import Context
from tests.fakes import records
from tests.test_stages import git_repo
from tests.test_timeline import TIMINGS, read

RECIPE = "qwen3-8b-low-latency"


@pytest.fixture
def world(tmp_path, wire):
    class World:
        modal = ModalRemote()
        repo = git_repo(tmp_path / "checkout")

        def ctx(self, *overrides, **options) -> Context:
            settings = load_settings("dev", RECIPE, parse_overrides(list(overrides)))
            return Context(settings=settings, remote=self.modal, repo=self.repo, say=lambda m: None, **options)

        def d(self, ctx):
            return resolve(ctx.settings, RECIPE)

        def manifest(self, ctx):
            return ReleaseStore(self.modal).read(self.d(ctx))

        def start(self, release, at: float, *, total: float = 127.5, misses=None, outcome="ready") -> None:
            """One start of `release`'s containers, recorded as infra/runtime/app.py records it."""
            log = read("0.5.11-h200-cached.log")
            timings = TIMINGS["0.5.11-h200-cached.log"]
            record = timeline.build_record(
                deployment=release.deployment, log=log, timings=timings if outcome != "failed" else None, started_at=at,
                before_launch_s=total - timings.ready_s, restore=timeline.Restore(restored=True, seconds=0.1),
                misses=misses, outcome=outcome, error="SGLang exited with code 1" if outcome == "failed" else None)
            bucket = remote.starts_bucket(release.app_name, record.deployment_digest)
            self.modal.record_start(release.modal_environment, bucket, record.to_data())

    return World()


def test_a_start_belongs_to_the_newest_release_of_its_deployment_deployed_before_it():
    a = records.release(1).model_copy(update={"release_id": "a", "deployed_at": 1000.0})
    b = a.model_copy(update={"release_id": "b", "deployed_at": 5000.0})  # the same deployment again (a rollback)
    times = (900.0, 1100.0, 4999.0 - coldstarts.DEPLOY_SLACK_SECONDS, 4990.0, 6000.0)
    starts = [timeline.StartRecord(started_at=t) for t in times]
    owned = coldstarts.attribute(starts, [b, a])
    # 4990 s is within the deploy slack of b: a deploy's first containers start before its manifest entry is written.
    assert {k: [r.started_at for r in v] for k, v in owned.items()} == {
        "a": [4999.0 - coldstarts.DEPLOY_SLACK_SECONDS, 1100.0, 900.0], "b": [6000.0, 4990.0]}


def test_status_shows_the_starts_and_a_replaced_release_keeps_their_summary_through_a_rollback(world, monkeypatch):
    monkeypatch.setattr(coldstarts, "DEPLOY_SLACK_SECONDS", 0.005)  # the releases here are milliseconds apart
    ctx = world.ctx()
    deploy.run(ctx, world.d(ctx))
    first = world.manifest(ctx).current
    # Starts a few milliseconds after the deploy (the next deploy follows at once: no wall clock is waited for).
    world.start(first, first.deployed_at + 0.001, total=100.0)
    world.start(first, first.deployed_at + 0.002, total=130.0,
                misses={"triton": {"files": 3, "bytes": 10, "examples": []}})
    world.start(first, first.deployed_at + 0.003, outcome="failed")
    time.sleep(0.01)

    shown = status.run(ctx, world.d(ctx))
    assert f"    {first.release_id}: 3 start(s), ready in 115.0 s median, 130.0 s worst, 1 failed, 0 refused, " \
           "1 with compile-cache misses" in shown.message
    assert "failed after 124.3 s" in shown.message  # how far the failed one got: SGLang said "fired up"
    assert "1 of 3 recorded start(s) compiled while starting (compile-cache misses: triton 3 files)" in shown.message
    assert shown.detail.ledger[0]["cold_start"]["median_s"] == 115.0

    second_ctx = world.ctx("scaling.max_containers=1")
    deploy.run(second_ctx, world.d(second_ctx))
    manifest = world.manifest(ctx)
    second = manifest.current
    kept = manifest.history[1].cold_starts
    assert (kept.starts, kept.median_s, kept.worst_s, kept.failed) == (3, 115.0, 130.0, 1)
    world.start(second, second.deployed_at + 0.001, total=90.0)
    time.sleep(0.01)

    rollback.run(world.ctx(), world.d(ctx))
    manifest = world.manifest(ctx)
    back = manifest.current
    assert back.kind == "rollback" and back.cold_starts is None  # not the summary of the release it returns to
    assert manifest.history[1].cold_starts.median_s == 90.0  # the release it replaced keeps its own
    # same deployment as the first: same bucket, told apart by time
    world.start(back, back.deployed_at + 0.001, total=95.0)
    recorded = coldstarts.read(world.modal, "dev", [back, first])
    assert [r.total_s for r in recorded[back.release_id]] == [95.0]
    assert len(recorded[first.release_id]) == 3
    lines = status.run(world.ctx(), world.d(ctx)).message
    assert f"{first.release_id}: 3 start(s), ready in 115.0 s median, 130.0 s worst, 1 failed, 0 refused, " \
           "1 with compile-cache misses (kept in the manifest)" in lines
    time.sleep(0.01)
    forced = world.ctx("scaling.max_containers=1", force=True)
    deploy.run(forced, world.d(forced))  # the rollback entry replaced in turn: its own start only, not the first's
    replaced = world.manifest(ctx).history[1]
    assert (replaced.release_id, replaced.cold_starts.starts, replaced.cold_starts.median_s) == (
        back.release_id, 1, 95.0)


def test_status_still_answers_when_the_starts_cannot_be_read(world, wire):
    ctx = world.ctx()
    deploy.run(ctx, world.d(ctx))
    wire.fail("DictGetOrCreate", "Dict service unavailable")
    shown = status.run(ctx, world.d(ctx)).message
    assert "  cold starts: could not be read (PermissionDeniedError: Dict service unavailable)" in shown
    assert "ledger (newest first;" in shown
