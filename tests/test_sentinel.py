"""The sentinel (issue 31 item 2): its settings, one probe against a real local OpenAI-compatible server, the ring
buffer of hourly slots (bounded, newer schemas left alone) and a run's rule never to wake a server that scaled to
zero. Clocks are injected: no test waits for an interval. The Modal side is tests/test_sentinel_wire.py."""

from __future__ import annotations

import json

import pytest

from infra.control.settings import load_settings
from infra.runtime import sentinel
from infra.runtime.errors import ConfigError
from infra.runtime.sentinel import Probe, ProbeTarget, SentinelSpec, Slot

HOUR = 3600
T0 = 1_796_000_400.0  # 2026-12-01 ~ a whole hour in UTC


class DiskRing:
    """The `Ring`/`Watch` boundary on a dict: values through JSON, as the Dict's cloudpickle of plain data keeps
    them."""

    def __init__(self, replicas: int | None = 1, url: str | None = None):
        self.entries: dict[str, str] = {}
        self.replicas_up, self.url = replicas, url
        self.asked: list[str] = []

    def read_ring(self, environment, keys):
        return {k: json.loads(self.entries[k]) for k in keys if k in self.entries}

    def write_ring(self, environment, key, value):
        self.entries[key] = json.dumps(value)

    def replicas(self, environment, app_name):
        self.asked.append(app_name)
        return self.replicas_up

    def endpoint_of(self, environment, app_name):
        return self.url


def spec(url_model: str = "fake-model", **settings) -> SentinelSpec:
    return SentinelSpec(env="prod", modal_environment="prod", app_name="sglang-sentinel-prod",
                        settings=sentinel.Sentinel(**settings), wait_seconds=10.0,
                        targets=(ProbeTarget(recipe="qwen3-8b-low-latency", app_name="sglang-qwen3-8b-low-latency",
                                             model=url_model, proxy_auth=True),))


# ---------------------------------------------------------------------------- settings


def test_an_interval_under_modals_minimum_is_one_line_naming_the_setting_value_and_minimum():
    with pytest.raises(ConfigError) as err:
        load_settings("prod", overrides={"sentinel.interval_seconds": 30})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("--set: sentinel.interval_seconds = 30:")
    assert "at most once a minute; allowed: 60 seconds or more" in message


def test_defaults_are_a_probe_a_minute_kept_a_week_never_waking():
    s = load_settings("dev").sentinel
    assert (s.interval_seconds, s.retention_days, s.wake, s.slots) == (60, 7, False, 168)
    with pytest.raises(ConfigError, match="sentinel.retention_days = 8: .*less than or equal to 7"):
        load_settings("dev", overrides={"sentinel.retention_days": 8})


# ---------------------------------------------------------------------------- one probe


def test_a_probe_times_the_first_token_and_the_rest(fake_server):
    server = fake_server("--ttft", "0.05", "--itl", "0.01", "--tokens", "6")
    p = sentinel.probe(server.url, "fake-model", recipe="r", max_tokens=6, headers={"Modal-Key": "wk-1"},
                       wait_seconds=10, now=lambda: T0)
    assert (p.outcome, p.output_tokens, p.http_status, p.at) == ("ok", 6, 200, T0)
    assert p.ttft_ms >= 50  # the server waits 50 ms before its first token
    # and 10 ms between tokens: the last token cannot be read before it is sent, 100 ms after the request (a busy
    # client may read the first one late, so TPOT alone has no lower bound this test controls).
    assert p.ttft_ms + p.tpot_ms * (p.output_tokens - 1) >= 100 * 0.99
    sent = [r for r in server.requests() if r["path"] == "/v1/chat/completions"]
    assert len(sent) == 1 and sent[0]["body"]["max_tokens"] == 6 and sent[0]["body"]["stream"] is True
    assert sent[0]["headers"]["Modal-Key"] == "wk-1"


def test_a_refused_or_failing_endpoint_is_an_error_probe_naming_the_address_and_cause(fake_server):
    server = fake_server("--chat-status", "503")
    p = sentinel.probe(server.url, "m", recipe="r", max_tokens=4, headers={}, wait_seconds=10)
    assert (p.outcome, p.http_status) == ("error", 503) and server.url in p.error
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    p = sentinel.probe(dead, "m", recipe="r", max_tokens=4, headers={}, wait_seconds=5)
    assert p.outcome == "error" and dead in p.error and "refused" in p.error.lower()


# ---------------------------------------------------------------------------- a run


def test_a_run_never_wakes_a_server_with_no_replica_up_unless_the_environment_asks(fake_server):
    server = fake_server("--tokens", "4")
    ring = DiskRing(replicas=0, url=server.url)
    asleep = sentinel.run(spec(), ring, {}, now=lambda: T0, log=lambda _: None)
    assert [(p.outcome, p.replicas, p.cold_start) for p in asleep] == [("skipped", 0, False)]
    assert "wake = false" in asleep[0].error
    assert [r for r in server.requests() if r["path"].startswith("/v1")] == []  # nothing was sent: nothing woke
    woken = sentinel.run(spec(wake=True), ring, {"Modal-Key": "k"}, now=lambda: T0 + 60, log=lambda _: None)
    assert [(p.outcome, p.cold_start) for p in woken] == [("ok", True)]
    assert len([r for r in server.requests() if r["path"].startswith("/v1")]) == 1
    probes = sentinel.read_probes(ring, "prod", "qwen3-8b-low-latency", T0, T0 + HOUR, 168)
    assert [p.outcome for p in probes] == ["skipped", "ok"]


def test_a_run_of_a_recipe_not_deployed_records_a_skip_and_sends_nothing():
    ring = DiskRing(replicas=None, url=None)
    done = sentinel.run(spec(wake=True), ring, {}, now=lambda: T0, log=lambda _: None)
    assert done[0].outcome == "skipped" and "no deployed server" in done[0].error


# ---------------------------------------------------------------------------- the ring


def test_the_ring_is_bounded_and_a_window_reads_only_its_own_hours():
    ring = DiskRing()
    slots = 24  # a day's ring, to wrap it quickly
    for i in range(30 * 6):  # 30 hours, a probe every 10 minutes
        sentinel.append(ring, "prod", Probe(at=T0 + i * 600, recipe="r", outcome="ok", ttft_ms=float(i)), slots)
    assert len(ring.entries) == slots  # never more entries than slots
    last_hour = sentinel.read_probes(ring, "prod", "r", T0 + 29 * HOUR, T0 + 30 * HOUR, slots)
    assert [p.ttft_ms for p in last_hour] == [float(i) for i in range(174, 180)]
    # Hour 3 was overwritten by hour 27 (same slot): a window on hour 3 finds nothing, not hour 27's probes.
    assert sentinel.read_probes(ring, "prod", "r", T0 + 3 * HOUR, T0 + 4 * HOUR, slots) == []
    # A window reads every hour it touches, to the second.
    assert len(sentinel.read_probes(ring, "prod", "r", T0 + 28 * HOUR + 1200, T0 + 30 * HOUR, slots)) == 10


def test_a_slot_written_by_a_newer_schema_is_skipped_with_one_line_and_never_overwritten(fake_server):
    ring = DiskRing()
    key = sentinel.slot_key("qwen3-8b-low-latency", sentinel.hour_of(T0), 168)
    newer = {"schema_version": sentinel.SCHEMA_VERSION + 1, "recipe": "qwen3-8b-low-latency",
             "hour": sentinel.hour_of(T0), "probes": [{"at": T0, "shape": "unknown to this version"}]}
    ring.write_ring("prod", key, newer)
    warned: list[str] = []
    assert sentinel.read_probes(ring, "prod", "qwen3-8b-low-latency", T0, T0 + HOUR, 168, warn=warned.append) == []
    assert len(warned) == 1 and "\n" not in warned[0]
    newer_schema = sentinel.SCHEMA_VERSION + 1
    assert f"written by schema {newer_schema}, this version reads up to {sentinel.SCHEMA_VERSION}" in warned[0]
    server = fake_server("--tokens", "3")
    ring.url = server.url
    logged: list[str] = []
    sentinel.run(spec(), ring, {}, now=lambda: T0 + 5, log=logged.append)
    assert json.loads(ring.entries[key]) == newer  # left alone
    assert any("this probe is not recorded" in line for line in logged)


def test_slots_are_plain_json_with_their_schema_version_and_read_back_typed():
    slot = Slot(recipe="r", hour=int(T0), probes=(Probe(at=T0, recipe="r", outcome="ok", ttft_ms=12.5),))
    value = slot.to_value()
    assert json.loads(json.dumps(value)) == value and value["schema_version"] == sentinel.SCHEMA_VERSION
    # Read tolerantly: a key an older writer did not know is ignored; the typed record comes back.
    again = Slot.read(value | {"written_by": "0.9"}, "r#0")
    assert again == slot and again.probes[0].ttft_ms == 12.5
