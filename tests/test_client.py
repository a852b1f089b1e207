"""The streaming client against a real local server: what it measures, what it retries, what it reports."""

from __future__ import annotations

import asyncio

import pytest

from infra.perf import client
from infra.perf.client import EndpointError
from infra.runtime.errors import ConfigError
from tests.conftest import free_port

PAYLOAD = client.chat_payload([{"role": "user", "content": "hi"}], max_tokens=8)


def probe(url, deadline=5.0, **kw):
    return asyncio.run(client.probe(url, PAYLOAD, deadline_seconds=deadline, **kw))


def test_streams_text_and_uses_the_usage_report(fake_server):
    server = fake_server("--tokens", "8")
    result = probe(server.url)
    assert result.text == "".join(f"tok{i} " for i in range(8))
    assert result.output_tokens == 8 and result.usage_tokens == 8
    assert len(result.chunk_times) == 8 and result.ttft is not None and result.total >= result.ttft
    body = server.requests()[-1]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True} and body["max_tokens"] == 8


def test_reasoning_text_counts(fake_server):
    result = probe(fake_server("--reasoning", "--tokens", "3").url)
    assert result.text == "" and result.reasoning.startswith("tok0")


def test_retries_503_then_succeeds_with_a_sticky_session(fake_server):
    server = fake_server("--unavailable-first", "2")
    result = probe(server.url)
    assert result.attempts == 3
    sessions = {r["headers"]["Modal-Session-Id"] for r in server.requests()}
    assert len(sessions) == 1  # the same session across retries: sticky routing


def test_retries_connection_refused_until_the_deadline():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EndpointError) as err:
        probe(url, deadline=2.5)
    assert err.value.kind == "connect"
    assert f"no response from {url} within 2.5 s" in str(err.value)


def test_http_4xx_is_not_retried_and_carries_the_servers_message(fake_server):
    server = fake_server("--chat-status", "400")
    with pytest.raises(EndpointError) as err:
        probe(server.url)
    assert err.value.kind == "http" and err.value.status == 400
    assert str(err.value) == f"HTTP 400 from {server.url}: model overloaded: try again"
    assert len([r for r in server.requests() if r["path"] == "/v1/chat/completions"]) == 1


def test_reset_mid_stream_is_an_error_not_a_retry(fake_server):
    server = fake_server("--tokens", "10", "--reset-at", "4")
    with pytest.raises(EndpointError) as err:
        probe(server.url)
    assert err.value.kind == "reset" and "broke mid-stream" in str(err.value)
    assert len(server.requests()) == 1  # bytes were streamed: retrying could repeat work


def test_malformed_sse_line(fake_server):
    with pytest.raises(EndpointError) as err:
        probe(fake_server("--malformed-at", "2").url)
    assert err.value.kind == "malformed"
    assert "malformed SSE data line" in str(err.value)
    assert "{not json" in str(err.value)


def test_error_object_inside_the_stream(fake_server):
    with pytest.raises(EndpointError) as err:
        probe(fake_server("--error-at", "1").url)
    assert err.value.kind == "server_error" and str(err.value).endswith("CUDA out of memory")


def test_a_stall_beyond_the_request_timeout_is_reported(fake_server):
    server = fake_server("--tokens", "5", "--stall-at", "2", "--stall-seconds", "3")
    with pytest.raises(EndpointError) as err:
        probe(server.url, deadline=1.5)
    assert err.value.kind == "stalled" and "stalled" in str(err.value)  # bytes had arrived: not retried
    assert len(server.requests()) == 1


def test_proxy_auth_headers_only_when_both_are_set_and_never_in_clear_text_to_another_host():
    both = {"MODAL_KEY": "wk-1", "MODAL_SECRET": "ws-2"}
    assert client.proxy_auth_headers("https://x.modal.run", {"MODAL_KEY": "wk-1"}) == {}
    assert client.proxy_auth_headers("https://x.modal.run", both) == {"Modal-Key": "wk-1", "Modal-Secret": "ws-2"}
    assert client.proxy_auth_headers("http://127.0.0.1:8000", both) == {"Modal-Key": "wk-1", "Modal-Secret": "ws-2"}
    assert client.proxy_auth_headers("http://localhost:8000", both) != {}
    for url in ("http://x.modal.run", "http://10.0.0.5:8000", "http://[::2]:80"):
        with pytest.raises(ConfigError, match="refusing to send Modal proxy credentials .* in clear text"):
            client.proxy_auth_headers(url, both)
    assert client.proxy_auth_headers("http://x.modal.run", {}) == {}  # nothing to protect


def test_server_message_extraction():
    assert client._server_message('{"error": {"message": "bad model"}}') == "bad model"
    assert client._server_message('{"message": "m"}') == "m"
    assert client._server_message("plain text") == "plain text"
    assert client._server_message("") == "(empty body)"
