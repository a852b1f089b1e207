"""The tasks as a user runs them, at the wire: `python -m invoke ...` in a clean project copy, with the REAL
`ModalRemote` and the pinned `modal` client talking to the fake control plane (tests/fakes/modal_wire).

FORCE_COLOR=1 and TTY_COMPATIBLE=1 are set for every run, as many CI systems set them. The fake runs
the real job bodies (weights from a local Hub, kernels with the stand-in SGLang), and each deployed
Server's URL forwards to a local OpenAI-compatible server behind Modal's proxy auth where the
environment asks for it. Each test fails if the client called an RPC the fake does not implement.
"""

from __future__ import annotations

import json

import pytest

from infra.runtime import weights
from infra.runtime.deployment import Deployment
from tests.conftest import deployment

# A hang guard, not a speed limit: each test runs several `python -m invoke` processes end to end, which on a
# loaded 2-core machine takes minutes.
pytestmark = pytest.mark.timeout(600)

RECIPE = "qwen3-8b-low-latency"
APP = "sglang-qwen3-8b-low-latency"
FOR_RECIPE = ("--recipe", RECIPE)


def ok(done) -> str:
    assert done.returncode == 0, (f"exit {done.returncode}\nstdout:\n{done.stdout[-2000:]}\n"
                                  f"stderr:\n{done.stderr[-4000:]}")
    return done.stdout


def manifest(wire, env: str) -> dict | None:
    raw = wire.volume_files(env, "sglang-releases").get(f"releases/{RECIPE}.json")
    return json.loads(raw) if raw else None


def test_dev_build_download_compile_deploy_twice_smoke_status_scale_rollback_try(wire, wire_cli):
    d = deployment("dev")
    [built] = wire_cli.json("build", "--env", "dev", *FOR_RECIPE)  # --json: Modal's progress must not reach stdout
    assert built["detail"]["image_id"].startswith("im-")

    [downloaded] = wire_cli.json("download", "--env", "dev", *FOR_RECIPE)
    commits = {r["repo"]: r["commit"] for r in downloaded["detail"]["downloads"]}
    cache = wire.volume_dir("dev", d.caches.weights_volume)
    assert all(weights.read_marker(cache, repo, commit) for repo, commit in commits.items())

    [compiled] = wire_cli.json("compile", "--env", "dev", *FOR_RECIPE)
    assert compiled["detail"]["skipped"] is False
    assert any(wire.volume_files("dev", d.caches.kernels_volume))

    out = ok(wire_cli("deploy", "--env", "dev", *FOR_RECIPE))
    assert f"deployed {APP} v1 (git-" in out
    first = manifest(wire, "dev")["current"]
    assert (first["version"], first["url"]) == (1, f"{wire.proxy_url}/srv/dev--{APP}-server")
    # pinned from the download (the release derives its draft revision from the deployment it records)
    assert first["deployment"]["recipe"]["speculative"]["draft_revision"] == commits["Tengyunw/qwen3_8b_eagle3"]

    # Issue 11 item 4: the same deploy again is skipped by Modal: said so, and no release invented.
    out = ok(wire_cli("deploy", "--env", "dev", *FOR_RECIPE, "--force"))
    assert f"no change: {APP} is still v1 ({first['tag']})" in out
    assert [r["release_id"] for r in manifest(wire, "dev")["history"]] == [first["release_id"]]
    assert [v["version"] for v in wire.app_versions("dev", APP)] == [1]

    assert "smoke passed" in ok(wire_cli("smoke", "--env", "dev", *FOR_RECIPE))
    assert manifest(wire, "dev")["current"]["smoke"]["passed"] is True
    status = ok(wire_cli("status", "--env", "dev", *FOR_RECIPE))
    assert " v1 deploy of " in status and "smoke passed" in status and "drift: none" in status

    out = ok(wire_cli("scale", "--env", "dev", *FOR_RECIPE, "--min", "0"))
    assert "min_containers now 0" in out and "now None" not in out
    assert wire.autoscaler("dev", APP)["min_containers"] == 0

    ok(wire_cli("deploy", "--env", "dev", *FOR_RECIPE, "--set", "scaling.max_containers=1"))
    assert [v["version"] for v in wire.app_versions("dev", APP)] == [1, 2]
    out = ok(wire_cli("rollback", "--env", "dev", *FOR_RECIPE))
    assert "rolled dev/qwen3-8b-low-latency back to v1" in out and "now v3" in out
    assert wire.app_versions("dev", APP)[-1] | {"deployed_at": 0} == {
        "version": 3, "tag": first["tag"], "rollback_version": 1, "live": True, "deployed_at": 0,
        "app_tags": {"env": "dev", "recipe": RECIPE, "role": "server", "commit": first["tag"]}}
    assert manifest(wire, "dev")["current"]["kind"] == "rollback"

    out = ok(wire_cli("try", "--env", "dev", *FOR_RECIPE))
    assert "replied after" in out and "app stopped" in out
    assert wire.app_states("dev", APP)[-1] == "APP_STATE_STOPPED"  # the ephemeral run is stopped
    assert wire.app_versions("dev", APP)[-1]["version"] == 3  # and deployed nothing


def test_staging_pipeline_then_promotion_to_prod_then_a_failed_promotion_rolls_prod_back(wire, wire_cli, fake_server):
    wire.create_secret("staging", "huggingface-secret", {"HF_TOKEN": "hf_wirestagingtoken"})
    results = wire_cli.json("pipeline", "--env", "staging", *FOR_RECIPE, "--yes")
    assert [(r["stage"], r["status"]) for r in results] == [
        ("build", "ran"), ("download", "ran"), ("compile", "ran"), ("deploy", "ran"), ("smoke", "ran")]
    staged = manifest(wire, "staging")["current"]
    assert staged["smoke"]["passed"] and staged["url"] == f"{wire.proxy_url}/srv/staging--{APP}-server"
    assert wire.volume_dir("prod", "huggingface-cache") is not None  # staging fills prod's caches
    assert wire.volume_dir("staging", "huggingface-cache") is None

    # The gate is off here: this test is about the promotion's mechanics (the gate's: test_the_promotion_gate_...).
    ungated = {"INFRA_GATE__ENABLED": "false"}
    out = ok(wire_cli("promote", "--from", "staging", "--to", "prod", *FOR_RECIPE, "--yes", **ungated))
    assert "promoted" in out and "to prod as v1" in out
    prod = manifest(wire, "prod")["current"]
    assert prod["kind"] == "promote" and prod["smoke"]["passed"] and prod["commit"] == staged["commit"]
    assert wire.autoscaler("prod", APP)["min_containers"] == 1  # prod's own scaling
    assert "current" in ok(wire_cli("status", "--env", "prod", *FOR_RECIPE))
    out = ok(wire_cli("scale", "--env", "prod", *FOR_RECIPE, "--min", "2"))
    assert "min_containers now 2" in out and wire.autoscaler("prod", APP)["min_containers"] == 2

    # A new release whose prod smoke test fails: prod is rolled back to v1 and the failure recorded.
    recipe_file = wire_cli.project / "infra" / "runtime" / "recipes" / "qwen3_8b_low_latency.py"
    recipe_file.write_text(recipe_file.read_text() + "\n# a later release\n")
    wire_cli.commit("a later release")
    ok(wire_cli("pipeline", "--env", "staging", *FOR_RECIPE, "--yes"))
    assert manifest(wire, "staging")["current"]["version"] == 2
    wire.upstreams[("prod", APP)] = fake_server("--chat-status", "500").url
    done = wire_cli("promote", "--from", "staging", "--to", "prod", *FOR_RECIPE, "--yes", **ungated)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "promote failed: prod smoke test failed" in done.stderr and "rolled back to v1" in done.stderr
    assert [(v["version"], v["rollback_version"], v["live"]) for v in wire.app_versions("prod", APP)] == [
        (1, 0, False), (2, 0, False), (3, 1, True)]
    history = manifest(wire, "prod")["history"]
    assert [(r["kind"], r["version"]) for r in history] == [("rollback", 3), ("promote", 2), ("promote", 1)]
    assert history[1]["smoke"]["passed"] is False


def test_smoke_without_proxy_auth_headers_is_refused_by_the_proxy(wire, wire_cli):
    ok(wire_cli("deploy", "--env", "staging", *FOR_RECIPE, "--set", f"recipes.{RECIPE}.draft_revision={'ab' * 20}"))
    done = wire_cli("smoke", "--env", "staging", *FOR_RECIPE, MODAL_KEY="", MODAL_SECRET="")
    assert done.returncode == 1 and "401" in done.stderr


def test_a_gated_model_without_its_secret_is_refused_before_anything_starts(wire, wire_cli):
    done = wire_cli("download", "--env", "staging", *FOR_RECIPE, "--set", f"recipes.{RECIPE}.gated=true")
    assert done.returncode == 1
    assert "create it with `modal secret create huggingface-secret HF_TOKEN=... --env staging`" in done.stderr
    assert wire.app_states("staging", f"{APP}-jobs") == [] and wire.jobs == []


@pytest.mark.parametrize("task", [
    ("build", "--env", "dev"), ("download", "--env", "dev"), ("compile", "--env", "dev"), ("deploy", "--env", "dev"),
    ("smoke", "--env", "dev"), ("status", "--env", "dev"), ("try", "--env", "dev"), ("rollback", "--env", "dev"),
    ("scale", "--env", "prod", "--min", "2"), ("promote", "--from", "staging", "--to", "prod", "--yes"),
], ids=lambda task: task[0])
def test_every_task_without_credentials_says_how_to_set_them(wire, wire_cli, task):
    """Issue 11 item 7: one voice; Modal's raw AuthError never reaches the user."""
    done = wire_cli(*task, *FOR_RECIPE, MODAL_TOKEN_ID="", MODAL_TOKEN_SECRET="")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: Modal credentials missing: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (CI: repository secrets) "
        "or run `modal token new` on a laptop; `invoke plan` works without them")
    assert wire.rpcs() == []


# ---------------------------------------------------------------------------- issue 11's stage-level defects


def test_staging_download_of_a_public_model_works_without_the_optional_hf_secret(wire, wire_cli):
    done = wire_cli("download", "--env", "staging", *FOR_RECIPE)
    ok(done)
    assert "Modal Secret 'huggingface-secret' does not exist in environment staging" in done.stderr  # it says so
    assert "downloading without a Hugging Face token" in done.stderr


def test_a_dry_run_needs_no_credentials(wire, wire_cli):
    pinned = f"recipes.{RECIPE}.draft_revision={'ab' * 20}"  # prod requires pinned revisions, also in a dry run
    ok(wire_cli("deploy", "--env", "prod", *FOR_RECIPE, "--dry-run", "--set", pinned, MODAL_TOKEN_ID="",
                MODAL_TOKEN_SECRET=""))


def test_a_dry_run_makes_no_remote_call(wire, wire_cli):
    for task in ("compile", "deploy", "try", "pipeline"):
        ok(wire_cli(task, "--env", "staging", *FOR_RECIPE, "--dry-run", "--yes") if task in ("deploy", "pipeline")
           else wire_cli(task, "--env", "staging", *FOR_RECIPE, "--dry-run"))
    assert wire.rpcs() == [] and wire.volumes() == []


def test_a_scheduled_floor_is_deployed_as_a_cron_function_and_applied_after_the_deploy(wire, wire_cli):
    """Issue 17 at the wire: the server's app carries one scheduled Function per cron trigger, and the floor
    the schedule says holds now is set through the Servers autoscaler right after the deploy lands."""
    from datetime import UTC, datetime

    from infra.runtime import schedule
    from infra.runtime.deployment import Scaling, Window

    window = ('[{name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI", '
              'timezone="America/New_York", min_containers=2}]')
    pinned = f'recipes.{RECIPE}.draft_revision="{"b" * 40}"'
    out = ok(wire_cli("deploy", "--env", "prod", *FOR_RECIPE, "--yes", "--set", pinned, INFRA_SCALING__SCHEDULE=window))
    assert wire.schedules("prod", APP) == {"server": None, "apply_floor_0": ("0 8,18 * * MON-FRI", "America/New_York")}
    windows = [Window(name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI",
                      timezone="America/New_York",
                      min_containers=2)]
    wanted = schedule.floor_at(datetime.now(UTC), windows, Scaling(min_containers=1, max_containers=4))  # prod's
    assert wire.autoscaler("prod", APP)["min_containers"] == wanted.min_containers
    assert "FunctionUpdateSchedulingParams" in wire.rpcs() and f"deployed {APP} v1" in out


def test_the_promotion_gate_through_the_real_client(wire, wire_cli, fake_server, tmp_path):
    """Issue 16 at the wire: `invoke promote` measures staging's Server URL through Modal's proxy with the credentials
    that belong there, refuses a release that fails requests (table on stderr and in the job summary) leaving prod
    untouched, promotes the same release once it answers well and records prod's own baseline; `status --json` shows
    the ledger and `bench --compare` finds a release by its id."""
    summary = tmp_path / "job-summary.md"
    gated = {"INFRA_GATE__OBJECTIVES": '[{ metric = "ttft_p90_ms", level = 1, max = 1000 }]',
             "GITHUB_STEP_SUMMARY": str(summary)}
    staging_url, prod_url = f"staging--{APP}-server", f"prod--{APP}-server"
    # Every 4th chat request breaks mid-stream: the smoke test (the 1st) passes, a quarter of the gate's fail.
    wire.upstreams[("staging", APP)] = fake_server("--tokens", "6", "--error-at", "2", "--misbehave-every", "4").url
    wire.create_secret("staging", "huggingface-secret", {"HF_TOKEN": "hf_wiregatetoken"})
    ok(wire_cli("pipeline", "--env", "staging", *FOR_RECIPE, "--yes"))
    staged = manifest(wire, "staging")["current"]
    wire.proxied.clear()

    done = wire_cli("promote", "--from", "staging", "--to", "prod", *FOR_RECIPE, "--yes", **gated)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"gate REFUSED: {RECIPE} {staged['release_id']} staging → prod" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the promotion gate refused {RECIPE} {staged['release_id']} staging → prod: "
                           "error_rate at")
    assert last.endswith('nothing changed (table above; `--skip-gate --reason "..."` promotes anyway and records who '
                         'and why)')
    assert wire.app_versions("prod", APP) == [] and manifest(wire, "prod") is None
    assert {(p["label"], p["credentials"]) for p in wire.proxied} == {(staging_url, "valid")}
    assert len(wire.proxied) > 200  # both levels, 100 requests each
    assert "### ❌ Promotion gate refused" in summary.read_text()

    # The same release, answering well now (a URL's replicas can change; the URL does not).
    del wire.upstreams[("staging", APP)]
    wire.proxied.clear()
    out = ok(wire_cli("promote", "--from", "staging", "--to", "prod", *FOR_RECIPE, "--yes", "--record-baseline",
                      **gated))
    assert "(gate passed, smoke passed" in out and "prod's baseline recorded" in out
    prod = manifest(wire, "prod")["current"]
    assert prod["gate"]["verdict"] == "passed" and prod["gate"]["measurement"]["target"]["env"] == "staging"
    assert prod["measurement"]["target"]["env"] == "prod"
    assert [lv["concurrency"] for lv in prod["measurement"]["levels"]] == [1, 10]
    assert {(p["label"], p["credentials"]) for p in wire.proxied} == {(staging_url, "valid"), (prod_url, "valid")}
    assert "### ✅ Promotion gate passed" in summary.read_text()

    [status] = wire_cli.json("status", "--env", "prod", *FOR_RECIPE)
    (entry,) = status["detail"]["ledger"]
    assert entry["how"] == "promote from staging, gate passed" and entry["release_id"] == prod["release_id"]
    assert entry["performance"]["measured_on"] == "on prod"
    assert entry["performance"]["usd_per_million_output_tokens"] > 0

    ok(wire_cli("bench", "--env", "prod", *FOR_RECIPE, "--concurrency", "1", "--requests", "4", "--max-tokens", "64",
                "--output", "now.json"))
    out = ok(wire_cli("bench", "--compare", prod["release_id"], "--compare", "now.json", "--env", "prod", *FOR_RECIPE))
    assert out.splitlines()[0] == f"A = {prod['release_id']} (prod v1, on prod)"
    assert "warning: the two were measured with different workloads" in out


def test_status_shows_each_releases_recorded_starts_warns_of_misses_and_the_ledger_keeps_them(wire, wire_cli):
    """Issue 23: starts recorded by a release's containers (through ModalRemote.record_start, as infra/runtime/app.py
    does) show in `invoke status` with their phases and misses, and a replaced release keeps their summary."""
    from infra.runtime import timeline
    from infra.runtime.remote import ModalRemote, starts_bucket
    from tests.test_timeline import TIMINGS, read

    ok(wire_cli("download", "--env", "dev", *FOR_RECIPE))
    ok(wire_cli("deploy", "--env", "dev", *FOR_RECIPE))
    first = manifest(wire, "dev")["current"]
    bucket = starts_bucket(APP, timeline.deployment_digest(first["deployment"]))
    log = read("0.5.11-h200-cached.log")
    for i, (misses, before_launch) in enumerate([({}, 0.1), ({"triton": {"files": 64, "bytes": 639028, "examples": []}},
                                                             30.0)]):
        record = timeline.build_record(deployment=Deployment.read(first["deployment"]), log=log,
                                       timings=TIMINGS["0.5.11-h200-cached.log"],
                                       started_at=first["deployed_at"] + 0.01 * (i + 1), before_launch_s=before_launch,
                                       restore=timeline.Restore(restored=True, seconds=0.1), misses=misses,
                                       outcome="ready")
        ModalRemote().record_start("dev", bucket, record.to_data())

    status = ok(wire_cli("status", "--env", "dev", *FOR_RECIPE))
    assert (f"    {first['release_id']}: 2 start(s), ready in 142.5 s median, 157.5 s worst, "
            "1 with compile-cache misses") in status
    assert "ready in 127.6 s (restore 0.1, arguments 22.1, scheduler_start 21.7, weights 2.5, cuda_graphs 6.0, " \
           "piecewise_graphs 51.8" in status
    assert f"WARNING {first['release_id']}: 1 of 2 recorded start(s) compiled while starting (compile-cache misses: " \
           "triton 64 files); rerun `invoke compile --env dev --recipe qwen3-8b-low-latency --recompile`" in status
    assert "142.5/157.5 (2)" in status  # the ledger's cold-start column: median/worst (ready starts)

    ok(wire_cli("deploy", "--env", "dev", *FOR_RECIPE, "--set", "scaling.max_containers=1"))
    replaced = manifest(wire, "dev")["history"][1]
    assert replaced["release_id"] == first["release_id"]
    assert replaced["cold_starts"] | {"frozen_at": 0} == {
        "starts": 2, "ready": 2, "failed": 0, "refused": 0, "median_s": 142.5, "worst_s": 157.5, "with_misses": 1,
        "first_at": round(first["deployed_at"] + 0.01, 3), "last_at": round(first["deployed_at"] + 0.02, 3),
        "frozen_at": 0}
    [status] = wire_cli.json("status", "--env", "dev", *FOR_RECIPE)
    ledger = {row["release_id"]: row["cold_start"] for row in status["detail"]["ledger"]}
    assert ledger[first["release_id"]]["median_s"] == 142.5
    assert status["detail"]["cold_starts"][first["release_id"]][0]["misses"]["triton"]["files"] == 64
