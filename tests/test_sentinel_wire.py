"""The sentinel at the wire (issue 31 item 2): its own app, its schedule and its Dict through the real `modal` client
against the fake control plane (tests/fakes/modal_wire), and a run that reads each server's replica count and URL
there and probes the local OpenAI-compatible server behind Modal's (fake) proxy."""

from __future__ import annotations

import pytest
from modal_proto import api_pb2

from infra.control import watching
from infra.control.settings import load_settings
from infra.runtime import sentinel, spec
from infra.runtime.remote import ModalRemote
from tests.conftest import deployment

APP = "sglang-qwen3-8b-low-latency"
T0 = 1_796_000_400.0


def prod_spec(**overrides) -> sentinel.SentinelSpec:
    settings = load_settings("prod", "qwen3-8b-low-latency", {f"sentinel.{k}": v for k, v in overrides.items()})
    return watching.spec_for(settings, [deployment("prod")])


def definition(wire, environment: str, app_name: str, tag: str) -> api_pb2.Function:
    def read():
        app = wire.state.deployed_app(environment, app_name)
        return wire.state.live_definition(wire.state.functions[app.function_ids[tag]])

    return wire._on_loop(read)


def test_the_sentinel_is_its_own_app_with_a_function_modal_runs_every_interval(wire):
    wire.create_secret("prod", "sentinel-proxy-auth", {"MODAL_KEY": "wk", "MODAL_SECRET": "ws"})
    s = prod_spec(interval_seconds=120)
    done = ModalRemote().deploy_sentinel(s)
    assert done["app_name"] == "sglang-sentinel-prod" and done["app_id"].startswith("ap-")
    assert wire.schedules("prod", "sglang-sentinel-prod") == {"probe": None}  # a period, not a cron
    f = definition(wire, "prod", "sglang-sentinel-prod", "probe")
    assert f.schedule.period.seconds == 120
    options = spec.sentinel_app(s)["function"]
    assert (f.timeout_secs, f.task_idle_timeout_secs) == (options["timeout"], options["scaledown_window"])
    assert f.timeout_secs < 120  # two runs never write one slot at once
    assert f.resources.milli_cpu == 125 and f.resources.memory_mb == 256
    secrets = wire._on_loop(lambda: [wire.state.secrets[i] for i in f.secret_ids])
    # The proxy-auth credentials, for prod's endpoints behind proxy auth; and `env=`, which carries the spec.
    assert "sentinel-proxy-auth" in [x.name for x in secrets]
    carried = next(x.values for x in secrets if sentinel.SPEC_VARIABLE in x.values)
    assert sentinel.SentinelSpec.model_validate_json(carried[sentinel.SPEC_VARIABLE]) == s
    assert [v["app_tags"] for v in wire.app_versions("prod",
                                                     "sglang-sentinel-prod")] == [{"env": "prod", "role": "sentinel"}]


def test_a_run_probes_a_warm_server_through_the_proxy_and_keeps_its_record_in_the_dict(wire, wire_session):
    remote = ModalRemote()
    remote.deploy(deployment("prod"), "git-aaa")
    s = prod_spec()
    key, secret = wire.proxy_token
    wire.replicas[("prod", APP)] = 1
    first = sentinel.run(s, remote, {"Modal-Key": key, "Modal-Secret": secret}, now=lambda: T0, log=lambda _: None)
    assert [(p.outcome, p.replicas, p.cold_start, p.output_tokens) for p in first] == [("ok", 1, False, 6)]
    assert first[0].ttft_ms is not None
    wire.replicas[("prod", APP)] = 0  # scaled to zero: not woken
    second = sentinel.run(s, remote, {"Modal-Key": key, "Modal-Secret": secret}, now=lambda: T0 + 60,
                          log=lambda _: None)
    assert second[0].outcome == "skipped"
    proxied = [r for r in wire.proxied if r["path"] == "/v1/chat/completions"]
    assert len(proxied) == 1 and proxied[0]["credentials"] == "valid"  # one request: the skipped run sent none
    entries = wire.dict_entries("prod", sentinel.RING_DICT)
    assert list(entries) == [sentinel.slot_key("qwen3-8b-low-latency", int(T0), 168)]
    assert [p["outcome"] for p in next(iter(entries.values()))["probes"]] == ["ok", "skipped"]
    back = sentinel.read_probes(remote, "prod", "qwen3-8b-low-latency", T0, T0 + 3600, 168)
    assert back == [*first, *second]
    assert "FunctionGetCurrentStats" in wire.rpcs()


def test_reading_a_ring_that_was_never_written_creates_nothing(wire):
    assert ModalRemote().read_ring("prod", ["qwen3-8b-low-latency#0"]) == {}
    assert ModalRemote().replicas("prod", APP) is None and ModalRemote().endpoint_of("prod", APP) is None
    assert wire.dict_entries("prod", sentinel.RING_DICT) == {}


@pytest.mark.timeout(600)  # a hang guard for several invoke runs through the real client
def test_the_tasks_deploy_it_probe_once_and_check_fails_a_breach_with_exit_1(wire, wire_cli, fake_server):
    """`invoke sentinel` deploys its app (local checks first: the proxy-auth Secret), `--once` records what a scheduled
    run records, and `invoke check` exits 0 while prod holds its objectives and 1 once its probes fail."""
    ModalRemote().deploy(deployment("prod"), "git-aaa")  # the server; its warm floor of 1 is up
    refused = wire_cli("sentinel", "--env", "prod", "--yes")
    assert refused.returncode == 1 and "Modal Secret 'sentinel-proxy-auth' (sentinel.proxy_auth_secret) does not " \
                                      "exist in Modal environment prod" in refused.stderr
    assert wire.app_versions("prod", "sglang-sentinel-prod") == []  # nothing deployed
    wire.create_secret("prod", "sentinel-proxy-auth", {"MODAL_KEY": "wk", "MODAL_SECRET": "ws"})
    [deployed] = wire_cli.json("sentinel", "--env", "prod", "--yes")
    assert deployed["detail"]["cost"]["usd_per_30_days"] > 0
    assert wire.schedules("prod", "sglang-sentinel-prod") == {"probe": None}
    once = wire_cli("sentinel", "--env", "prod", "--once")
    assert once.returncode == 0, once.stderr
    assert "prod/qwen3-8b-low-latency: ok, TTFT" in once.stdout
    assert "prod/qwen3.6-35b-vlm: skipped: no deployed server" in once.stdout
    passed = wire_cli("check", "--env", "prod", "--recipe", "qwen3-8b-low-latency")
    assert passed.returncode == 0, passed.stderr
    assert "ttft_p90_ms <= 500: attained by 100.0% (1 of 1)" in passed.stdout
    wire.upstreams[("prod", APP)] = fake_server("--chat-status", "500").url
    assert wire_cli("sentinel", "--env", "prod", "--once").returncode == 0
    failed = wire_cli("check", "--env", "prod", "--recipe", "qwen3-8b-low-latency")
    assert failed.returncode == 1
    from tests.test_docs import shows_in_order
    from tests.test_watch_flow import docs_block

    assert shows_in_order(docs_block("check breach: tests/test_sentinel_wire.py"), failed.stdout + failed.stderr) == []
    assert "BREACH qwen3-8b-low-latency: error rate 50.0% (1 of 2 probes) > 0%" in failed.stderr
    # ttft, tpot, errors
    assert failed.stderr.strip().splitlines()[-1].startswith("error: check failed: prod/qwen3-8b-low-latency: 3 "
                                                             "breach(es)")
