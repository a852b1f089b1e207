"""The promotion gate (infra/perf/gate.py): measured against a real local streaming server whose timing is set on its
command line (tests/fakes/openai_server.py), and evaluated with limits far from what the server does, so a
verdict never depends on a few percent of timing noise."""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt

from infra.control.objectives import Gate, Objective, resolve
from infra.perf import bench, client, gate, ledger
from infra.runtime import lifecycle
from infra.runtime.errors import ConfigError
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import GateWorkload
from tests.fakes import bench_reports, records

# Small and quick: 4 requests per stream (bench's floor), 8 tokens per request.
QUICK = GateWorkload(prompt_tokens=16, max_tokens=8, requests=4, timeout=10)
FAST = ("--ttft", "0.01", "--itl", "0.002", "--tokens", "8")


def objectives(*entries: tuple, target_concurrency: int = 2):
    gate_settings = Gate(enabled=True, objectives=[Objective(metric=m, level=lv, **{k: v}) for m, lv, k, v in entries])
    return resolve(gate_settings, target_concurrency)


# The limits a real server's measurement is held to here. A verdict may rest only on what the test controls: the
# server's own waits are floors no load can beat (a first token sent after 200 ms is measured at 200 ms or more),
# while how fast a loaded machine delivers is not. So TTFT is limited at 100 ms, which the slow server (200 ms) misses
# on any machine, and every limit a fast server must meet is one a machine running the suite at all meets (a minute
# to the first token, 10 s per token, 0.01 tok/s). Verdicts at exact figures are tested on fixed reports below.
LIMITS = (("ttft_p90_ms", 1, "max", 100), ("tpot_p50_ms", "target", "max", 10_000),
          ("output_tokens_per_s", "target", "min", 0.01))
LOOSE = (("ttft_p90_ms", 1, "max", 60_000), *LIMITS[1:])


def run_gate(server, workload=QUICK, target_concurrency=2, **options) -> dict:
    return gate.measure(server.url, workload, model=options.pop("model", None), target_concurrency=target_concurrency,
                        target=bench.BenchTarget(env="staging", recipe="qwen3-8b-low-latency"), say=lambda _m: None,
                        **options)


def chats(server) -> list[dict]:
    return [r["body"] for r in server.requests() if r["path"] == "/v1/chat/completions"]


def row(ev: gate.GateEvaluation, metric: str, concurrency: int) -> gate.GateRow:
    (found,) = [r for r in ev.rows if r.target.metric == metric and r.target.concurrency == concurrency]
    return found


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(client, "RETRY_PAUSE", 0.05)
    monkeypatch.setattr(bench, "ERROR_PAUSE", 0.01)


# ---------------------------------------------------------------- the workload


def test_the_gate_workload_maps_onto_bench_at_1_and_the_target_concurrency():
    w, plan = gate.bench_inputs(GateWorkload(), model="Qwen/Qwen3-8B-FP8", target_concurrency=10)
    assert plan.concurrency == (1, 10)
    assert plan.requests == 100 and plan.requests_for(1) == plan.requests_for(10) == 100
    assert plan.warmup == 1 and plan.timeout == 120 and plan.duration is None
    assert (w.prompt_tokens, w.max_tokens, w.model, w.ignore_eos,
            w.image) == (512, 128, "Qwen/Qwen3-8B-FP8", True, None)
    body = w.payload("t1")
    assert body["temperature"] == 0.0 and body["ignore_eos"] is True and body["max_tokens"] == 128
    assert isinstance(body["messages"][0]["content"], str)

    # Levels an objective names are measured too; each level keeps at least 4 requests per stream.
    targets = objectives(("ttft_p90_ms", 32, "max", 900), ("ttft_p90_ms", 1, "max", 900), target_concurrency=8)
    _, plan = gate.bench_inputs(GateWorkload(requests=20), model=None, target_concurrency=8, targets=targets,
                                cold_start_deadline=900)
    assert plan.concurrency == (1, 8, 32) and plan.requests == 4 * 32 and plan.cold_start_deadline == 900
    _, plan = gate.bench_inputs(GateWorkload(), model=None, target_concurrency=1)
    assert plan.concurrency == (1,)


def test_each_recipe_carries_its_gate_workload_and_the_vlm_sends_its_packaged_image():
    text, vlm = RECIPES["qwen3-8b-low-latency"].gate_workload, RECIPES["qwen3.6-35b-vlm"].gate_workload
    assert not text.with_image and vlm.with_image
    assert text.temperature == vlm.temperature == 0.0
    w, _ = gate.bench_inputs(vlm, model="Qwen/Qwen3.6-35B-A3B-FP8", target_concurrency=10)
    assert w.image == lifecycle.warmup_image_data_url()
    # Reports and manifests name the image by type, size and digest, never carry its bytes.
    described = w.to_data()["image"]
    assert described.startswith("image/png;base64, ") and "sha256 " in described
    assert w.image.split(",", 1)[1] not in json.dumps(w.to_data())


def test_the_vlm_workload_sends_the_image_with_every_request(fake_server):
    server = fake_server(*FAST)
    workload = GateWorkload(prompt_tokens=16, max_tokens=8, requests=4, timeout=10, with_image=True)
    measurement = run_gate(server, workload, target_concurrency=1, model="Qwen/Qwen3.6-35B-A3B-FP8")
    sent = chats(server)
    assert len(sent) == 1 + 1 + 4  # the readiness probe, one warm-up round, the measured requests
    image = lifecycle.warmup_image_data_url()
    tags = []
    for body in sent:
        text, picture = body["messages"][0]["content"]
        # Text first (its unique tag keeps the prefix cache from serving one request from another), then the image.
        assert text["type"] == "text" and text["text"].count(bench.PROMPT_WORD) == 16
        assert picture == {"type": "image_url", "image_url": {"url": image}}
        assert body["model"] == "Qwen/Qwen3.6-35B-A3B-FP8" and body["temperature"] == 0.0 and body["ignore_eos"] is True
        tags.append(text["text"].split("]")[0])
    assert len(set(tags)) == len(tags)
    assert measurement.levels[0].requests.to_data() == {"sent": 4, "ok": 4, "failed": 0}


def test_the_text_workload_sends_no_image(fake_server):
    server = fake_server(*FAST)
    run_gate(server, target_concurrency=1)
    assert all(isinstance(body["messages"][0]["content"], str) for body in chats(server))


# ---------------------------------------------------------------- verdicts against the real server


def test_a_fast_release_passes_and_its_record_holds_the_measurement(fake_server):
    server = fake_server(*FAST)
    measurement = run_gate(server)
    assert [lv.concurrency for lv in measurement.levels] == [1, 2]
    assert all("records" not in lv for lv in measurement.to_data()["levels"])  # compact: what a manifest keeps

    ev = gate.evaluate(objectives(*LOOSE), measurement, None, regression_budget=0.1)
    assert ev.passed and ev.verdict == "passed" and ev.reasons == ()
    # Objectives met; no baseline to compare with (said so, and not a failure); no errors at either level.
    assert [(r.target.metric, r.target.concurrency, r.verdict) for r in ev.rows] == [
        ("ttft_p90_ms", 1, "no baseline"), ("tpot_p50_ms", 2, "no baseline"), ("output_tokens_per_s", 2, "no baseline"),
        ("error_rate", 1, "pass"), ("error_rate", 2, "pass")]
    ttft_p90 = row(ev, "ttft_p90_ms", 1).measured  # the server's 10 ms wait is a floor; the rest is the machine's
    assert ttft_p90 >= 10 and ttft_p90 == pytest.approx(measurement.levels[0].ttft_s.p90 * 1000)
    assert any(n.startswith("no baseline:") for n in ev.notes)
    assert ev.measured == "staging"

    rec = gate.record(evaluation=ev, measurement=measurement).to_data()
    assert rec["verdict"] == "passed" and rec["override"] is None
    assert rec["measurement"]["levels"][0]["ttft_s"] == measurement.levels[0].ttft_s.to_data()
    assert rec["evaluation"]["rows"][0] | {"measured": None} == {
        "metric": "ttft_p90_ms", "level": 1, "concurrency": 1, "limit": 60_000, "direction": "max", "unit": "ms",
        "implicit": False, "measured": None, "baseline": None, "change": None, "verdict": "no baseline", "note": ""}
    assert json.loads(json.dumps(rec)) == rec  # the manifest stores it as JSON
    # The ledger reads it back from a manifest entry.
    assert ledger.measurement_of(records.release(gate=gate.GateRecord.read(rec))) == (measurement, "gate on staging")


def test_a_slow_release_misses_its_objective_with_the_row_that_says_so(fake_server):
    slow = fake_server("--ttft", "0.2", "--itl", "0.002", "--tokens", "8")
    ev = gate.evaluate(objectives(*LIMITS, target_concurrency=1), run_gate(slow, target_concurrency=1), None,
                       regression_budget=0.1)
    assert not ev.passed and ev.verdict == "refused"
    miss = row(ev, "ttft_p90_ms", 1)
    assert miss.verdict == "miss objective" and miss.measured > 150  # ~201 ms against a limit of 100
    assert miss.cells()[:3] == ["ttft_p90_ms", "1", "≤ 100.0 ms"]
    # The other objectives hold: only the slow first token refuses it.
    assert row(ev, "tpot_p50_ms", 1).verdict == row(ev, "output_tokens_per_s", 1).verdict == "no baseline"
    assert len(ev.reasons) == 1 and ev.reasons[0].startswith("ttft_p90_ms at concurrency 1: ")
    assert ev.reasons[0].endswith(" ms misses the objective ≤ 100.0 ms")
    text = gate.render_text(ev, "qwen3-8b-low-latency r1 staging -> prod")
    assert text.splitlines()[0] == "gate REFUSED: qwen3-8b-low-latency r1 staging -> prod"
    assert any(line.startswith("ttft_p90_ms ") and line.endswith("miss objective") for line in text.splitlines())


def test_a_regression_within_the_objectives_but_beyond_the_budget_is_refused(fake_server):
    # The servers differ in their wait before the first token only: 10 ms against 500 ms. The candidate's 500 ms is a
    # floor no load lowers; the verdict changes only if the 10 ms wait were measured above 450 ms (a busy run measured
    # 29 ms). Objectives both meet on any machine (a minute, 10 s per token, 0.01 tok/s): what refuses is the budget.
    current = run_gate(fake_server("--ttft", "0.01", "--itl", "0.01", "--tokens", "8"), target_concurrency=1)
    candidate = run_gate(fake_server("--ttft", "0.5", "--itl", "0.01", "--tokens", "8"), target_concurrency=1)
    targets = objectives(("ttft_p90_ms", 1, "max", 60_000), ("tpot_p50_ms", "target", "max", 10_000),
                         ("output_tokens_per_s", "target", "min", 0.01), target_concurrency=1)

    ev = gate.evaluate(targets, candidate, current, regression_budget=0.10, baseline_label="r0 (v3)")
    worse = row(ev, "ttft_p90_ms", 1)
    assert worse.measured >= 500 and worse.verdict == "beyond regression budget" and worse.measured > worse.baseline
    assert not ev.passed and ev.baseline == "r0 (v3)"
    # TTFT up, and with it total tokens/s down by far more than 10%.
    assert any("ttft_p90_ms at concurrency 1: " in r and "higher than the baseline's" in r
               and "(regression budget 10%)" in r for r in ev.reasons)
    assert row(ev, "output_tokens_per_s", 1).verdict == "beyond regression budget"
    # (How an unchanged TPOT is judged is not asked of two real runs, whose TPOT is the machine's: see the fixed
    # reports of test_budget_boundaries_and_direction.)

    # The same measurement as its own baseline is no regression, even with no budget at all.
    assert gate.evaluate(targets, candidate, candidate, regression_budget=0.0).passed


def test_failed_requests_count_even_without_an_error_objective(fake_server, quick_retries):
    # Chat requests #4, #8, ... get 503: after the probe and the warm-up, 2 of the 8 measured at level 1 fail.
    server = fake_server(*FAST, "--unavailable-every", "4")
    measurement = run_gate(server, target_concurrency=1,
                           workload=GateWorkload(prompt_tokens=16, max_tokens=8, requests=8, timeout=10))
    (level,) = measurement.levels
    assert level.requests.to_data() == {"sent": 8, "ok": 6, "failed": 2}

    ev = gate.evaluate(objectives(*LIMITS, target_concurrency=1), measurement, None, regression_budget=0.1)
    errors = row(ev, "error_rate", 1)
    assert errors.target.implicit and errors.target.limit == 0
    assert errors.verdict == "miss objective"
    assert errors.measured == level.requests.failed / level.requests.sent
    assert f"{level.requests.failed} of {level.requests.sent} failed: unavailable" in ev.reasons[-1]
    # The latency objectives alone would have passed: failed requests are not in the latencies.
    assert [r.verdict for r in ev.rows if r.target.metric != "error_rate"] == ["no baseline"] * 3

    # An explicit objective replaces the implicit one for its level.
    lenient = objectives(*LIMITS, ("error_rate", 1, "max", 0.5), target_concurrency=1)
    assert gate.evaluate(lenient, measurement, None, regression_budget=0.1).passed


def test_a_release_that_fails_every_request_misses_every_objective(fake_server, quick_retries):
    server = fake_server("--chat-status", "500")
    measurement = run_gate(server, target_concurrency=1)
    ev = gate.evaluate(objectives(*LIMITS, target_concurrency=1), measurement, None, regression_budget=0.1)
    assert [(r.verdict, r.note) for r in ev.rows] == [("miss objective",
                                                       "no successful request")] * 3 + [("miss objective", "")]
    assert "every request failed (4 of 4 failed: http 4)" in ev.reasons[0]


# ---------------------------------------------------------------- evaluation rules (exact figures, no server)


def test_budget_boundaries_and_direction():
    base = bench_reports.report(bench_reports.level(1, ttft=0.100, tpot=0.010),
                                bench_reports.level(4, ttft=0.100, tpot=0.010))
    targets = objectives(("ttft_p90_ms", 1, "max", 1000), ("output_tokens_per_s", "target", "min", 1),
                         target_concurrency=4)

    def verdicts(ttft: float, tpot: float) -> list[str]:
        cand = bench_reports.report(bench_reports.level(1, ttft=ttft, tpot=tpot),
                                    bench_reports.level(4, ttft=ttft, tpot=tpot))
        return [r.verdict for r in gate.evaluate(targets, cand, base, regression_budget=0.10).rows[:2]]

    assert verdicts(0.110, 0.010) == ["pass", "pass"]  # TTFT exactly 10% worse: within the budget; tok/s -5%
    assert verdicts(0.1111, 0.010) == ["beyond regression budget", "pass"]
    assert verdicts(0.050, 0.005) == ["pass", "pass"]  # better is never a regression
    assert verdicts(0.100, 0.013) == ["pass", "beyond regression budget"]  # E2E 0.19 -> 0.217 s: tok/s 12% lower


def test_a_baseline_with_another_workload_is_not_compared():
    cand = bench_reports.report(bench_reports.level(1, ttft=0.3, tpot=0.01))
    other = bench_reports.report(bench_reports.level(1, ttft=0.1, tpot=0.01),
                                 workload=bench.Workload(prompt_tokens=2000, max_tokens=10, extra={"temperature": 0.0}))
    ev = gate.evaluate(objectives(("ttft_p90_ms", 1, "max", 1000)), cand, other, regression_budget=0.1,
                       baseline_label="r0")
    assert ev.passed and ev.baseline is None
    assert [r.verdict for r in ev.rows] == ["no baseline", "pass"]
    assert ev.notes[
        0] == "baseline r0 was measured with another workload (prompt_tokens 2000 -> 512, prompt_words 2000 -> 512): " \
                          "not compared, objectives only"


def test_an_objective_at_a_level_that_was_not_measured_is_a_miss_and_a_busy_client_is_noted():
    cand = bench_reports.report(bench_reports.level(1, ttft=0.1, tpot=0.01, busy=True))
    ev = gate.evaluate(objectives(("ttft_p90_ms", 8, "max", 1000)), cand, None, regression_budget=0.1)
    assert (ev.rows[0].verdict, ev.rows[0].note) == ("miss objective", "level not measured")
    assert ev.reasons == ("ttft_p90_ms at concurrency 8: not measured (the measurement has levels 1)",)
    assert "concurrency 1: the measuring client was busy; its latencies may be inflated" in ev.notes


def test_the_baseline_is_the_current_releases_own_gate_measurement_first():
    by_gate = bench_reports.report(bench_reports.level(1, ttft=0.1, tpot=0.01), env="staging")
    on_target = bench_reports.report(bench_reports.level(1, ttft=0.2, tpot=0.01), env="prod")
    release = records.release(7, gate=gate.GateRecord(verdict="passed", measurement=by_gate), measurement=on_target)
    assert gate.baseline_from(release) == (by_gate, "r20260107-120000-abcde7 (v7), measured by its own gate on staging")
    skipped = gate.skip_override("hotfix", environ={}, now=0)
    found, label = gate.baseline_from(release.model_copy(update={"gate": gate.record(override=skipped)}))
    assert found is on_target and label.endswith("measured on prod while serving (not like for like)")
    assert gate.baseline_from(records.release(1)) is None and gate.baseline_from(None) is None


# ---------------------------------------------------------------- rendering


def test_the_markdown_summary_is_a_github_table_with_one_row_per_check(tmp_path):
    base = bench_reports.report(bench_reports.level(1, ttft=0.1, tpot=0.01),
                                bench_reports.level(4, ttft=0.1, tpot=0.01))
    cand = bench_reports.report(bench_reports.level(1, ttft=0.5, tpot=0.01),
                                bench_reports.level(4, ttft=0.1, tpot=0.012, failed=1))
    ev = gate.evaluate(objectives(*LIMITS, ("ttft_p90_ms", "target", "max", 1000), target_concurrency=4), cand, base,
                       regression_budget=0.1, measured_label="r2 | staging", baseline_label="r1 (v3)")
    markdown = gate.render_markdown(ev, "qwen3-8b-low-latency r2 staging → prod")
    assert markdown.splitlines()[0] == "### ❌ Promotion gate refused: qwen3-8b-low-latency r2 staging → prod"

    html = MarkdownIt("commonmark").enable("table").render(markdown)
    assert html.count("<table>") == 1
    assert len(re.findall(r"<th[ >]", html)) == len(gate.HEADER) and html.count("<tr>") == 1 + len(ev.rows)
    cells = html.split("<tbody>")[1]
    assert "<code>ttft_p90_ms</code>" in cells and "≤ 100.0 ms" in cells and "❌ miss objective" in cells
    assert "❌ beyond regression budget" in cells and "<code>error_rate</code> (implicit)" in cells
    assert "r2 | staging" in html  # a | in a label is escaped, not a new column
    assert html.count("<li>") == len(ev.reasons)

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert gate.write_job_summary(markdown, {"GITHUB_STEP_SUMMARY": str(summary)}) == summary
    assert summary.read_text() == "earlier step\n" + markdown + "\n"
    assert gate.write_job_summary(markdown, {}) is None


def test_the_text_table_lines_up():
    cand = bench_reports.report(bench_reports.level(1, ttft=0.05, tpot=0.004),
                                bench_reports.level(2, ttft=0.06, tpot=0.004))
    text = gate.render_text(gate.evaluate(objectives(*LIMITS), cand, cand, regression_budget=0.1,
                                          baseline_label="itself"))
    lines = text.splitlines()
    assert lines[0] == "gate PASSED"
    assert lines[1] == "measured: staging; baseline: itself; regression budget 10%"
    assert lines[2].split() == ["objective", "level", "limit", "measured", "baseline", "change", "verdict"]
    assert set(lines[3].replace(" ", "")) == {"-"}
    assert lines[4].split() == ["ttft_p90_ms", "1", "≤", "100.0", "ms", "50.0", "ms", "50.0", "ms", "+0.0%", "pass"]
    assert len({len(line) for line in lines[2:4]}) == 1


# ---------------------------------------------------------------- --skip-gate


@pytest.mark.parametrize("reason", [None, True, "", "   \n ", 42])
def test_skipping_the_gate_needs_a_reason(reason):
    with pytest.raises(ConfigError, match=r"--(skip-gate needs --reason|reason must say why)"):
        gate.skip_override(reason, environ={})


def test_the_override_records_who_where_and_why(monkeypatch):
    import getpass
    import socket

    monkeypatch.setenv("MODAL_KEY", "wk-supersecretvalue")
    ci = {"GITHUB_ACTOR": "octocat", "GITHUB_WORKFLOW": "promote-prod", "GITHUB_RUN_ID": "123456",
          "GITHUB_RUN_ATTEMPT": "2",
          "GITHUB_REPOSITORY": "acme/sglang-modal-infra", "GITHUB_SERVER_URL": "https://github.com"}
    o = gate.skip_override("  hotfix for\nCVE-2026-1, key wk-supersecretvalue  ", environ=ci, now=1767225600.0)
    assert o.reason == "hotfix for CVE-2026-1, key ****"  # one line, and no credential in the manifest
    assert o.by == f"{getpass.getuser()}@{socket.gethostname()}"
    assert (o.github_actor, o.github_workflow, o.github_run_id) == ("octocat", "promote-prod", "123456")
    assert o.github_run_url == "https://github.com/acme/sglang-modal-infra/actions/runs/123456/attempts/2"
    assert o.line() == (f"gate skipped by {o.by} (GitHub actor octocat, workflow 'promote-prod', "
                        "https://github.com/acme/sglang-modal-infra/actions/runs/123456/attempts/2) at 2026-01-01 "
                        "00:00:00Z: hotfix for CVE-2026-1, key ****")
    rec = gate.record(override=o).to_data()
    assert rec == {"verdict": "skipped", "override": o.to_data(), "measurement": None, "evaluation": None}
    assert json.loads(json.dumps(rec)) == rec
    assert gate.GateRecord.read(json.loads(json.dumps(rec))).override == o

    laptop = gate.skip_override("staging is down, fix verified by hand", environ={}, now=0)
    assert (laptop.github_actor, laptop.github_run_url) == (None, None)
    assert laptop.line().startswith(f"gate skipped by {laptop.by} at 1970-01-01 00:00:00Z: staging is down")
    with pytest.raises(ConfigError, match="--reason is 501 characters; allowed: up to 500"):
        gate.skip_override("x" * 501, environ={})


def test_a_gate_record_needs_a_verdict_or_an_override():
    with pytest.raises(ValueError):
        gate.record()
