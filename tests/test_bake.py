"""The bake after a promotion (issue 31 item 1): prod probed with the gate workload after its smoke test, judged per
window, rolled back on a sustained breach.

The promotions run in this process through the real `modal` client (ModalRemote) against the fake control plane
(tests/wire.py), whose prod Server forwards to real local streaming servers (tests/fakes/openai_server.py). The
bake's clock is injected: it moves only when the bake sleeps, so a ten-minute bake waits no minute; the requests are
real. The "slow" server answers its first token after 1.5 s against a 250 ms objective (6 times over, and hundreds
of times what the fast one does), so no verdict rests on this machine's speed.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from infra.control import bake_policy
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf import bake, bench
from infra.perf.releases import ReleaseStore
from infra.runtime.errors import ConfigError, StageError
from infra.runtime.remote import ModalRemote
from stages import pipeline, promote, runner, status
from stages.common import Context
from tests.conftest import REPO
from tests.test_release_flow import commit
from tests.test_stages import git_repo

RECIPE = "qwen3-8b-low-latency"
APP = "sglang-qwen3-8b-low-latency"
SLOW = ("--ttft", "1.5", "--tokens", "6")
FAST = ("--tokens", "6")
# prod's bake for these tests: 3 minutes judged on one objective, the gate itself off (its tests: test_promotion_gate).
BAKED = ("release.bake_minutes=3", "gate.enabled=false", 'gate.objectives=[{ metric = "ttft_p90_ms", level = 1, max = '
                                                         '250 }]')
# Three requests a window instead of six (the fewest the policy judges: bake_policy.MIN_ANSWERS): half the requests.
PACE = bake.Pace(interval_s=20, window_s=60, breach_windows=3)
DOC = REPO / "docs" / "bake.md"
WRITE_DOCS = bool(os.environ.get("INFRA_WRITE_DOCS"))  # read at import: tests run with INFRA_* cleared


def shape(text: str) -> list[str]:
    """What a run's output must keep: its lines with numbers, release ids, commits and column padding left out
    (tests/test_promotion_gate.py checks docs/upgrade.md with it)."""
    text = re.sub(r"r\d{8}-\d{6}-[0-9a-f]{6}", "<release>", text)
    text = re.sub(r"\b(git-)?[0-9a-f]{12}\b", "<commit>", text)
    text = re.sub(r"\d+(\.\d+)?", "<n>", text)
    return [re.sub(r"-{2,}", "--", " ".join(line.split())) for line in text.strip().splitlines()]


class FakeClock:
    """Moves only when slept on; `at_start` runs at the bake's first look at the time (after the smoke test)."""

    def __init__(self, at_start=None, interrupt_after: int | None = None):
        self.t, self.slept, self.at_start, self.interrupt_after = 1000.0, [], at_start, interrupt_after

    def now(self) -> float:
        if self.at_start:
            self.at_start, start = None, self.at_start
            start()
        return self.t

    def sleep(self, seconds: float) -> None:
        if self.interrupt_after is not None and len(self.slept) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def world(wire, tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "job-summary.md"))

    class World:
        repo = git_repo(tmp_path / "checkout")
        remote = ModalRemote()
        fast = fake_server(*FAST)
        said: list[str] = []
        summary = tmp_path / "job-summary.md"

        def ctx(self, env, *overrides):
            settings = load_settings(env, RECIPE, parse_overrides(list(overrides)))
            return Context(settings=settings, remote=self.remote, repo=self.repo, interactive=False, yes=True,
                           say=self.said.append)

        def d(self, env):
            return resolve(self.ctx(env).settings, RECIPE)

        def staging(self, message=None):
            if message:
                commit(self.repo, message)
            pipeline.run(self.ctx("staging"), self.d("staging"))

        def promote(self, *prod, clock=None):
            return promote.run(self.ctx("staging"), self.ctx("prod", *prod), promote.Options(RECIPE),
                               clock=clock or FakeClock(), pace=PACE)

        def manifest(self, env):
            return ReleaseStore(self.remote).read(self.d(env))

    w = World()
    wire.upstreams[("prod", APP)] = w.fast.url
    return w


def chat_requests(server) -> list[dict]:
    return [r for r in server.requests() if r["path"] == "/v1/chat/completions"]


def test_a_promotion_that_holds_is_kept_and_one_slowed_after_the_switch_is_rolled_back(world, wire, fake_server):
    world.staging()
    clock = FakeClock()
    kept = world.promote(*BAKED, clock=clock)

    assert kept.status == "ran" and "bake kept (3 min, 3 window(s), 3 judged)" in kept.message
    printed = json.loads(json.dumps(kept.to_dict(), default=runner._json_default))  # what --json prints
    assert printed["detail"]["bake"]["verdict"] == "kept"
    a = world.manifest("prod").current
    assert a.bake.verdict == "kept" and [w.sent for w in a.bake.windows] == [3, 3, 3]
    assert all(w.values["ttft_p90_ms"] < 250 and not w.breaches for w in a.bake.windows)
    assert [o.model_dump() for o in a.bake.objectives] == [
        {"metric": "ttft_p90_ms", "direction": "max", "limit": 250.0},
        {"metric": "error_rate", "direction": "max", "limit": 0.0}]
    assert clock.t - 1000.0 == pytest.approx(180)  # three minutes on its clock, none on this one
    bake_probes = [r for r in chat_requests(world.fast) if bench.PROMPT_WORD in json.dumps(r["body"]["messages"])]
    assert len(bake_probes) == 1 + 9  # the first answer, then three a window: the gate workload's, to prod's endpoint
    assert sorted(r["body"]["max_tokens"] for r in bake_probes) == [16] + [128] * 9  # a short first answer
    # Through Modal's proxy with prod's own credentials (the proxy checks them and forwards none).
    assert {p["credentials"] for p in wire.proxied if p["label"].startswith("prod--")} == {"valid"}

    # Release B: as fast on staging, and prod slowed as soon as the bake starts (after the smoke test passed).
    world.staging("release B")
    slow = fake_server(*SLOW)
    switch = FakeClock(at_start=lambda: wire.upstreams.__setitem__(("prod", APP), slow.url))
    world.said.clear()
    with pytest.raises(StageError) as failed:
        world.promote(*BAKED, clock=switch)

    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("promote failed: rolled back by bake: ttft_p90_ms ")
    value = float(message.split("ttft_p90_ms ")[1].split(" ms")[0])
    assert value > 1000  # ~1500 ms: each window's p90 was at least this
    assert f"> 250.0 ms over 3 windows; prod/{RECIPE} returned to v1 ({a.tag}) as v3" in message
    assert len(chat_requests(slow)) == 9  # three windows of three, then it stopped
    history = world.manifest("prod").history
    assert [(r.kind, r.version) for r in history[:3]] == [("rollback", 3), ("promote", 2), ("promote", 1)]
    b = history[1]
    assert b.bake.verdict == "rolled back" and b.bake.rolled_back_to == 1 and len(b.bake.windows) == 3
    assert b.bake.reason == message.split("rolled back by bake: ")[1].split(";")[0]
    assert history[0].note == f"rolled back by bake: {b.bake.reason}" and history[0].bake is None
    assert [(v["version"], v["rollback_version"], v["live"]) for v in wire.app_versions("prod", APP)] == [
        (1, 0, False), (2, 0, False), (3, 1, True)]
    # The table was said and is in the job summary.
    said = "\n".join(world.said)
    assert f"bake ROLLED BACK: {RECIPE} {b.release_id} v2 in prod" in said
    header = next(line for line in world.said if line.startswith("bake ROLLED BACK")).splitlines()[3]
    assert header.split() == ["window", "s", "answered", "ttft_p90_ms", "error_rate", "verdict"]
    summary = world.summary.read_text()
    assert f"### ❌ Bake rolled back: {RECIPE} {b.release_id} v2 in prod" in summary
    assert f"**rolled back by bake: {b.bake.reason}**" in summary

    # The ledger says why: in `status`, text and data.
    ctx = world.ctx("prod")
    report = status.run(ctx, resolve(ctx.settings, RECIPE))
    assert f"    {b.release_id}: rolled back by bake: {b.bake.reason}" in report.message
    assert f"    {a.release_id}: bake kept (3 min, 3 window(s), 3 judged)" in report.message
    hows = {e["release_id"]: e["how"] for e in report.detail.ledger}
    assert hows[b.release_id] == "promote from staging, rolled back by bake"
    assert hows[a.release_id] == "promote from staging, bake kept"
    assert next(e for e in report.detail.ledger if e["release_id"] == b.release_id)["bake"]["verdict"] == "rolled back"
    assert report.detail.current["bake"] is None  # the rollback itself is not baked


def test_ctrl_c_during_the_bake_leaves_the_promoted_release_and_says_so(world):
    world.staging()
    world.promote("release.bake_minutes=0", "gate.enabled=false")  # v1, the bake off (the suite's reason)
    world.staging("release B")
    with pytest.raises(StageError) as failed:
        world.promote(*BAKED, clock=FakeClock(interrupt_after=3))
    current = world.manifest("prod").current
    assert str(failed.value) == (
        f"promote failed: bake interrupted (Ctrl-C after 1 window(s)): prod/{RECIPE} keeps v2 ({current.tag}), "
        f"promoted and smoke-tested but not baked; `invoke rollback --env prod --recipe {RECIPE}` returns to v1")
    assert current.kind == "promote" and current.version == 2 and current.bake.verdict == "interrupted"
    assert len(current.bake.windows) == 1


def test_bake_off_in_prod_is_recorded_with_who_and_why(world, monkeypatch):
    world.staging()
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    done = world.promote("release.bake_minutes=0", 'release.bake_off_reason="hotfix: INC-42"', "gate.enabled=false")
    assert "bake off by " in done.message and ": hotfix: INC-42" in done.message
    off = world.manifest("prod").current.bake
    assert off.verdict == "off" and off.off.reason == "hotfix: INC-42" and off.off.github_actor == "octocat"
    assert "@" in off.off.by


def test_bad_bake_settings_are_refused_in_one_line_before_anything_remote(world, wire, monkeypatch):
    world.staging()
    before = len(wire.rpcs())
    with pytest.raises(ConfigError) as long_bake:
        world.promote("release.bake_minutes=80")
    assert str(long_bake.value) == (
        "release.bake_minutes = 80 in prod: the bake would outlast the promotion job (promote-prod.yml "
        "timeout-minutes = 90, less 22 min of cold-start wait and 10 min for the job's other steps); allowed: 0 to "
        "58, or raise timeout-minutes in the workflow")
    monkeypatch.delenv("INFRA_RELEASE__BAKE_OFF_REASON")
    with pytest.raises(ConfigError) as no_reason:
        world.promote("release.bake_minutes=0")
    assert str(no_reason.value) == (
        "release.bake_minutes = 0 turns off the bake after promotions into prod; allowed: a reason with it, recorded "
        'with who ran it: --set release.bake_off_reason="<why>"')
    assert wire.rpcs()[before:] == [] and world.manifest("prod").current is None


# ---------------------------------------------------------------- the judgement alone


def window(ttfts: list[float], failed: int = 0) -> list[bench.Record]:
    records = [bench.Record(0.0, t + 0.1, ttft=t, tokens=6, chunks=6) for t in ttfts]
    return records + [bench.Record(0.0, 1.0, error="unavailable") for _ in range(failed)]


OBJS = [bake_policy.BakeObjective(metric="ttft_p90_ms", direction="max", limit=500),
        bake_policy.BakeObjective(metric="error_rate", direction="max", limit=0.0)]


def test_a_breach_must_last_three_windows_in_a_row_and_is_named_by_its_least_bad_value():
    judged = [bake.judge(window(t), OBJS, 60 * i, 60 * (i + 1)) for i, t in enumerate(
        [[0.1, 0.1, 0.2], [0.612, 0.612, 0.9], [0.1, 0.1, 0.1], [0.65, 0.65, 0.7], [0.612, 0.612, 0.62],
         [0.7, 0.7, 0.8]])]
    assert [bool(w.breaches) for w in judged] == [False, True, False, True, True, True]
    assert bake.sustained(judged[:2], OBJS, 3) is None and bake.sustained(judged[:5], OBJS, 3) is None
    assert bake.sustained(judged, OBJS, 3) == "ttft_p90_ms 618.4 ms > 500.0 ms over 3 windows"
    assert judged[1].breaches == ["ttft_p90_ms 842.4 ms > 500.0 ms"]


def test_a_window_with_too_few_answers_for_a_p90_is_shown_not_judged_but_its_errors_count():
    thin = [bake.judge(window([0.9, 0.8]), OBJS, 60 * i, 60 * (i + 1)) for i in range(3)]
    assert [(w.judged, w.breaches, w.values["ttft_p90_ms"]) for w in thin] == [(False, [], 890.0)] * 3
    assert bake.sustained(thin, OBJS, 3) is None  # two slow answers a minute are not a p90 over 500 ms
    failing = [bake.judge(window([0.9, 0.8], failed=1), OBJS, 0, 60) for _ in range(3)]
    assert failing[0].breaches == ["error_rate 33.3% > 0.0%"] and not failing[0].judged
    assert bake.sustained(failing, OBJS, 3) == "error_rate 33.3% > 0.0% over 3 windows"


def test_errors_beyond_the_objective_breach_even_where_nothing_answered():
    dead = [bake.judge(window([], failed=2), OBJS, 0, 60) for _ in range(3)]
    assert dead[0].values == {"ttft_p90_ms": None, "error_rate": 1.0} and dead[0].ok == 0
    assert bake.sustained(dead, OBJS, 3) == "error_rate 100.0% > 0.0% over 3 windows"


def test_the_bake_judges_one_streams_objectives_and_the_strictest_error_rate():
    settings = load_settings("prod", RECIPE)
    from infra.control.resolve import gate_for

    chosen = bake.objectives_for(gate_for(settings, RECIPE), 8)
    assert [(o.metric, o.limit) for o in chosen] == [("ttft_p90_ms", 500), ("tpot_p50_ms", 12), ("error_rate", 0.0)]


def test_prods_bake_is_on_by_its_own_file_and_fits_the_promotion_job():
    settings = load_settings("prod", RECIPE, parse_overrides(["release.bake_minutes=10"]))
    assert load_settings("staging", RECIPE).release.bake_minutes == 0  # INFRA_ variable of the suite: 0 anyway
    assert "bake_minutes = 10" in (bake_policy.PROMOTE_WORKFLOW.parents[2] / "environments" / "prod.toml").read_text()
    assert bake_policy.job_limit_minutes() == 90
    bake_policy.check_minutes("prod", settings.release.bake_minutes, 22 * 60)  # no error


def test_what_the_page_says_the_bake_costs_is_what_costs_py_computes():
    from infra.control import costs, plan

    settings = load_settings("prod", RECIPE, parse_overrides(["release.bake_minutes=10"]))
    d = resolve(settings, RECIPE)
    hourly = plan.replica_cost(d, costs.Rates(costs.TABLE, costs.TABLE_SOURCE))
    c = bake.cost(d, settings.release.bake_minutes, hourly)
    floor = next(o.min for o in settings.gate.objectives if o.metric == "output_tokens_per_s")
    per_million = hourly.usd / (floor * 3600) * 1e6
    page = " ".join(DOC.read_text().split())
    assert (c.requests, c.output_tokens, c.paid_by_warm_floor) == (60, 7680, True)
    for claim in (f"${c.replica_usd_during:.2f} of that replica's time", f"(${hourly.usd:.2f}/h for the 8B recipe",
                  f"{c.requests} requests, {c.output_tokens:,} output tokens", f"tokens for ${per_million:.2f}",
                  f"worth ${c.output_tokens * per_million / 1e6:.2f} of its capacity", f"({floor:,.0f} tokens/s",
                  f"${30 * c.output_tokens * per_million / 1e6:.2f} of capacity a month",
                  f"against the ${hourly.usd * 24 * 30:,.0f} the warm replica costs over 30 days"):
        assert claim in page, claim
