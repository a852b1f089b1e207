"""`invoke bench` against a real local streaming server (tests/fakes/openai_server.py in a subprocess)
whose timing is set on its command line: what the client measures must be what the server did."""

from __future__ import annotations

import json
import struct
import time

import pytest

from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.perf import bench, client
from infra.runtime.errors import ConfigError, StageError
from stages import bench as stage
from stages import flags as cli_flags
from stages.common import Context
from tests.conftest import deployment

TTFT, ITL, TOKENS = 0.2, 0.02, 30
E2E = TTFT + (TOKENS - 1) * ITL
# These tests prove the client measures the right thing, not how closely (benchmarks/bench_accuracy.py prints
# that), and hold on a machine of any speed (CI runs them beside four busy loops on 2 cores). The fake server sends
# chunk i no earlier than arrival + ttft + i * itl (an absolute schedule), so a wait it made is a FLOOR the client
# cannot beat: the first token, the last token, a stream's whole time. A single gap between two chunks has no floor
# (a late server catches up, a late client reads two chunks at once), so gaps are judged through the stream's span
# (first chunk to last). The CEILING is the test's own stopwatch around the run: a measured time longer than the run
# itself is a unit or logic error, and a slower machine stretches both alike.


def within(measured: float, waited: float, elapsed: float) -> bool:
    """`measured` could be a time in which the server waited `waited`, measured inside a run that took `elapsed`."""
    return waited <= measured <= elapsed


class Stopwatch:
    """The test's own clock around a run: `with Stopwatch() as run: ...; run.s`."""

    def __enter__(self) -> Stopwatch:
        self.began = time.monotonic()
        return self

    def __exit__(self, *_exc) -> None:
        self.s = time.monotonic() - self.began


def spans_cover_the_server_waits(level: dict, waited: float) -> bool:
    """Each stream's first token plus its first-to-last-chunk span (ITL mean x gaps) reaches at least the server's
    scheduled time for its last chunk, and never past the end of the request (records keep µs: 1e-5 of rounding)."""
    return all(waited - 1e-5 <= r["ttft_s"] + r["itl_mean_s"] * (r["chunks"] - 1) <= r["e2e_s"] + 1e-5
               for r in level["records"])


def chats(server) -> list[dict]:
    return [r for r in server.requests() if r["path"] == "/v1/chat/completions"]


def measure(server, concurrency="1", requests=None, duration=None, env=None, recipe=None, **flags) -> dict:
    """What `invoke bench --url` does: the task's flags checked into options, then the stage."""
    flags.setdefault("prompt_tokens", 16)
    options = cli_flags.bench_options(url=server.url, concurrency=concurrency, requests=requests, duration=duration,
                                      **flags)
    if env:
        settings = load_settings(env, recipe)
        ctx = Context(settings=settings, remote=None, say=lambda _m: None)
        return stage.run(ctx, resolve(settings, recipe), options).detail.to_data()
    return stage.run_url(options, say=lambda _m: None).detail.to_data()


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(client, "RETRY_PAUSE", 0.05)
    monkeypatch.setattr(bench, "ERROR_PAUSE", 0.01)


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("concurrency, requests", [(1, 6), (4, 8)])
def test_measured_latencies_and_throughput_match_the_server_timing(fake_server, concurrency, requests):
    server = fake_server("--ttft", str(TTFT), "--itl", str(ITL), "--tokens", str(TOKENS))
    with Stopwatch() as run:
        report = measure(server, str(concurrency), requests, max_tokens=TOKENS * 2)
    (level,) = report["levels"]
    assert level["concurrency"] == concurrency
    assert level["requests"] == {"sent": requests, "ok": requests, "failed": 0}
    assert level["errors"] == {}

    # Latency: TTFT and end to end at least what the server waited, inter-token gaps and time per output token
    # positive; none longer than the level's wall time, which is no longer than the whole run.
    assert level["wall_s"] <= run.s
    for key in ("mean", "p50", "min", "max"):
        assert within(level["ttft_s"][key], TTFT, level["wall_s"]), (key, level["ttft_s"])
        assert within(level["e2e_s"][key], E2E, level["wall_s"]), (key, level["e2e_s"])
        assert 0 < level["itl_s"][key] < level["e2e_s"]["max"], (key, level["itl_s"])
        assert 0 < level["tpot_s"][key] < level["e2e_s"]["max"], (key, level["tpot_s"])
    assert level["itl_s"]["count"] == requests * (TOKENS - 1)
    # The gaps are the server's, chunk to chunk: first token plus the span of all gaps reaches the server's last
    # chunk (ttft + 29 x 20 ms) in every stream, and stays inside the request.
    assert spans_cover_the_server_waits(level, E2E)
    for r in level["records"]:  # each request's figures agree with each other, whatever the load (records keep µs)
        span = r["itl_mean_s"] * (r["chunks"] - 1)  # first chunk to last
        assert r["tpot_s"] * (TOKENS - 1) == pytest.approx(span, abs=1e-4) and r["ttft_s"] + span <= r["e2e_s"]

    # Throughput agrees with the token counts...
    tokens = level["output_tokens"]
    assert tokens["total"] == requests * TOKENS == sum(r["tokens"] for r in level["records"])
    assert tokens["from_usage"] == requests and tokens["counted"] == 0
    tp = level["throughput"]
    assert tp["output_tokens_per_s"] == pytest.approx(tokens["total"] / level["wall_s"], rel=1e-4)
    assert tp["requests_per_s"] == pytest.approx(requests / level["wall_s"], rel=1e-4)
    for record in level["records"]:
        assert record["tokens"] == TOKENS and record["chunks"] == TOKENS and record["usage_tokens"] == TOKENS
    # ...and with the server's timing: every stream takes at least E2E for its TOKENS, `concurrency` of them at a
    # time, so the run takes at least requests / concurrency rounds of E2E; a faster figure is a counting error.
    assert within(TOKENS / tp["output_tokens_per_s_per_user"]["p50"], E2E, level["wall_s"])
    assert within(concurrency * TOKENS / tp["output_tokens_per_s"], E2E, run.s)
    assert within(level["wall_s"], requests / concurrency * E2E, run.s)

    # The client reports its own overhead over the same window.
    overhead = level["client"]
    assert overhead["cpu_s"] > 0 and overhead["cpu_ms_per_request"] > 0 and overhead["cpu_us_per_chunk"] > 0
    assert overhead["loop_lag_ms"]["count"] > 10
    # `busy` says what its own figures say (on a loaded machine it is rightly set: the test does not decide which)
    assert overhead["busy"] == (overhead["cpu_utilization"] > bench.BUSY_CPU
                                or overhead["loop_lag_ms"]["p50"] > bench.BUSY_LAG * 1000)

    # What went over the wire: one readiness probe, one warm-up round, then the measured requests.
    sent = chats(server)
    assert len(sent) == 1 + concurrency + requests
    body = sent[-1]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == TOKENS * 2 and body["ignore_eos"] is True and "model" not in body
    prompts = [r["body"]["messages"][0]["content"] for r in sent]
    assert len(set(prompts)) == len(prompts)  # a unique tag on each: no prefix-cache hits across requests
    assert prompts[-1].count(bench.PROMPT_WORD) == 16


def test_usage_report_is_preferred_and_chunks_are_counted_without_one(fake_server):
    timing = ("--ttft", "0.02", "--itl", "0.005", "--tokens", "30", "--chunk-tokens", "3")
    with_usage = measure(fake_server(*timing), "2", 4, max_tokens=64)["levels"][0]
    without = measure(fake_server(*timing, "--no-usage"), "2", 4, max_tokens=64)["levels"][0]

    # 30 tokens in 10 chunks of 3 (as speculative decoding sends them): usage says 30, the stream shows 10.
    assert with_usage["output_tokens"] | {"per_request": None} == {
        "total": 120, "chunks": 40, "per_request": None, "from_usage": 4, "counted": 0}
    assert without["output_tokens"] | {"per_request": None} == {
        "total": 40, "chunks": 40, "per_request": None, "from_usage": 0, "counted": 4}
    assert all(r["usage_tokens"] is None and r["tokens"] == 10 for r in without["records"])
    for level, tokens in ((with_usage, 120), (without, 40)):
        assert level["throughput"]["output_tokens_per_s"] == pytest.approx(tokens / level["wall_s"], rel=1e-4)
    # Time per output token divides a stream's time by its true count (30 with usage; 10 chunks without it).
    for level, tokens in ((with_usage, 30), (without, 10)):
        for r in level["records"]:
            assert r["tpot_s"] * (tokens - 1) == pytest.approx(r["itl_mean_s"] * (r["chunks"] - 1), abs=1e-4)
    # The gaps are the server's, chunk to chunk: 9 gaps of 5 ms after the first token at 20 ms, in every stream.
    assert spans_cover_the_server_waits(with_usage, 0.02 + 9 * 0.005)


# ---------------------------------------------------------------- errors


def test_503s_while_cold_are_counted_apart_from_503s_under_load(fake_server, quick_retries):
    # Chat requests 1-2 get 503 (a cold start), then every 5th: #5 in the warm-up, #10 and #15 measured.
    server = fake_server("--ttft", "0.01", "--itl", "0.002", "--tokens", "5", "--unavailable-first", "2",
                         "--unavailable-every", "5")
    report = measure(server, "2", 10, wait="30")  # a URL waits out a cold start only when told to
    cold, (level,) = report["cold_start"], report["levels"]
    assert cold["unavailable"] == 2 and cold["errors"] == {"unavailable": 2} and cold["ready"] is True
    assert level["warmup"] == {"sent": 2, "ok": 1, "errors": {"unavailable": 1}}
    assert level["errors"] == {"unavailable": 2}
    assert level["requests"] == {"sent": 10, "ok": 8, "failed": 2}
    assert "503" in level["error_examples"]["unavailable"]
    assert level["ttft_s"]["count"] == 8 and level["output_tokens"]["total"] == 8 * 5
    assert len(chats(server)) == 2 + 1 + 2 + 10


def test_a_stall_shows_in_p99_inter_token_latency_only(fake_server):
    stall = 0.5  # 50 times the gap, so a client that is late for the chunk before it still sees most of it
    server = fake_server("--ttft", "0.05", "--itl", "0.01", "--tokens", "30", "--stall-at", "10",
                         "--stall-seconds", str(stall))
    with Stopwatch() as run:
        (level,) = measure(server, "4", 8)["levels"]
    assert level["errors"] == {}
    # One gap in 29 per request is the stall: every stream's longest gap holds most of it (the chunk after the stall
    # leaves at least `stall` after the one before was due), and so do p99 and max; the median is a gap of the
    # steady stream, far below it (half the gaps would have to be stalls to reach it).
    assert all(stall / 2 <= r["itl_max_s"] <= r["e2e_s"] for r in level["records"])
    assert stall / 2 <= level["itl_s"]["p99"] <= level["itl_s"]["max"] <= level["wall_s"] <= run.s
    assert 0 < level["itl_s"]["p50"] < stall / 2
    waited = 0.05 + 29 * 0.01 + stall  # the server's schedule for the last chunk, the stall included
    assert spans_cover_the_server_waits(level, waited)
    assert within(level["e2e_s"]["p50"], waited, level["wall_s"])


def test_a_reset_mid_stream_is_an_error_of_kind_reset(fake_server):
    # Every 3rd chat request is dropped after 5 tokens: #3 in the warm-up, #6, #9 and #12 measured.
    server = fake_server("--ttft", "0.01", "--itl", "0.005", "--tokens", "20", "--reset-at", "5",
                         "--misbehave-every", "3")
    (level,) = measure(server, "2", 9)["levels"]
    assert level["errors"] == {"reset": 3}
    assert level["requests"] == {"sent": 9, "ok": 6, "failed": 3}
    assert level["warmup"]["errors"] == {"reset": 1}
    assert "mid-stream" in level["error_examples"]["reset"]
    assert level["output_tokens"]["total"] == 6 * 20  # the broken streams' tokens are not counted
    assert sorted(r["error"] or "" for r in level["records"]) == [""] * 6 + ["reset"] * 3


def test_an_endpoint_that_refuses_every_request_stops_the_run_with_its_message(fake_server):
    server = fake_server("--chat-status", "400")
    with pytest.raises(StageError, match="did not answer a first request: HTTP 400.*model overloaded"):
        measure(server, "1", 2)
    assert len(chats(server)) == 1


def test_nothing_listening_gives_up_after_the_wait(quick_retries):
    from tests.conftest import free_port

    with pytest.raises(StageError, match="cannot connect|no response"):
        stage.run_url(cli_flags.bench_options(url=f"http://127.0.0.1:{free_port()}", concurrency="1", wait="0.3"),
                      say=lambda _m: None)


# ---------------------------------------------------------------- output


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_table_json_plot_and_compare(fake_server, tmp_path, capsys):
    a_json, b_json = tmp_path / "a.json", tmp_path / "b" / "b.json"
    fast = fake_server("--ttft", "0.05", "--itl", "0.004", "--tokens", "10")
    slow = fake_server("--ttft", "0.5", "--itl", "0.004", "--tokens", "10")
    (tmp_path / "b").mkdir()
    common = {"concurrency": "1,2", "requests": "4", "prompt_tokens": "8", "max_tokens": "10"}
    done = stage.run_url(cli_flags.bench_options(url=fast.url, output=str(a_json), plot=str(tmp_path / "a.png"),
                                                 label="fast",
                                             **common), say=lambda _m: None)
    report, table = done.detail.to_data(), done.message
    stage.run_url(cli_flags.bench_options(url=slow.url, output=str(b_json), label="slow", **common),
                  say=lambda _m: None)

    # The table: one row per level under a header naming the metrics.
    assert "TTFT ms p50/p90/p99" in table and "tok/s total" in table and "fast: http://127.0.0.1" in table
    rows = [line.split() for line in table.splitlines() if line.split() and line.split()[0] in ("1", "2")]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "4/4", "-"), ("2", "4/4", "-")]

    # The JSON: versioned, with every documented field.
    saved = json.loads(a_json.read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["schema"] == bench.SCHEMA == 1 and saved["label"] == "fast" and saved["tool"] == "invoke bench"
    assert set(saved) == {"schema", "tool", "label", "created", "target", "workload", "plan", "client", "cold_start",
                          "levels"}
    assert saved["target"] == {"url": fast.url, "model": None}
    assert saved["plan"]["concurrency"] == [1, 2] and saved["plan"]["requests"] == 4
    assert saved["workload"]["prompt_tokens"] == 8 and saved["workload"]["max_tokens"] == 10
    assert saved["workload"]["sampling"] == {"temperature": 0.0, "top_p": None, "top_k": None}
    assert "temperature=0 top_p=server top_k=server" in table  # the header says how it sampled
    level = saved["levels"][1]
    assert set(level) == {"concurrency", "mode", "requests", "errors", "error_examples", "warmup", "wall_s", "ttft_s",
                          "itl_s", "tpot_s", "e2e_s", "output_tokens", "throughput", "goodput", "client", "records"}
    assert level["goodput"] is None  # `bench --url`: no objectives to count against
    assert set(level["ttft_s"]) == {"count", "mean", "min", "p50", "p90", "p99", "max"}
    assert set(level["client"]) == {"cpu_s", "cpu_utilization", "cpu_ms_per_request", "cpu_us_per_chunk", "loop_lag_ms",
                                    "busy"}
    assert set(level["records"][0]) == {"t_s", "error", "ttft_s", "e2e_s", "tpot_s", "itl_mean_s", "itl_max_s",
                                        "tokens",
                                        "chunks", "usage_tokens"}

    # The plot: a real PNG of a readable size.
    assert png_size(tmp_path / "a.png") == (1200, 800)

    # Compare: B/A per metric per level; B's server waits ten times as long as A's before the first token.
    comparison = stage.compare([str(a_json), str(b_json)], plot=str(tmp_path / "ab.png"), say=lambda _m: None).to_data()
    text = capsys.readouterr().out
    assert "A = fast" in text and "B = slow" in text and "B/A" in text
    ttft = [r for r in comparison["rows"] if r["metric"] == "TTFT p50 ms"]
    assert [r["concurrency"] for r in ttft] == [1, 2]
    assert all(r["ratio"] >= 2 and r["verdict"] == "worse" for r in ttft)
    (line,) = [line.split() for line in text.splitlines() if line.split()[:4] == ["1", "TTFT", "p50", "ms"]]
    # the servers' waits, in ms (A's no longer than its own level took)
    assert 50 <= float(line[4]) <= 1000 * report["levels"][0]["wall_s"] and 500 <= float(line[5])
    assert line[6].startswith("x") and float(line[6][1:]) >= 2 and line[7] == "worse"
    assert png_size(tmp_path / "ab.png") == (1200, 800)
    # The same from one comma-separated flag, as JSON.
    stage.compare(cli_flags.compare_paths(f"{a_json},{b_json}"), print_json=True, say=lambda _m: None)
    assert json.loads(capsys.readouterr().out)["rows"] == json.loads(json.dumps(comparison["rows"]))


def test_the_measured_requests_are_written_exactly_as_sent_in_the_format_bench_serving_replays(fake_server, tmp_path):
    """`--write-requests`: each level's measured requests (not the readiness probe, not the warm-up), byte for byte the
    bodies the server received, in order, one JSON object a line with `messages` and `max_tokens` as
    sglang.bench_serving's `openai` dataset reads them (benchmarks/bench_vs_bench_serving.py replays them)."""
    server = fake_server("--tokens", "3")
    template = str(tmp_path / "sent-c{concurrency}.jsonl")
    report = measure(server, "1,2", requests=4, max_tokens=3, warmup=1, write_requests=template)
    received = [r["body"] for r in chats(server)]
    assert len(received) == 1 + (1 + 4) + (2 + 4)  # probe, then per level its warm-up round and the measured requests
    written = {c: [json.loads(line) for line in (tmp_path / f"sent-c{c}.jsonl").read_text().splitlines()]
               for c in (1, 2)}
    assert written[1] == received[2:6]
    assert sorted(map(json.dumps, written[2])) == sorted(map(json.dumps, received[8:12]))
    for line in written[1] + written[2]:
        assert line["max_tokens"] == 3 and line["messages"][0]["role"] == "user" and line["ignore_eos"] is True
    assert len({json.dumps(line["messages"]) for line in written[1] + written[2]}) == 8  # distinct prompts
    assert [lv["requests"]["sent"] for lv in report["levels"]] == [4, 4]


def test_duration_mode_starts_requests_only_within_the_window(fake_server):
    server = fake_server("--ttft", "0.02", "--itl", "0.005", "--tokens", "10")
    (level,) = measure(server, "3", duration="0.6", warmup="0")["levels"]
    assert level["mode"] == "duration" and level["warmup"]["sent"] == 0
    assert level["requests"]["ok"] >= 3  # each stream starts at least one (several 65 ms ones on an idle machine)
    # No request starts once the window has closed: a stream reads the clock before each request, so only its last
    # one may be stamped after 0.6 s (checked just before, sent just after: at most one per stream), and every other
    # request ended inside the window (its stream went on to another). Counts and order, not the machine's speed.
    assert sum(r["t_s"] >= 0.6 for r in level["records"]) <= 3
    assert sum(r["t_s"] + r["e2e_s"] <= 0.6 + 1e-5 for r in level["records"]) >= level["requests"]["sent"] - 3
    assert len(chats(server)) == 1 + level["requests"]["sent"]


def test_greedy_by_default_and_sampling_options_are_sent_and_recorded(fake_server):
    server = fake_server("--tokens", "3")
    greedy = measure(server, "1", 1, warmup="0")
    assert {json.dumps({k: c["body"].get(k) for k in ("temperature", "top_p", "top_k")}) for c in chats(server)} == {
        json.dumps({"temperature": 0.0, "top_p": None, "top_k": None})
    }
    assert greedy["workload"]["sampling"]["temperature"] == 0.0
    server = fake_server("--tokens", "3")
    sampled = measure(server, "1", 1, warmup="0", temperature="0.6", top_p="0.95", top_k="20")
    assert all((c["body"]["temperature"], c["body"]["top_p"], c["body"]["top_k"]) == (0.6, 0.95, 20)
               for c in chats(server))
    assert sampled["workload"]["sampling"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 20}
    assert "temperature=0.6 top_p=0.95 top_k=20" in bench.describe(bench.BenchReport.read(sampled))
    server = fake_server("--tokens", "3")
    measure(server, "1", 1, warmup="0", temperature="server")
    assert all("temperature" not in c["body"] for c in chats(server))  # the model's own default applies


def test_with_an_environment_the_recipe_model_is_sent(fake_server):
    server = fake_server("--tokens", "3")
    report = measure(server, "1", 1, env="dev", recipe="qwen3-8b-low-latency")
    model = deployment("dev", "qwen3-8b-low-latency").recipe.model
    assert report["target"] == {"url": server.url, "model": model, "env": "dev", "recipe": "qwen3-8b-low-latency"}
    assert {r["body"]["model"] for r in chats(server)} == {model}


def test_without_a_url_the_deployed_endpoint_is_measured_with_its_credentials(fake_server, monkeypatch):
    server = fake_server("--tokens", "3")
    monkeypatch.setenv("MODAL_KEY", "wk-key")
    monkeypatch.setenv("MODAL_SECRET", "ws-secret")

    class DeployedRemote:
        def require_credentials(self):
            pass

        def read_file(self, *_args):
            return None  # no release manifest: ask Modal

        def server_url(self, d):
            return server.url

    settings = load_settings("dev", "qwen3-8b-low-latency", parse_overrides(["auth.proxy_auth=true"]))
    d = resolve(settings, "qwen3-8b-low-latency")
    options = cli_flags.bench_options(concurrency="1", requests="1", prompt_tokens="4")
    report = stage.run(Context(settings=settings, remote=DeployedRemote(), say=lambda _m: None), d,
                       options).detail.to_data()
    assert report["target"]["url"] == server.url and report["target"]["app"] == d.app_name
    assert report["plan"]["cold_start_deadline_s"] == d.recipe.startup_timeout + 120  # waits out a full cold start
    assert {r["headers"].get("Modal-Key") for r in chats(server)} == {"wk-key"}  # its own endpoint: credentials belong
    public = load_settings("dev", "qwen3-8b-low-latency")  # dev's endpoint is public: its credentials stay home
    stage.run(Context(settings=public, remote=DeployedRemote(), say=lambda _m: None), resolve(public, d.recipe.name),
              options)
    assert [r["headers"].get("Modal-Key") for r in chats(server)][-1] is None


def test_credentials_go_to_a_named_url_only_when_asked_and_never_in_clear_text_to_another_host(
        fake_server, monkeypatch):
    server = fake_server("--tokens", "3")
    monkeypatch.setenv("MODAL_KEY", "wk-key")
    monkeypatch.setenv("MODAL_SECRET", "ws-secret")
    measure(server, "1", 1)
    assert {r["headers"].get("Modal-Key") for r in chats(server)} == {None}
    measure(server, "1", 1, proxy_auth=True)  # asked for, and local
    assert {r["headers"].get("Modal-Key") for r in chats(server)} == {None, "wk-key"}
    with pytest.raises(ConfigError, match="refusing to send Modal proxy credentials .* in clear text to example.com"):
        stage.run_url(cli_flags.bench_options(url="http://example.com:9", proxy_auth=True, concurrency="1"))
    with pytest.raises(ConfigError, match="--proxy-auth applies to --url"):
        cli_flags.bench_options(proxy_auth=True)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("value", ["0", "-1", "", "  ", "1,x", "x", "1,,4", "1.5", "4,0", "1;4"])
def test_bad_concurrency_is_one_line_naming_the_flag_and_what_is_allowed(value):
    with pytest.raises(ConfigError) as caught:
        cli_flags.bench_options(url="http://127.0.0.1:9", concurrency=value)
    message = str(caught.value)
    assert message.startswith("--concurrency must be a comma-separated list of positive whole numbers")
    assert "\n" not in message


@pytest.mark.parametrize("options, flag", [
    ({"requests": "x"}, "--requests must be a positive whole number"),
    ({"requests": "0"}, "--requests must be a positive whole number"),
    ({"requests": "2", "concurrency": "1,4"}, "--requests must be at least the highest --concurrency"),
    ({"duration": "-1"}, "--duration must be a positive number of seconds"),
    ({"requests": "4", "duration": "3"}, "give --requests .* or --duration .*, not both"),
    ({"prompt_tokens": "0"}, "--prompt-tokens must be a positive whole number"),
    ({"max_tokens": "ten"}, "--max-tokens must be a positive whole number"),
    ({"warmup": "-1"}, "--warmup must be a whole number >= 0"),
    ({"temperature": "-0.1"}, r"--temperature must be a number >= 0, or 'server'"),
    ({"temperature": "hot"}, r"--temperature must be a number >= 0, or 'server'"),
    ({"top_p": "0"}, "--top-p must be a number greater than 0 and at most 1"),
    ({"top_p": "1.5"}, "--top-p must be a number greater than 0 and at most 1"),
    ({"top_k": "0"}, r"--top-k must be a positive whole number \(or -1 for no limit\)"),
    ({"top_k": "2.5"}, r"--top-k must be a positive whole number"),
    ({"url": "127.0.0.1:8000"}, "--url must be an http:// or https:// address"),
    ({"url": "http://127.0.0.1:x"}, "--url must be an http:// or https:// address with a valid port"),
    ({"output": "/no/such/folder/report.json"}, "--output /no/such/folder/report.json: folder /no/such/folder does not "
                                                "exist"),
    ({"plot": "/"}, "--plot /: is a folder"),
    ({"write_requests": "/tmp/requests.jsonl", "concurrency": "1,4"},
     r"--write-requests /tmp/requests.jsonl: 2 concurrency levels need one file each; allowed: a path containing "
     r"\{concurrency\}"),
])
def test_other_bad_options_are_one_line_config_errors_before_any_request(options, flag):
    options = {"url": "http://127.0.0.1:9"} | options
    with pytest.raises(ConfigError, match=flag) as caught:
        cli_flags.bench_options(**options)
    assert "\n" not in str(caught.value)


def test_compare_needs_two_existing_reports():
    with pytest.raises(ConfigError, match="--compare needs exactly two bench JSON files or release ids"):
        cli_flags.compare_paths(["only-one.json"])
    with pytest.raises(ConfigError, match="--compare: missing-a.json does not exist"):
        stage.compare(cli_flags.compare_paths(["missing-a.json", "missing-b.json"]))


def test_compare_refuses_a_file_that_is_not_a_report(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"schema": 99, "levels": []}))
    (tmp_path / "b.json").write_text("not json")
    with pytest.raises(ConfigError, match="is not a bench report with schema 1"):
        stage.compare([str(tmp_path / "a.json"), str(tmp_path / "a.json")])
    with pytest.raises(ConfigError, match="b.json is not a bench JSON report"):
        bench.load_report(tmp_path / "b.json")


def test_percentiles_interpolate_linearly_between_ranks():
    values = list(range(1, 11))  # 1..10
    assert bench.percentile(values, 50) == 5.5
    assert bench.percentile(values, 90) == pytest.approx(9.1)
    assert bench.percentile(values, 99) == pytest.approx(9.91)
    assert bench.percentile([7.0], 99) == 7.0 and bench.percentile([], 50) is None
    assert bench.summarize([]).model_dump() == {"count": 0, "mean": None, "min": None, "p50": None, "p90": None,
                                                "p99": None, "max": None}


def _level(concurrency: int, *, itl_p99_ms: float, ttft_ms: list[float], lag_p99_ms: float) -> bench.Level:
    """A bench level with the figures `compare` reads (the rest left out: model_construct validates nothing)."""
    stat = bench.Stats(p50=0.01, p99=0.02)
    ttft = sorted(x / 1000 for x in ttft_ms)
    return bench.Level.model_construct(
        concurrency=concurrency, ttft_s=bench.Stats(p50=ttft[len(ttft) // 2], p99=ttft[-1]),
        itl_s=bench.Stats(p50=0.005, p99=itl_p99_ms / 1000), tpot_s=stat, e2e_s=stat,
        throughput=bench.Throughput(output_tokens_per_s_per_user=bench.Stats(p50=100.0), output_tokens_per_s=100.0,
                                    requests_per_s=1.0),
        requests=bench.Requests(sent=10, ok=10, failed=0), client=bench.ClientLoad.model_construct(
            loop_lag_ms=bench.Stats(p99=lag_p99_ms)), records=[bench.RequestRecord(t_s=0.0, ttft_s=x) for x in ttft])


def _report(*levels: bench.Level) -> bench.BenchReport:
    return bench.BenchReport.model_construct(levels=list(levels), label=None, path=None)


def test_compare_calls_a_change_only_beyond_the_runs_own_noise():
    """A local server's ITL p99 of 0.09 ms against 1.66 ms is within a busy client's 2 ms loop lag: 'same'."""
    steady = [20.0 + (i % 5) for i in range(40)]  # TTFT 20-24 ms: a narrow spread
    a = _report(_level(1, itl_p99_ms=0.09, ttft_ms=steady, lag_p99_ms=2.0))
    b = _report(_level(1, itl_p99_ms=1.66, ttft_ms=[x + 0.4 for x in steady], lag_p99_ms=2.0))
    rows = {r["metric"]: r for r in bench.compare(a, b).to_data()["rows"]}
    assert rows["ITL p99 ms"]["verdict"] == "same" and rows["ITL p99 ms"]["noise"] == 4.0  # both runs' lag
    assert rows["TTFT p50 ms"]["verdict"] == "same"
    slow = _report(_level(1, itl_p99_ms=30.0, ttft_ms=[x * 3 for x in steady], lag_p99_ms=2.0))
    rows = {r["metric"]: r for r in bench.compare(a, slow).to_data()["rows"]}
    assert rows["ITL p99 ms"]["verdict"] == "worse" and rows["TTFT p50 ms"]["verdict"] == "worse"
    text = bench.render_compare(bench.compare(a, slow))
    assert "noise ±" in text and "'same': within 5% of A or within the runs' own noise" in text


def test_percentile_noise_is_the_confidence_interval_of_the_order_statistic():
    values = list(range(100))  # the median's 95% interval spans ranks 49.5 ± 9.8: values 39..60
    assert bench.percentile_noise(values, 0.5) == (60 - 39) / 2
    assert bench.percentile_noise(values[:5], 0.5) is None  # too few to say


# ---------------------------------------------------------------- goodput (issue 31 item 4)


def test_goodput_counts_the_requests_that_met_every_objective_at_their_level(fake_server):
    """Every second request's first token is held back 0.5 s: against a 200 ms objective at level 1 exactly half
    the measured requests count, whatever this machine's speed (the others answer in milliseconds)."""
    server = fake_server("--tokens", "4", "--stall-at", "0", "--stall-seconds", "0.5", "--misbehave-every", "2")
    overrides = ['gate.objectives=[{ metric = "ttft_p90_ms", level = 1, max = 200 }, '
                 '{ metric = "ttft_p90_ms", level = 2, max = 5000 }]']
    settings = load_settings("prod", "qwen3-8b-low-latency", parse_overrides(overrides))
    options = cli_flags.bench_options(url=server.url, concurrency="1", requests=8, prompt_tokens=16)
    result = stage.run(Context(settings=settings, remote=None, say=lambda _m: None),
                       resolve(settings, "qwen3-8b-low-latency"), options)
    # the warm-up is request 1, so requests 2, 4, 6 and 8 of the server stall
    (level,) = result.detail.to_data()["levels"]
    assert level["requests"]["ok"] == 8 and sum(r["ttft_s"] > 0.5 for r in level["records"]) == 4
    good = level["goodput"]
    assert (good["met"], good["sent"], good["objectives"]) == (4, 8, ["ttft_p90_ms ≤ 200.0 ms"])  # level 2's: not here
    assert good["requests_per_s"] == pytest.approx(level["throughput"]["requests_per_s"] / 2, rel=1e-3)
    # The table shows it beside raw throughput, and says what it counted.
    header, _, row = result.message.splitlines()[1:4]
    assert "req/s  goodput req/s" in header
    cells = row.split()
    raw, goodput = (float(c) for c in cells[cells.index("-") + 7:cells.index("-") + 9])  # after errors "-": 7th, 8th
    assert (raw, goodput) == (pytest.approx(level["throughput"]["requests_per_s"], abs=0.01),
                              pytest.approx(good["requests_per_s"], abs=0.01))
    assert "goodput at concurrency 1: 4 of 8 requests met ttft_p90_ms ≤ 200.0 ms" in result.message


def test_without_objectives_there_is_no_goodput_and_the_gate_can_hold_one():
    from infra.control import objectives
    from infra.perf import gate

    assert bench.aggregate(1, [], [], 0.0, 1.0, 0.0, [], mode="requests").goodput is None  # `bench --url`
    level = bench.Level.model_construct(concurrency=4, requests=bench.Requests(sent=10, ok=10, failed=0), errors={},
                                        goodput=bench.Goodput(requests_per_s=1.5, met=15, sent=10),
                                        client=bench.ClientLoad.model_construct(busy=False))
    held = objectives.Objective(metric="goodput_rps", level="target", min=2)
    measured = bench.BenchReport.model_construct(levels=[level], workload=None, cold_start=bench.ColdWait(),
                                                 target=bench.BenchTarget(env="staging"))
    ev = gate.evaluate(objectives.resolve(objectives.Gate(enabled=True, objectives=[held]), 4), measured,
                       regression_budget=0.1)
    assert ev.reasons == ("goodput_rps at concurrency 4: 1.50 req/s misses the objective ≥ 2.00 req/s",)
    with pytest.raises(ValueError, match="goodput_rps is higher-is-better: give its limit as 'min', not 'max'"):
        objectives.Objective(metric="goodput_rps", level=1, max=2)


def test_compare_of_two_releases_waits_for_modal_only_as_long_as_client_connect_timeout(monkeypatch, tmp_path):
    """Issue 30: `bench --compare <release> --compare <release>` read the manifests with the default 15 s bound,
    whatever [client] connect_timeout said. A control plane that accepts and never answers shows which bound held."""
    from infra.runtime.remote import Unreachable
    from stages.runner import recorded_releases
    from tests.fakes.network_faults import SilentServer

    (tmp_path / "modal.toml").write_text("")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "modal.toml"))
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")
    with SilentServer() as silent:
        monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{silent.port}")
        with pytest.raises(Unreachable) as raised:
            recorded_releases(None, "dev", None, ["client.connect_timeout=0.5"])
    assert "but no answer within 0.5 s" in str(raised.value)


def test_a_url_python_cannot_split_is_named_with_what_is_allowed():
    """Issue 30: `bench --url 'http://[::1'` ended in `ValueError: Invalid IPv6 URL`, the value unnamed."""
    with pytest.raises(ConfigError) as raised:
        cli_flags.http_url("--url", "http://[::1")
    assert str(raised.value) == ("--url 'http://[::1': not a URL (Invalid IPv6 URL); allowed: an http:// or https:// "
                                 "address such as http://127.0.0.1:30000 or http://[::1]:30000")


@pytest.mark.parametrize("edit, field", [
    (lambda level: level["ttft_s"].update(p50="0.1", p99="0.2"), "levels[0].ttft_s.p50"),
    (lambda level: level.update(concurrency=[1, 2]), "levels[0].concurrency"),
])
def test_a_hand_edited_report_names_the_file_and_the_field(tmp_path, edit, field):
    """Issue 30: latencies as strings or a concurrency as a list ended in a TypeError that named neither."""
    from tests.conftest import REPO

    report = json.loads((REPO / "tests" / "fixtures" / "bench" / "baseline.json").read_text())
    edit(report["levels"][0])
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(report))
    with pytest.raises(ConfigError) as raised:
        stage.compare([str(edited), str(REPO / "tests" / "fixtures" / "bench" / "baseline.json")], say=lambda _m: None)
    assert str(raised.value).startswith(f"--compare: {edited}: {field}") and "\n" not in str(raised.value)
