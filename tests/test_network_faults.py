"""Every wait on the network is bounded on its first answer and fails in one line naming the address and the cause.

Real sockets (tests/fakes/network_faults.py): a server that accepts and never answers (https:// and http://), a TLS
server with a self-signed certificate generated here, a refused port, a name that does not resolve. The bound is a
setting ([client] connect_timeout), so the tests set it small; what they judge is the line, never how fast it came
(a generous ceiling only proves the wait did not run to the SDK's own minutes).
"""

from __future__ import annotations

import time

import pytest

from infra.runtime import reach, remote
from tests.conftest import deployment
from tests.fakes.network_faults import SilentServer, UntrustedTLSServer, refused_port

CEILING = 60  # seconds: far above any bound set here, far below the minutes the SDK waited on its own


@pytest.fixture
def control_plane(monkeypatch, tmp_path):
    """Point this process's modal client at `url` with a made-up token; returns a setter."""
    (tmp_path / "modal.toml").write_text("")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "modal.toml"))
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")

    def at(url: str) -> str:
        monkeypatch.setenv("MODAL_SERVER_URL", url)
        return url

    return at


def unreachable_line(timeout: float = 0.5) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(remote.Unreachable) as raised:
        remote.ModalRemote(connect_timeout=timeout).history(deployment())
    return str(raised.value), time.monotonic() - started


@pytest.mark.parametrize("scheme, step", [("https", "no TLS handshake"), ("http", "no answer")])
def test_a_control_plane_that_accepts_and_never_answers_fails_at_the_bound(control_plane, scheme, step):
    with SilentServer() as silent:
        url = control_plane(f"{scheme}://127.0.0.1:{silent.port}")
        line, took = unreachable_line(0.5)
        assert silent.accepted >= 1  # the TCP connect succeeded: only a bound on the first answer ends this
    assert line == (f"cannot reach Modal's control plane at {url}: accepted the connection but {step} within 0.5 s; "
                    f"{remote.HINT}; nothing was changed")
    assert "\n" not in line and took < CEILING


def test_an_untrusted_tls_certificate_is_named_with_what_to_do(control_plane, tmp_path):
    import certifi

    with UntrustedTLSServer(tmp_path) as tls:
        url = control_plane(f"https://127.0.0.1:{tls.port}")
        line, took = unreachable_line(5)
    assert line.startswith(f"cannot reach Modal's control plane at {url}: TLS certificate not trusted "
                           "(self-signed certificate); a proxy that intercepts TLS? ")
    assert certifi.where() in line and "not SSL_CERT_FILE" in line and line.endswith("; nothing was changed")
    assert took < CEILING


def test_the_tls_advice_is_true_certifis_bundle_counts_and_ssl_cert_file_does_not(control_plane, tmp_path, monkeypatch):
    """Modal's channel (grpclib) loads certifi's bundle alone: SSL_CERT_FILE changes nothing, the certificate added to
    the bundle certifi names gets the handshake through (this server then says nothing: the next step's bound)."""
    import certifi

    with UntrustedTLSServer(tmp_path) as tls:
        url = control_plane(f"https://127.0.0.1:{tls.port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.cert))
        assert "TLS certificate not trusted" in unreachable_line(5)[0]
        bundle = tmp_path / "bundle.pem"
        bundle.write_text(open(certifi.where()).read() + tls.cert.read_text())
        monkeypatch.setattr(certifi, "where", lambda: str(bundle))
        line, _ = unreachable_line(1)
    assert line == (f"cannot reach Modal's control plane at {url}: accepted the connection but no answer within 1 s; "
                    f"{remote.HINT}; nothing was changed")


def test_a_refused_port_fails_at_once_naming_it(control_plane):
    url = control_plane(f"https://127.0.0.1:{refused_port()}")
    line, _ = unreachable_line(5)
    assert line == (f"cannot reach Modal's control plane at {url}: connection refused: nothing listens on that port; "
                    f"{remote.HINT}; nothing was changed")


def test_a_name_that_does_not_resolve_says_dns(control_plane):
    url = control_plane("https://control-plane.invalid")
    line, _ = unreachable_line(5)
    assert line.startswith(f"cannot reach Modal's control plane at {url}: ")
    assert "DNS name not found" in line or "the name lookup of control-plane.invalid got no answer within 5 s" in line


def test_a_control_plane_that_answers_passes_the_first_answer(wire):
    """The fake control plane answers the token-less ClientHello with a refusal: an answer, so the probe passes."""
    remote.first_answer(wire.grpc_url, 10)


def test_the_first_answer_bound_covers_a_hung_step_of_the_callers_own(monkeypatch):
    """Even a step that ignores every timeout (a name lookup) cannot hold the caller past the deadline."""
    with SilentServer() as silent:
        with pytest.raises(reach.NoAnswer) as raised:
            reach.first_answer(f"http://127.0.0.1:{silent.port}", 0.3, answer=lambda _left: time.sleep(30))
    assert raised.value.reason == "accepted the connection but no answer within 0.3 s"


def test_status_through_the_cli_fails_in_one_line_at_the_configured_bound(cli, tmp_path):
    with SilentServer() as silent:
        url = f"https://127.0.0.1:{silent.port}"
        done = cli("status", "--env", "dev", "--recipe", "qwen3-8b-low-latency",
                   INFRA_CLIENT__CONNECT_TIMEOUT="1", MODAL_SERVER_URL=url, MODAL_TOKEN_ID="ak-fake",
                   MODAL_TOKEN_SECRET="as-fake", MODAL_CONFIG_PATH=str(tmp_path / "none.toml"))
    assert done.returncode == 1
    assert done.stderr == (f"error: cannot reach Modal's control plane at {url}: accepted the connection but no TLS "
                           f"handshake within 1 s; {remote.HINT}; nothing was changed\n")


# ---------------------------------------------------------------------------- endpoints (`invoke bench`)


def bench_url(url: str, **plan_changes):
    """`invoke bench --url URL --concurrency 1 --requests 1`, with `plan_changes` (the first-answer bound, set
    small)."""
    import dataclasses

    from stages import bench as stage
    from stages import flags

    options = flags.bench_options(url=url, concurrency="1", requests="1", prompt_tokens="4")
    options = dataclasses.replace(options, plan=options.plan.model_copy(update=plan_changes))
    with pytest.raises(Exception) as raised:
        stage.run_url(options, say=lambda _m: None)
    return raised.value


def test_bench_url_fails_at_once_on_a_refused_port_with_no_retries():
    url = f"http://127.0.0.1:{refused_port()}"
    error = bench_url(url)
    assert str(error) == (f"bench failed: {url} did not answer a first request: cannot connect to {url}: "
                          "connection refused: nothing listens on that port")  # no "(N attempts; ...)": one try


def test_bench_url_bounds_a_server_that_accepts_and_never_answers():
    with SilentServer() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        error = bench_url(url, first_answer=0.5)
        assert silent.accepted == 1
    assert str(error) == f"bench failed: {url} did not answer a first request: no answer from {url} within 0.5 s"


def test_bench_url_names_an_untrusted_certificate_and_what_to_set(tmp_path):
    with UntrustedTLSServer(tmp_path) as tls:
        url = f"https://127.0.0.1:{tls.port}"
        error = bench_url(url)
    assert str(error) == (f"bench failed: {url} did not answer a first request: cannot connect to {url}: TLS "
                          f"certificate not trusted (self-signed certificate); {reach.TLS_HINT}")


def test_bench_url_trusts_what_ssl_cert_file_names(tmp_path, cli):
    """The hint is true: with the certificate in SSL_CERT_FILE the handshake passes (and this server, which never
    answers, is then out of time). In a process of its own: aiohttp reads the variable once, when it is imported."""
    with UntrustedTLSServer(tmp_path) as tls:
        url = f"https://127.0.0.1:{tls.port}"
        trusted = cli("bench", "--url", url, "--concurrency", "1", "--requests", "1", "--timeout", "1",
                      SSL_CERT_FILE=str(tls.cert))
        untrusted = cli("bench", "--url", url, "--concurrency", "1", "--requests", "1")
    assert "TLS certificate not trusted" in untrusted.stderr and untrusted.returncode == 1
    assert trusted.stderr == (f"error: bench failed: {url} did not answer a first request: "
                              f"no answer from {url} within 1 s\n")


def test_only_a_deployment_that_scales_to_zero_waits_out_a_cold_start():
    from infra.perf import smoketest
    from stages import bench as stage
    from stages import flags

    options = flags.bench_options(url="http://127.0.0.1:9", concurrency="1")
    dev, prod = deployment("dev"), deployment("prod")
    assert dev.scaling.min_containers == 0 and prod.scaling.min_containers >= 1
    assert stage.waits(options, dev).cold_start_deadline == smoketest.deadline_for(dev)
    assert stage.waits(options, prod).cold_start_deadline == 0  # a warm replica answers, or something is wrong
    assert stage.waits(options, None).cold_start_deadline == 0  # a URL: nothing known to wait for
    waiting = flags.bench_options(url="http://127.0.0.1:9", concurrency="1", wait="45")
    assert stage.waits(waiting, None).cold_start_deadline == 45  # --wait is the user's word


def test_bench_proxy_auth_without_credentials_is_refused_before_any_request(fake_server):
    from stages import bench as stage
    from stages import flags

    server = fake_server("--tokens", "3")
    with pytest.raises(Exception) as raised:
        stage.run_url(flags.bench_options(url=server.url, proxy_auth=True, concurrency="1"), say=lambda _m: None)
    assert str(raised.value) == ("--proxy-auth: MODAL_KEY and MODAL_SECRET not set; allowed: set MODAL_KEY and "
                                 "MODAL_SECRET to a Modal proxy auth token (modal.com/settings, Proxy auth tokens), or "
                                 "leave out --proxy-auth")
    assert server.requests() == []


# ---------------------------------------------------------------------------- the Hub (the download job)


def hub_line(endpoint: str, tmp_path, timeout: float = 0.5) -> str:
    from infra.runtime import weights

    with pytest.raises(weights.HubUnreachable) as raised:
        weights.download("acme/model", "main", tmp_path / "cache", endpoint=endpoint, timeout=timeout)
    return str(raised.value)


HUB_CHECK = "check the network, any proxy (HTTPS_PROXY) and HF_ENDPOINT (HF_HUB_ETAG_TIMEOUT bounds the wait)"


def test_a_hub_that_accepts_and_never_answers_fails_at_the_bound(tmp_path):
    with SilentServer() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        line = hub_line(url, tmp_path)
    assert line == (f"cannot reach the Hugging Face Hub at {url}: accepted the connection but no answer within 0.5 s; "
                    f"{HUB_CHECK}")


def test_a_hub_behind_an_untrusted_certificate_and_a_refused_hub_are_named(tmp_path):
    with UntrustedTLSServer(tmp_path) as tls:
        url = f"https://127.0.0.1:{tls.port}"
        assert hub_line(url, tmp_path, 5) == (f"cannot reach the Hugging Face Hub at {url}: TLS certificate not "
                                              f"trusted (self-signed certificate); {reach.TLS_HINT}")
    url = f"http://127.0.0.1:{refused_port()}"
    assert hub_line(url, tmp_path, 5) == (f"cannot reach the Hugging Face Hub at {url}: connection refused: nothing "
                                          f"listens on that port; {HUB_CHECK}")
