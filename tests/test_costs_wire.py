"""Costs at the wire: the workspace's rates and its billing report through the real `modal` client (ModalRemote)
against the fake control plane (tests/fakes/modal_wire/billing.py), and `invoke status --cost` end to end, with the
tags the real client put on the App when it deployed it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from infra.control import costs, plan
from infra.runtime import spec
from infra.runtime.remote import BillingUnavailable, ModalRemote
from tests.conftest import deployment

VLM = "qwen3.6-35b-vlm"
APP = "sglang-qwen3-6-35b-vlm"
TABLE = costs.Rates(costs.TABLE, costs.TABLE_SOURCE)
DAY = datetime(2026, 11, 30, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def remote(wire) -> ModalRemote:
    return ModalRemote()


def test_live_rates_through_the_client_are_the_published_ones_and_deprecated_names_stay_out(wire, remote, tmp_path):
    answer = remote.billing_rates()
    assert answer["workspace"] == "wire-workspace" and answer["rates"]["Nvidia H100"] == "0.001097"
    assert wire.rpcs()[-2:] == ["WorkspaceNameLookup", "WorkspaceBillingRates"]
    cached = costs.parse_live(answer, DAY, ["cpu", "memory", "H100"])
    assert cached.unit == "second" and cached.ignored == ["Sandbox CPU", "Volume storage"]
    assert cached.rates == pytest.approx(costs.TABLE)  # the fake answers the pricing page the table was read from
    # A negotiated rate card, per hour, one name deprecated: the SDK leaves that one out, and so does the cache.
    wire.rates = {"gpu.H100": "3.10", "cpu": "0.04", "memory": "0.0075", "gpu.A100": "2.00"}
    wire.deprecated_rates = {"gpu.A100": "gpu.A100 is deprecated: use gpu.A100-40GB"}
    answer = remote.billing_rates()
    assert set(answer["rates"]) == {"gpu.H100", "cpu", "memory"}
    line = costs.refresh(remote.billing_rates, DAY, ["H100"], tmp_path / "rates.json")
    assert "live rates of workspace wire-workspace fetched 2026-11-30 00:00 UTC (3 resources, per hour)" in line
    assert json.loads((tmp_path / "rates.json").read_text())["rates"] == {"H100": 3.1, "cpu": 0.04, "memory": 0.0075}


def test_the_billing_report_carries_the_tags_the_client_deployed_with(wire, remote):
    """Hourly rows of the Environment asked for, with the App's tags among those asked for; a partial last hour and
    other Environments' rows are left out, as Modal's report leaves them out."""
    d = deployment("staging", VLM)
    remote.deploy(d, "git-aaa")
    hourly = {"GPU (H100)": "6.91", "CPU": "0.33", "Memory": "0.45"}
    wire.charge("staging", APP, [DAY + 10 * H, DAY + 11 * H], hourly)
    remote.deploy(deployment("staging", VLM, max_containers=1), "git-bbb")
    wire.charge("staging", APP, [DAY + 12 * H, DAY + 13 * H], hourly)
    remote.deploy(deployment("prod", VLM), "git-bbb")
    wire.charge("prod", APP, [DAY + 10 * H], hourly)
    rows = remote.billing_report("staging", DAY + 10 * H, DAY + 13 * H + timedelta(minutes=30), spec.TAG_NAMES)
    assert wire.rpcs()[-2:] == ["EnvironmentGetOrCreate", "WorkspaceBillingReport"]
    assert [(r["interval_start"], r["tags"]["commit"]) for r in rows] == [
        ((DAY + 10 * H).timestamp(), "git-aaa"), ((DAY + 11 * H).timestamp(), "git-aaa"),
        ((DAY + 12 * H).timestamp(), "git-bbb")]  # 13:00-14:00 is not over by 13:30
    first = rows[0]
    assert first["tags"] == {"env": "staging", "recipe": VLM, "role": "server", "commit": "git-aaa"}
    assert (first["description"], first["environment"], first["cost"]) == (APP, "staging", "7.69")
    assert first["cost_by_resource"] == hourly and first["object_id"].startswith("ap-")
    # Only the tag names asked for; read back as the ledger reads them.
    [only_env] = remote.billing_report("staging", DAY + 10 * H, DAY + 11 * H, ["env"])
    assert only_env["tags"] == {"env": "staging"}
    assert costs.bill_rows([first])[0] == costs.BillRow(first["object_id"], APP, DAY + 10 * H, 7.69,
                                                        {"GPU (H100)": 6.91, "CPU": 0.33, "Memory": 0.45},
                                                        first["tags"])


def test_a_report_of_an_environment_modal_does_not_have_is_one_line(wire, remote):
    with pytest.raises(BillingUnavailable, match=r"^Modal did not give the billing report of Modal Environment 'qa': "
                                                 r"NotFoundError: Environment 'qa' not found"):
        remote.billing_report("qa", DAY, DAY + H, ["env"])


def test_status_cost_shows_billed_beside_estimated_per_release(wire, wire_cli):
    """`invoke deploy` then `invoke status --cost` as a user runs them: the deploy tags the App, Modal bills it
    hour by hour, and the ledger sets the bill of each release beside the model's estimate of its warm floor."""
    warm = ("--set", "scaling.min_containers=1")
    out = wire_cli("deploy", "--env", "staging", "--recipe", VLM, *warm)
    assert out.returncode == 0, out.stderr[-3000:]
    # The release went live ten hours ago (the manifest says when; the fake bills what a test charges).
    now = datetime.now(UTC)
    volume = wire.volume_dir("staging", "sglang-releases") / "releases" / f"{VLM}.json"
    manifest = json.loads(volume.read_text())
    went_live = (now - 10 * H).timestamp()
    for entry in [manifest["current"], *manifest["history"]]:
        entry["deployed_at"] = went_live
    volume.write_text(json.dumps(manifest))
    replica = plan.replica_cost(deployment("staging", VLM, min_containers=1), TABLE)
    by_resource = {name: f"{part.usd_per_hour * replica.region.multiplier:.6f}"
                   for name, part in zip(("GPU (H100)", "CPU", "Memory"), replica.parts)}
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    wire.charge("staging", APP, [this_hour - h * H for h in range(1, 10)], by_resource)  # nine whole hours

    [status] = wire_cli.json("status", "--env", "staging", "--recipe", VLM, "--cost", "--since", "12h", *warm)
    bill = status["detail"]["bill"]
    [release] = bill["releases"]
    assert release["release_id"] == manifest["current"]["release_id"] and release["tag"] == manifest["current"]["tag"]
    assert release["billed_usd"] == pytest.approx(9 * replica.usd, abs=1e-3)
    assert release["live_hours"] == pytest.approx((this_hour.timestamp() - went_live) / 3600, abs=1e-3)
    assert release["estimated_usd"] == pytest.approx(release["live_hours"] * replica.usd, abs=1e-3)
    assert release["usd_per_replica_hour"] == pytest.approx(replica.usd, abs=1e-4)
    assert bill["warnings"] == [] and status["detail"]["rates"]["live"] is True  # status cached the live rates

    # The fake charges traffic on top: three more replica-hours in the last hours, beyond the 15% margin.
    wire.charge("staging", APP, [this_hour - h * H for h in range(1, 4)], by_resource)
    text = wire_cli("status", "--env", "staging", "--recipe", VLM, "--cost", "--since", "12h", *warm)
    assert text.returncode == 0, text.stderr[-3000:]
    lines = text.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("release") and "billed" in line)
    assert lines[header - 1].strip().startswith(f"billed {(this_hour - 12 * H):%Y-%m-%d %H:%M}")
    assert lines[header + 2].split()[:5] == [release["release_id"], "v1", release["tag"],
                                             f"{release['live_hours']:.1f}",
                                             f"${12 * replica.usd:,.2f}"]
    assert f"WARNING: {release['release_id']}: billed ${12 * replica.usd:,.2f} is +" in text.stdout
    assert "beyond the 15% margin (costs.mismatch_margin): replicas beyond the warm floor for traffic" in text.stdout


def test_the_image_builder_app_is_tagged_and_its_hours_are_counted_and_named(wire, wire_cli):
    """Issue 30: `invoke build`'s app (<app>-builds) carried no tags, so Modal's report rows of its builds were neither
    counted nor named by `status --cost`. The build now tags it (role builds) and the bill shows it on its own line."""
    for task in ("build", "deploy"):
        done = wire_cli(task, "--env", "staging", "--recipe", VLM)
        assert done.returncode == 0, done.stderr[-3000:]
    d = deployment("staging", VLM)
    [builder] = [a for a in wire.state.apps.values() if a.name == d.builds_app_name]
    assert builder.tags == spec.tags(d, "builds") == {"env": "staging", "recipe": VLM, "role": "builds"}
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    wire.charge("staging", d.builds_app_name, [this_hour - 2 * H, this_hour - H], {"CPU": "0.75", "Memory": "0.25"})
    [status] = wire_cli.json("status", "--env", "staging", "--recipe", VLM, "--cost", "--since", "6h")
    bill = status["detail"]["bill"]
    assert bill["builds_usd"] == pytest.approx(2.0) and bill["billed_usd"] == pytest.approx(2.0)
    text = wire_cli("status", "--env", "staging", "--recipe", VLM, "--cost", "--since", "6h").stdout
    assert "image builder app (build): $2.00" in text
