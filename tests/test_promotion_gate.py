"""The promotion gate inside `promote` (issue 16): staging's release measured on staging's endpoint before prod is
touched: the real ModalRemote in front of the fake control plane (tests/wire.py), real git, and behind each
environment's Server URL a real local streaming server whose timing is set on its command line
(tests/fakes/openai_server.py). The fake's web proxy runs in its own process (tests/fakes/modal_wire/proxy.py) and
passes each chunk on as it arrives, whatever this interpreter is doing, so the gate's client reads the servers' own
timing.

No verdict rests on how fast the machine is: a server's own wait is a floor no load lowers (a release refused for
its 250 ms first token against a 100 ms limit is refused on any machine), and every limit a release must meet to pass
is one any machine running the suite meets (a minute to the first token, 10 s per token, 0.01 tok/s). The recipe's gate
workload is made small (8 requests per level instead of 100) and its target concurrency 2: what is measured and how
it is judged are unchanged, only the count.
"""

from __future__ import annotations

import json

import pytest

from infra.perf import bench, gate
from infra.runtime.errors import Refused
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import GateWorkload
from stages import bench as bench_stage
from stages import pipeline, promote, status
from tests.conftest import REPO
from tests.test_bake import WRITE_DOCS, shape
from tests.test_release_flow import APP, RECIPE, commit, flow  # noqa: F401  (the fixture)

QUICK = GateWorkload(prompt_tokens=16, max_tokens=8, requests=4, timeout=10)
FAST = ("--ttft", "0.01", "--itl", "0.002", "--tokens", "8")  # ~10 ms to the first token, 2 ms per token after
SLOW = ("--ttft", "0.25", "--itl", "0.002", "--tokens", "8")  # 2.5 times the 100 ms objective
# A release slower on every figure by what its server waits: 500 ms to the first token and at least 50 ms between
# tokens however late the server runs (--itl-floor), so a faster candidate cannot read as a regression under load.
FLOOR = ("--ttft", "0.5", "--itl", "0.05", "--itl-floor", "--tokens", "8")
REGRESSED = ("--ttft", "0.5", "--itl", "0.002", "--tokens", "8")  # within LOOSE, 50 times the fast baseline's wait
# prod's objectives for these tests (a --set layer over environments/prod.toml, whose gate is on): GATED limits TTFT
# at 100 ms, which SLOW misses on any machine; LOOSE's limits, and the rest of GATED's, any machine meets.
REST = ('{ metric = "tpot_p50_ms", level = "target", max = 10000 }, '
        '{ metric = "output_tokens_per_s", level = "target", min = 0.01 }')
GATED = (f'gate.objectives=[{{ metric = "ttft_p90_ms", level = 1, max = 100 }}, {REST}]',)
LOOSE = (f'gate.objectives=[{{ metric = "ttft_p90_ms", level = 1, max = 60000 }}, {REST}]',)


@pytest.fixture
def gated(flow, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setitem(RECIPES, RECIPE, RECIPES[RECIPE].model_copy(update=dict(gate_workload=QUICK)))
    monkeypatch.setenv(f"INFRA_RECIPES__{RECIPE.upper()}__TARGET_CONCURRENCY", "2")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "job-summary.md"))
    flow.summary = tmp_path / "job-summary.md"
    return flow


def serving(gated, staging, prod) -> None:
    """What answers behind staging's and prod's Server URLs (Modal's proxy forwards there)."""
    gated.wire.upstreams[("staging", APP)] = staging.url
    gated.wire.upstreams[("prod", APP)] = prod.url


def gate_requests(server) -> list[dict]:
    """The chat requests of the gate workload (its prompt is made of bench's word; the smoke test's is not)."""
    return [r for r in server.requests() if r["path"] == "/v1/chat/completions"
            and bench.PROMPT_WORD in json.dumps(r["body"]["messages"])]


def credentials(gated, env: str) -> set[str]:
    """The proxy-auth credentials every request to `env`'s Server URL carried, as Modal's proxy saw them (none, valid,
    invalid); the proxy takes them off before the server."""
    return {p["credentials"] for p in gated.wire.proxied if p["label"].startswith(f"{env}--")}


def prod_changes(calls: list[dict]) -> list[dict]:
    """Calls that change prod: a deploy, a rollback, an autoscaler change, a file written to its Volumes."""
    return [c for c in calls if c["method"] in ("deploy", "rollback", "update_autoscaler", "write_file")
            and (c["args"].get("environment") or c["args"]["d"].modal.environment) == "prod"]


def test_a_slow_staging_release_is_refused_with_the_table_and_prod_is_untouched(gated, fake_server):
    slow, prod_server = fake_server(*SLOW), fake_server(*FAST)
    serving(gated, slow, prod_server)
    staged = gated.staging()
    before, said = len(gated.modal.calls()), []

    with pytest.raises(Refused) as refused:
        gated.promote(*GATED, say=said.append)

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"the promotion gate refused {RECIPE} {staged.release_id} staging → prod: "
                              "ttft_p90_ms at concurrency 1: ")
    assert " ms misses the objective ≤ 100.0 ms; nothing changed" in message and message.count("misses") == 1
    # The table was printed: objective, limit, measured, baseline, verdict.
    table = "\n".join(said).splitlines()
    start = table.index(f"gate REFUSED: {RECIPE} {staged.release_id} staging → prod")
    assert table[start + 1].startswith(f"measured: {staged.release_id} on staging; baseline: none")
    assert table[start + 2].split() == ["objective", "level", "limit", "measured", "baseline", "change", "verdict"]
    row = next(line for line in table if line.startswith("ttft_p90_ms "))
    assert row.split()[1:4] == ["1", "≤", "100.0"] and row.endswith("miss objective")
    assert float(row.split()[5]) > 200  # ~250 ms
    # Measured on staging's endpoint, with the workload; prod untouched: no deploy, no manifest, no request.
    measured = gate_requests(slow)
    assert len(measured) >= 2 * 8 and {r["body"]["max_tokens"] for r in measured} == {8}
    assert all(r["body"]["temperature"] == 0.0 and r["body"]["model"] == staged.model for r in measured)
    assert prod_changes(gated.modal.calls()[before:]) == []
    assert gated.manifest("prod").current is None and prod_server.requests() == []
    # The GitHub job summary has the same table in Markdown.
    summary = gated.summary.read_text()
    assert summary.startswith(f"### ❌ Promotion gate refused: {RECIPE} {staged.release_id} staging → prod")
    assert "| `ttft_p90_ms` | 1 | ≤ 100.0 ms |" in summary and "❌ miss objective" in summary


def test_a_fast_release_is_promoted_and_its_numbers_are_in_the_manifest(gated, fake_server):
    fast = fake_server(*FAST)
    serving(gated, fast, fast)
    staged = gated.staging()

    dry = gated.promote(*LOOSE, dry_run=True)
    assert dry.status == "dry-run" and "measure it on staging (the gate), then deploy it to" in dry.message
    assert gate_requests(fast) == []

    result = gated.promote(*LOOSE)
    assert result.status == "ran" and "(gate passed, smoke passed" in result.message
    prod = gated.manifest("prod").current
    record = prod.gate.to_data()
    assert record["verdict"] == "passed" and record["override"] is None
    m = record["measurement"]
    assert m["target"] | {"url": None} == {"url": None, "model": staged.model, "env": "staging", "recipe": RECIPE,
                                           "app": staged.app_name, "release_id": staged.release_id}
    assert m["target"]["url"] == staged.url  # staging's endpoint, not prod's
    assert [lv["concurrency"] for lv in m["levels"]] == [1, 2] and all("records" not in lv for lv in m["levels"])
    assert m["levels"][0]["requests"] == {"sent": 8, "ok": 8, "failed": 0}
    assert m["workload"]["max_tokens"] == 8
    assert m["workload"]["sampling"] == {"temperature": 0.0, "top_p": None, "top_k": None}
    rows = {(r["metric"], r["concurrency"]): r for r in record["evaluation"]["rows"]}
    assert rows[("ttft_p90_ms", 1)]["verdict"] == "no baseline"  # the first gated release: objectives only
    assert rows[("ttft_p90_ms", 1)]["measured"] == pytest.approx(m["levels"][0]["ttft_s"]["p90"] * 1000)
    assert rows[("ttft_p90_ms", 1)]["measured"] >= 10  # the server's 10 ms wait, a floor (the rest is the machine's)
    assert prod.measurement is None  # prod itself is measured only when asked
    assert result.detail.gate.to_data() == record | {"measurement": None}  # the measurement is in the manifest only
    # Staging's endpoint asks for proxy auth: the gate sent staging's credentials there.
    assert credentials(gated, "staging") == {"valid"}
    assert "### ✅ Promotion gate passed" in gated.summary.read_text()

    # The ledger: how it got there, its figures at 1 and the target, and its cost at the measured throughput.
    ctx = gated.ctx("prod")
    report = status.run(ctx, gated.d(ctx))
    (entry,) = report.detail.ledger
    assert entry["how"] == "promote from staging, gate passed" and entry["smoke_passed"] is True
    assert (entry["commit"], entry["model_revision"]) == (staged.commit, staged.model_revision)
    perf = entry["performance"]
    assert perf["measured_on"] == "gate on staging" and perf["target_concurrency"] == 2 and perf["gpu_count"] == 2
    # One prod replica as Modal bills it (infra/control/costs.py): 2 H100s, 4 cores, 16 GiB, × 1.75 in us-east.
    assert perf["usd_per_replica_hour"] == pytest.approx((2 * 3.9492 + 4 * 0.04716 + 16 * 0.007992) * 1.75, abs=1e-4)
    assert perf["usd_per_million_output_tokens"] == pytest.approx(
        perf["usd_per_replica_hour"] / (perf["output_tokens_per_s"] * 3600) * 1e6, abs=1e-3)
    ledger_lines = report.message.split("ledger (newest first;")[1].splitlines()[1:]
    assert ledger_lines[0].split()[:3] == ["release", "v", "how"]
    assert "promote from staging, gate passed" in ledger_lines[2] and ledger_lines[2].endswith("gate on staging")


def test_a_regression_within_the_objectives_but_beyond_the_budget_is_refused(gated, fake_server):
    fast, regressed, prod_server = fake_server(*FAST), fake_server(*REGRESSED), fake_server(*FAST)
    serving(gated, fast, prod_server)
    gated.staging()
    first = gated.promote(*LOOSE).detail  # prod runs release A, measured by its gate (10 ms TTFT and up)

    commit(gated.repo, "release B")
    serving(gated, regressed, prod_server)
    b = gated.staging()
    before, said = len(gated.modal.calls()), []
    with pytest.raises(Refused) as refused:
        gated.promote(*LOOSE, say=said.append)

    message = str(refused.value)
    assert "ttft_p90_ms at concurrency 1: " in message and "higher than the baseline's" in message
    assert "(regression budget 10%)" in message and "misses the objective" not in message
    table = "\n".join(said)
    assert f"baseline: {first.release_id} (v1), measured by its own gate on staging; regression budget 10%" in table
    row = next(line for line in table.splitlines() if line.startswith("ttft_p90_ms "))
    assert row.endswith("beyond regression budget") and float(row.split()[5]) >= 500  # the 500 ms wait, a floor
    assert int(row.split()[-4].strip("+%").split(".")[0]) > 10  # beyond the 10% budget (unless 10 ms read as 450)
    # Prod still runs A; B's measurement went nowhere but staging's endpoint.
    assert gated.manifest("prod").current.release_id == first.release_id
    assert prod_changes(gated.modal.calls()[before:]) == []
    assert gate_requests(regressed) and not gate_requests(prod_server)
    assert b.release_id not in json.dumps(json.loads(gated.manifest("prod").to_json()))


def test_skip_gate_promotes_unmeasured_and_records_who_and_why(gated, fake_server):
    slow, prod_server = fake_server(*SLOW), fake_server(*FAST)
    serving(gated, slow, prod_server)
    staged = gated.staging()
    ci = {"GITHUB_ACTOR": "octocat", "GITHUB_WORKFLOW": "promote-prod", "GITHUB_RUN_ID": "42",
          "GITHUB_REPOSITORY": "acme/sglang-modal-infra"}
    override = gate.skip_override("hotfix for CVE-2026-1", environ=ci)
    said = []

    result = gated.promote(*GATED, options=promote.Options(RECIPE, skip_gate=override), say=said.append)

    assert result.status == "ran" and "(gate skipped, smoke passed" in result.message
    assert gate_requests(slow) == []  # nothing measured
    prod = gated.manifest("prod").current
    assert prod.gate.to_data() == {"verdict": "skipped", "override": override.to_data(), "measurement": None,
                                   "evaluation": None}
    assert prod.gate.override.reason == "hotfix for CVE-2026-1" and "@" in prod.gate.override.by
    assert prod.gate.override.github_run_url == "https://github.com/acme/sglang-modal-infra/actions/runs/42"
    line = f"{RECIPE} {staged.release_id} staging → prod: {override.line()}"
    assert line in said
    assert gated.summary.read_text().startswith(f"### ⚠️ Promotion gate skipped: {RECIPE} {staged.release_id} staging "
                                                "→ prod")
    assert "GitHub actor octocat" in gated.summary.read_text()
    ctx = gated.ctx("prod")
    report = status.run(ctx, gated.d(ctx))
    (entry,) = report.detail.ledger
    assert entry["how"] == "promote from staging, gate skipped"
    assert entry["gate_override"]["reason"] == "hotfix for CVE-2026-1"
    assert entry["performance"] is None
    assert f"    {prod.release_id}: {override.line()}" in report.message.splitlines()  # who skipped it, and why


def test_no_credential_reaches_anything_but_the_environments_own_endpoint(gated, fake_server):
    public_staging, prod_server = fake_server(*FAST), fake_server(*FAST)

    def staging():  # staging without proxy auth this time: its endpoint is public
        return gated.ctx("staging", "auth.proxy_auth=false")

    serving(gated, public_staging, prod_server)
    pipeline.run(staging(), gated.d(staging()))
    said = []
    prod_ctx = gated.ctx("prod", *LOOSE, "gate.record_baseline=true", yes=True, say=said.append)
    result = promote.run(staging(), prod_ctx, promote.Options(RECIPE))

    assert "prod's baseline recorded" in result.message
    # The gate sent the public source no credential; prod (proxy auth) got its own, for its smoke test and baseline.
    assert gate_requests(public_staging) and credentials(gated, "staging") == {"none"}
    assert gate_requests(prod_server) and credentials(gated, "prod") == {"valid"}
    prod, staged = gated.manifest("prod").current, gated.manifest("staging").current
    assert prod.measurement.target.env == "prod" and prod.measurement.target.url == prod.url != staged.url
    assert prod.gate.measurement.target.url == staged.url
    # And nowhere else: not in a manifest, the job summary, what was said, the result, or any call to Modal.
    key, secret = gated.wire.proxy_token
    written = [gated.manifest(env).to_json() for env in ("staging", "prod")]
    for text in [*written, gated.summary.read_text(), "\n".join(said), json.dumps(result.to_dict(), default=str),
                 repr(gated.modal.calls())]:
        assert key not in text and secret not in text


def test_two_promoted_releases_compare_by_their_ids(gated, fake_server):
    slower = fake_server(*FLOOR)  # 500 ms and 50 ms a token, within LOOSE's minute
    faster, prod_server = fake_server("--ttft", "0.002", "--itl", "0.001", "--tokens", "8"), fake_server(*FAST)
    serving(gated, slower, prod_server)
    gated.staging()
    a = gated.promote(*LOOSE).detail
    commit(gated.repo, "release B")
    serving(gated, faster, prod_server)
    gated.staging()
    b = gated.promote(*LOOSE).detail

    history = gated.manifest("prod").history
    printed: list[str] = []
    comparison = bench_stage.compare([a.release_id, b.release_id], releases=lambda: (history, "prod manifest"),
                                     out=printed.append).to_data()
    assert comparison["a"].startswith(f"{a.release_id} (prod v1, gate on staging)")
    assert comparison["b"].startswith(f"{b.release_id} (prod v2, gate on staging)")
    ttft = next(r for r in comparison["rows"] if r["concurrency"] == 1 and r["metric"] == "TTFT p50 ms")
    assert ttft["verdict"] == "better" and ttft["ratio"] < 0.8  # 2 ms and up against 500 ms and up
    assert comparison["warnings"] == []
    assert printed[0].splitlines()[:2] == [f"A = {comparison['a']}", f"B = {comparison['b']}"]


def test_the_second_promotion_shows_the_candidate_beside_prods_current_release_on_every_figure(gated, fake_server):
    # The first release is slower on every figure by what its server waits (FLOOR: a floor no load lowers), so the
    # candidate never reads as a regression beyond the budget on a loaded machine; LOOSE, as the budget is the point.
    slower, faster, prod_server = (fake_server(*FLOOR),
                                   fake_server("--ttft", "0.002", "--itl", "0.001", "--tokens", "8"),
                                   fake_server(*FAST))
    serving(gated, slower, prod_server)
    gated.staging()
    said: list[str] = []
    first = gated.promote(*LOOSE, say=said.append).detail
    out = "\n".join(said)
    assert "  current:   none (first release here)" in out  # the first promotion: nothing to compare with
    commit(gated.repo, "release B")
    serving(gated, faster, prod_server)
    candidate = gated.staging()
    said.clear()
    gated.promote(*LOOSE, say=said.append)
    table = next(m for m in said if m.startswith("qualification: ")).splitlines()
    assert table[0] == f"qualification: {RECIPE} {candidate.release_id} staging → prod"
    assert table[1].startswith(f"  current:   {first.release_id} (prod v1, v0.5.6.post2-") and table[2].startswith(
        f"  candidate: {candidate.release_id} (staging v") and table[2].endswith("; gate passed")
    rows = {line.split("  ")[1].strip(): line for line in table[4:]}
    ttft = rows["ttft_p90_ms @ c=1"].split()
    assert ttft[4] == ttft[6] == "ms" and float(ttft[3]) > float(ttft[5])  # prod's ~500 ms, the candidate's ~2 ms
    assert "gate: pass" in rows["ttft_p90_ms @ c=1"]
    assert "output tok/s @ c=2" in rows and "$/M output tokens" in rows
    assert "no recorded start on either side" in rows["cold start"]
    assert rows["GPU acceptance"].split()[2:6] == ["not", "run", "not", "run"]
    documented_qualification("\n".join(table))
    summary = gated.summary.read_text()
    assert f"### Qualification: {RECIPE} {candidate.release_id} staging → prod" in summary
    assert "| $/M output tokens |" in summary


def test_phase_medians_are_taken_over_the_starts_that_became_ready():
    from infra.perf.qualify import phase_medians
    from infra.runtime.timeline import Phase, StartRecord

    def start(outcome, total, weights):
        return StartRecord(outcome=outcome, total_s=total, phases=[Phase(phase="weights", end_s=weights,
                                                                         seconds=weights)])

    medians = phase_medians([start("ready", 100, 10), start("ready", 120, 30), start("ready", 110, 20),
                             start("failed", 900, 800)])
    assert medians == {"weights": 20, "total": 110}
    assert phase_medians([start("failed", 900, 800)]) == {}


UPGRADE_DOC = REPO / "docs" / "upgrade.md"


def documented_qualification(produced: str) -> None:
    """docs/upgrade.md's block marked `produced by tests/test_promotion_gate.py: qualification` is this run's table
    (INFRA_WRITE_DOCS=1 writes it); figures, ids and padding aside, it must not drift."""
    marker = "<!-- produced by tests/test_promotion_gate.py: qualification -->\n```text\n"
    page = UPGRADE_DOC.read_text()
    start = page.index(marker) + len(marker)
    end = page.index("```", start)
    if WRITE_DOCS:
        UPGRADE_DOC.write_text(page[:start] + produced.strip() + "\n" + page[end:])
        return
    def unsigned(text: str) -> list[str]:  # a change's sign is the machine's, not the page's
        return [line.replace("+<n>", "<n>").replace("-<n>", "<n>") for line in shape(text)]

    assert unsigned(page[start:end]) == unsigned(produced), "docs/upgrade.md drifted: INFRA_WRITE_DOCS=1"
