"""Records that outlive a version: manifests, bench reports and start records that older versions of this package
really wrote (tests/fixtures/manifests/, tests/fixtures/records/; each made by that version's own code, see
tests/fixtures/manifests/how_made/) read with today's models, one named upgrade per older layout, written strictly."""

from __future__ import annotations

import ast
import json

import pytest
from pydantic import ValidationError

from infra.control import costs
from infra.perf import bench, ledger
from infra.perf.releases import Manifest, Release
from infra.runtime import timeline
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from tests.conftest import REPO
from tests.fakes import records

MANIFESTS = REPO / "tests" / "fixtures" / "manifests"
RECORDS = REPO / "tests" / "fixtures" / "records"
LAYOUTS = {  # fixture -> what it proves
    "v1_flat_deployment.json": "03f1f1d: flat deployment, smoke dicts, flat copies",
    "v2_gate_dicts.json": "86461d9: nested deployment with modal.app_name, gate and measurement dicts",
    "v3_flat_copies.json": "bdb603f: pydantic release, flat copies, skipped gate, cold_starts, rollback",
}
FLAT_COPIES = ("env", "recipe", "app_name", "modal_environment", "image", "model", "model_revision", "draft_model",
               "draft_revision")


def raw(name: str) -> dict:
    return json.loads((MANIFESTS / name).read_text())


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_old_manifest_reads_and_what_it_stored_twice_is_derived_the_same(name):
    data = raw(name)
    manifest = Manifest.from_json((MANIFESTS / name).read_text())
    assert [r.release_id for r in manifest.history] == [r["release_id"] for r in data["history"]]
    for release, old in zip(manifest.history, data["history"], strict=True):
        assert isinstance(release.deployment, Deployment)
        # The copies an older version stored beside the deployment are what the deployment says.
        assert {k: getattr(release, k) for k in FLAT_COPIES} == {k: old[k] for k in FLAT_COPIES}
        assert release.smoke_passed == bool(old["smoke"] and old["smoke"]["passed"])
        # Its containers' starts are found under the digest of the deployment as it was recorded.
        assert release.deployment_digest == timeline.deployment_digest(old["deployment"])
        assert ledger.container_of(release).gpu_count == 2 and ledger.how(release).startswith(old["kind"])
    # Written back strictly, and read back the same; the flat copies are no longer stored.
    again = json.loads(manifest.to_json())
    assert not any(k in r for r in again["history"] for k in FLAT_COPIES)
    assert Manifest.from_json(manifest.to_json()).model_dump() == manifest.model_dump()


def test_layout_1_the_flat_deployment_is_upgraded_by_its_own_function():
    old = raw("v1_flat_deployment.json")["current"]
    flat = old["deployment"]
    upgraded = Release.upgrade_flat_deployment(old)["deployment"]
    d = Deployment.read(upgraded)
    assert (d.recipe.name, d.recipe.gpu, d.recipe.tp_size, d.recipe.model_revision) == (
        flat["recipe"], f"{flat['gpu_type']}:{flat['gpu_count']}", flat["tp_size"], flat["model_revision"])
    assert (d.modal.environment, d.modal.cache_environment, d.app_name) == (
        flat["modal_environment"], flat["cache_environment"], flat["app_name"])
    assert (d.placement.compute_region, d.scaling.max_containers, d.secrets.hf_token_secret,
            d.server.hf_hub_offline) == (flat["compute_region"], flat["max_containers"], flat["hf_token_secret"],
                                         flat["hf_hub_offline"])
    assert d.recipe.speculative.draft_model == flat["draft_model"]
    # Recipes made no CPU or memory request then: the container is billed at Modal's defaults.
    release = Manifest.from_json((MANIFESTS / "v1_flat_deployment.json").read_text()).current
    assert ledger.container_of(release) == costs.Container("H100!", 2, 0.125, 128, "us-east")


def test_layout_2_the_modal_app_name_becomes_its_prefix():
    old = raw("v2_gate_dicts.json")["current"]
    assert "app_name" in old["deployment"]["modal"] and "app_prefix" not in old["deployment"]["modal"]
    upgraded = Release.upgrade_modal_app_name(old)["deployment"]
    assert upgraded["modal"]["app_prefix"] == "sglang" and "app_name" not in upgraded["modal"]
    modal = old["deployment"]["modal"] | {"app_name": "acme-qwen3-8b-low-latency"}
    renamed = old | {"deployment": old["deployment"] | {"modal": modal}}
    assert Release.read(renamed).app_name == "acme-qwen3-8b-low-latency"  # a custom prefix survives


def test_layout_2_gate_and_measurement_read_as_models_and_price_as_before():
    current = Manifest.from_json((MANIFESTS / "v2_gate_dicts.json").read_text()).current
    old = raw("v2_gate_dicts.json")["current"]
    assert current.gate.verdict == "passed"
    assert current.gate.evaluation.rows[0].metric == old["gate"]["evaluation"]["rows"][0]["metric"]
    assert current.measurement.workload.sampling is None  # written before sampling was recorded
    assert bench.describe(current.measurement).count("sampling=unrecorded") == 1
    assert ledger.measurement_of(current)[1] == "on prod"
    perf = ledger.priced(current, costs.Rates(costs.TABLE, costs.TABLE_SOURCE))
    level = old["measurement"]["levels"][-1]
    assert perf.output_tokens_per_s == level["throughput"]["output_tokens_per_s"]
    assert perf.target_concurrency == old["deployment"]["recipe"]["target_concurrency"]


def test_layout_3_skipped_gate_cold_starts_and_rollback():
    manifest = Manifest.from_json((MANIFESTS / "v3_flat_copies.json").read_text())
    rollback, promoted, deployed = manifest.history
    assert promoted.gate.skipped and promoted.gate.override.github_actor == "octocat"
    assert "INC-4471" in promoted.gate.override.line() and promoted.smoke.error.startswith("smoke: HTTP 500")
    assert deployed.cold_starts.frozen_at == 1764770400.0 and deployed.cold_starts.ready == 3
    assert ledger.cold_start_text(deployed.cold_starts) == "75.7/76.7 (3)"
    assert ledger.how(rollback) == "rollback to v4" and ledger.how(promoted) == "promote from staging, gate skipped"
    table = ledger.render_table([(r, None) for r in manifest.history])
    assert "75.7/76.7 (3)" in table and "FAILED" in table


def test_reading_is_tolerant_and_writing_strict():
    data = raw("v3_flat_copies.json")
    data["current"]["written_by_a_newer_version"] = {"x": 1}
    data["current"]["gate"] = {"verdict": "passed", "bake": {"verdict": "held"}}
    assert Manifest.from_json(json.dumps(data)).current.gate.verdict == "passed"  # unknown keys are ignored
    release = records.release(1)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Release(**release.model_dump(exclude_computed_fields=True), typo_field=1)
    with pytest.raises(ValidationError):
        Release(**release.model_dump(exclude_computed_fields=True) | {"app_name": "stored twice"})


def test_a_manifest_no_layout_explains_is_one_line_naming_it():
    data = raw("v3_flat_copies.json")
    del data["current"]["deployment"]["recipe"]["model"]
    with pytest.raises(ConfigError, match=r"^releases/x.json cannot be read: current.deployment.recipe.model: "
                                          "Field required"):
        Manifest.from_json(json.dumps(data), "releases/x.json")


def test_status_json_keeps_the_flat_fields_of_a_release():
    """`invoke status --json` prints a release with the fields it always had: derived now, not stored."""
    shown = records.release(3).model_dump(mode="json")
    assert {k: shown[k] for k in ("app_name", "image", "model", "env", "recipe")} == {
        "app_name": "sglang-qwen3-8b-low-latency", "image": shown["deployment"]["recipe"]["sglang_image"],
        "model": "Qwen/Qwen3-8B-FP8", "env": "prod", "recipe": "qwen3-8b-low-latency"}


def test_a_bench_report_an_older_version_wrote_loads_and_compares():
    report = bench.load_report(RECORDS / "bench_report_v1.json")
    assert report.schema_version == 1 and [lv.concurrency for lv in report.levels] == [1, 2]
    assert all(len(lv.records) == 4 for lv in report.levels)
    written = json.loads((RECORDS / "bench_report_v1.json").read_text())
    again = report.to_data()  # the same document, key for key; goodput (added since) is null
    assert again == written | {"levels": [lv | {"goodput": None} for lv in written["levels"]]}
    same = bench.compare(report, report)
    assert {r.verdict for r in same.rows} <= {"same", ""} and same.a == "baseline" and report.path.endswith("v1.json")


def test_a_start_record_the_container_wrote_reads_back():
    data = json.loads((RECORDS / "start_record_v1.json").read_text())
    record = timeline.StartRecord.read(data)
    assert record.to_data() == data
    assert record.misses["triton"].files == 3 and record.deep_gemm.shapes[0].n == 6144
    line = timeline.describe(record)
    assert "no compile cache" in line and "CACHE MISSES: triton 3 files" in line
    assert timeline.summarise([record]).ready == 1


def test_string_key_reads_are_counted_and_the_typed_records_stay_read_by_attribute():
    """tools/record_reads.py counts `x["key"]` and `x.get("key")` outside model classes. In the modules whose records
    issue 29 typed, what remains reads no record (billing rows' tags, environment variables, the log parser's own
    events, a hand-edited report's raw levels before the model reads them): it may shrink, never grow."""
    from tools import record_reads

    found = record_reads.count()
    ceilings = {"infra/perf/ledger.py": 12, "infra/perf/bench.py": 11, "infra/perf/gate.py": 10,
                "infra/runtime/timeline.py": 10, "infra/control/objectives.py": 9, "infra/perf/releases.py": 3,
                "infra/perf/smoketest.py": 1, "infra/control/coldstarts.py": 0, "infra/runtime/startup.py": 0,
                "stages/status.py": 1, "stages/promote.py": 1, "stages/rollback.py": 1, "stages/smoke.py": 0}
    assert {m: found[m] for m in ceilings if found[m] > ceilings[m]} == {}
    assert sorted(record_reads.string_key_reads(ast.parse('r["smoke"]["passed"]\nr.get("gate")'))) == [1, 1, 2]
