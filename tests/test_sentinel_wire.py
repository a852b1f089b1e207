"""The sentinel at the wire (issue 31 item 2): its own app, its schedule and its Dict through the real `modal` client
against the fake control plane (tests/fakes/modal_wire), and a run that reads each server's replica count and URL
there and probes the local OpenAI-compatible server behind Modal's (fake) proxy."""

from __future__ import annotations

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
    assert sentinel.SentinelSpec.from_json(carried[sentinel.SPEC_VARIABLE]) == s
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
