"""The in-container lifecycle against real processes: the stand-in `sglang.launch_server`
started with the real command line, a real HTTP server, real signals, the real process table."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time

import aiohttp
import pytest

from infra.perf import client
from infra.runtime import lifecycle, sglang_args
from infra.runtime.lifecycle import Readiness, ServerFailed, ServerProcess
from infra.runtime.recipes.base import Warmup
from tests.conftest import (
    deployment,
    free_port,
    process_state,
    processes_mentioning,
    reap_children,
    standin_env,
    wait_for,
)


def launch(tmp_path, recipe="qwen3-8b-low-latency", timeout=20.0, poll=0.2, warmup=None, budget=None, on_line=None,
           **fake):
    d = deployment(recipe=recipe, port=free_port())
    record = tmp_path / "requests.jsonl"
    argv_file = tmp_path / "argv.json"
    env = standin_env(record=str(record), **fake)
    env["FAKE_SGLANG_ARGV"] = str(argv_file)
    readiness = Readiness(timeout=timeout, poll_interval=poll, warmup=warmup or d.recipe.warmup, model=d.recipe.model,
                          startup_budget=budget)
    base = f"http://127.0.0.1:{d.server.port}"
    return d, record, argv_file, lambda: lifecycle.start_and_warm(
        sglang_args.launch_command(d), base, readiness, env=env, on_line=on_line
    )


SHORT_WARMUP = Warmup(count=1, prompt="Hi", max_tokens=2, timeout=10)  # for servers set up to stream slowly


def stream_in_background(url: str, max_tokens: int) -> dict:
    """Stream one completion in a thread, as a user would while the container stops; the dict fills in at the end."""
    outcome: dict = {}

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            payload = client.chat_payload([{"role": "user", "content": "long"}], max_tokens=max_tokens)
            try:
                result = await client.stream_chat(session, url, payload, timeout=30)
                outcome.update(tokens=len(result.chunk_times), text=result.text)
            except client.EndpointError as err:
                outcome.update(error=err.kind, message=str(err))

    thread = threading.Thread(target=lambda: asyncio.run(go()), daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def requests_of(record):
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_healthy_server_is_warmed_up_with_the_recipe_requests_then_stopped(tmp_path, subreaper):
    d, record, argv_file, start = launch(tmp_path, healthy_after=0.3)
    server = start()
    try:
        # The real command line reached the process, full flag names and all.
        assert json.loads(argv_file.read_text()) == sglang_args.launch_command(d)[3:]
        chats = [r for r in requests_of(record) if r["path"] == "/v1/chat/completions"]
        assert len(chats) == 3
        assert all(c["body"]["messages"] == [{"role": "user", "content": "Hello, how are you?"}] for c in chats)
        # Enough tokens, all of them, for speculative decoding to run many draft/verify steps.
        assert all(c["body"]["max_tokens"] == d.recipe.warmup.max_tokens >= 64 for c in chats)
        assert all(c["body"]["ignore_eos"] is True for c in chats)
        health = [r for r in requests_of(record) if r["path"] == "/health"]
        assert len(health) >= 1 and requests_of(record)[-1]["path"] == "/v1/chat/completions"  # ready after the warm-up
        assert len(server.timings.warmup_s) == 3 and "flaps" not in server.timings.to_data()
    finally:
        code = server.stop(grace=5)
    assert code is not None
    assert server.drained is True
    assert process_state(server.pid) is None
    reap_children()
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_vlm_warmup_sends_the_packaged_image_inline(tmp_path):
    d, record, _, start = launch(tmp_path, recipe="qwen3.6-35b-vlm")
    server = start()
    server.stop()
    chats = [r for r in requests_of(record) if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    content = chats[0]["body"]["messages"][0]["content"]
    assert content[0]["type"] == "image_url"
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")  # a real PNG, no CDN
    assert content[1] == {"type": "text", "text": "What is this?"}
    assert chats[0]["body"]["max_tokens"] == d.recipe.warmup.max_tokens


def test_exit_during_startup_fails_within_one_poll_interval_with_code_and_log_tail(tmp_path):
    _, _, _, start = launch(
        tmp_path, poll=60.0, timeout=120, listen_after=90, exit_after=0.5, exit_code=7,
        log_lines=["Loading safetensors checkpoint shards", "CUDA error: out of memory"],
    )
    began = time.monotonic()
    with pytest.raises(ServerFailed) as err:
        start()
    elapsed = time.monotonic() - began
    assert elapsed < 30, elapsed  # the poll interval is 60 s: sleeping through the exit would take that long
    message = str(err.value)
    assert "exited with code 7" in message
    assert "CUDA error: out of memory" in message
    assert "simulated crash" in message


def test_never_healthy_fails_at_the_readiness_timeout_with_log_tail(tmp_path, subreaper):
    d, _, _, start = launch(tmp_path, timeout=2.0, poll=0.5, never_healthy=True,
                            log_lines=["stuck capturing CUDA graphs"])
    began = time.monotonic()
    with pytest.raises(ServerFailed) as err:
        start()
    elapsed = time.monotonic() - began
    assert 2.0 <= elapsed < 30, elapsed  # the readiness timeout, not forever
    assert "not healthy within 2 s" in str(err.value)
    assert "stuck capturing CUDA graphs" in str(err.value)
    reap_children()
    assert processes_mentioning(f"--port {d.server.port}") == []  # the failed server was stopped, not leaked


def test_a_server_that_refuses_its_warm_up_after_answering_healthy_must_prove_itself(tmp_path):
    """Healthy once, then a 503 (SGLang's scheduler stopped answering): not ready until healthy 3 times
    running and the whole warm-up served."""
    _, record, _, start = launch(tmp_path, poll=0.05, unavailable_first=1)
    server = start()
    server.stop()
    entries = [r["path"] for r in requests_of(record)]
    refused = entries.index("/v1/chat/completions")
    assert entries[:refused].count("/health") >= 1
    assert entries[refused + 1 : refused + 1 + lifecycle.HEALTHY_IN_A_ROW] == ["/health"] * lifecycle.HEALTHY_IN_A_ROW
    assert entries.count("/v1/chat/completions") == 1 + 3  # the refused one, then the full warm-up again
    assert server.timings.flaps == 1


def test_a_server_that_keeps_refusing_its_warm_up_fails(tmp_path, subreaper):
    _, _, _, start = launch(tmp_path, poll=0.05, unavailable_every=1)
    with pytest.raises(ServerFailed, match=r"keeps refusing its warm-up after answering healthy \(3 times\).*HTTP 503"):
        start()
    reap_children()


def test_ready_within_a_second_of_sglang_first_answering_healthy(tmp_path):
    """The ready line is printed when /health starts answering 200; each answer takes >= 1 s, as SGLang's does."""
    seen: dict[str, float] = {}

    def on_line(at: float, line: str) -> None:
        if "fired up and ready to roll" in line:
            seen.setdefault("ready_line", at)

    d = deployment()
    _, _, _, start = launch(tmp_path, poll=d.recipe.health_poll_interval, healthy_after=1.0, health_delay=1.0,
                            on_line=on_line)
    server = start()
    returned = time.monotonic()
    server.stop()
    first_healthy_answer = seen["ready_line"] + 1.0  # SGLang's health generation takes its second
    # Noticed within a poll interval, then only the warm-up (fast here). Confirming health again (HEALTHY_IN_A_ROW
    # answers of >= 1 s each, CONFIRM_INTERVAL apart) would add >= 3 s; the bounds leave room for a busy machine.
    assert returned - first_healthy_answer < 2.5, (returned - first_healthy_answer, server.timings)
    assert server.timings.healthy_to_ready_s - sum(server.timings.warmup_s) < 0.9


def test_first_warmup_request_may_compile_within_the_startup_budget(tmp_path):
    d = deployment()
    quick = d.recipe.warmup.model_copy(update=dict(timeout=0.5))
    _, record, _, start = launch(tmp_path, warmup=quick, budget=20, first_chat_delay=1.5)
    server = start()
    server.stop()
    first, *later = server.timings.warmup_s
    assert first >= 1.5 and all(x < 1.0 for x in later)  # only the first one compiled


def test_first_warmup_request_fails_once_the_startup_budget_is_spent(tmp_path, subreaper):
    d = deployment()
    quick = d.recipe.warmup.model_copy(update=dict(timeout=0.5))
    # The budget must cover the stand-in's own start-up first (a Python process importing aiohttp: well under a
    # second when idle, seconds beside four busy loops on 2 cores), else it fails as "not healthy" instead. What is
    # left of it, less than the budget and more than the recipe's 0.5 s, bounds the first request, which the server
    # would answer only after 60 s.
    budget, delay = 10.0, 60.0
    _, _, _, start = launch(tmp_path, warmup=quick, budget=budget, first_chat_delay=delay)
    began = time.monotonic()
    with pytest.raises(ServerFailed, match=r"warm-up request 1/3 failed after (\S+) s allowed") as failed:
        start()
    took = time.monotonic() - began
    allowed = float(re.search(r"failed after (\S+) s allowed", str(failed.value)).group(1))
    assert quick.timeout <= allowed < budget  # what was left of the budget, not the recipe's short timeout alone
    assert took < delay  # the budget cut the request: it was not answered (that takes the server's 60 s)
    reap_children()


def test_exit_in_the_middle_of_a_health_request_is_noticed_at_once(tmp_path, subreaper):
    """A health request may legitimately take 25 s; a death meanwhile must not wait for it."""
    assert lifecycle.HEALTH_REQUEST_TIMEOUT >= 20  # SGLang's own health-check timeout
    _, _, _, start = launch(tmp_path, poll=0.1, never_healthy=False, health_delay=60, exit_after=1.5, exit_code=9,
                            log_lines=["Capturing CUDA graphs"])
    began = time.monotonic()
    with pytest.raises(ServerFailed, match="exited with code 9 during start-up") as err:
        start()
    # Waiting for the request would take HEALTH_REQUEST_TIMEOUT (25 s); the death is seen within ~1.5 s.
    assert time.monotonic() - began < lifecycle.HEALTH_REQUEST_TIMEOUT - 5
    assert "Capturing CUDA graphs" in str(err.value)
    reap_children()


def test_failed_warmup_fails_the_container_and_stops_the_server(tmp_path, subreaper):
    d, _, _, start = launch(tmp_path, chat_status=500)
    with pytest.raises(ServerFailed, match=r"warm-up request 1/3 failed: HTTP 500: .*model overloaded"):
        start()
    reap_children()
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_stop_kills_a_server_that_ignores_sigterm_and_its_children(tmp_path, subreaper):
    child_pid_file = tmp_path / "child.pid"
    d, _, _, start = launch(tmp_path, ignore_sigterm=True, spawn_child=str(child_pid_file))
    server = start()
    child = int(wait_for(lambda: child_pid_file.exists() and child_pid_file.read_text()))
    assert process_state(child) in ("S", "R")
    began = time.monotonic()
    code = server.stop(grace=1.0)
    elapsed = time.monotonic() - began
    assert code == -9  # SIGKILL after the grace period
    assert 1.0 <= elapsed < 20, elapsed  # the grace, then the kill: not a wait for a process that never exits
    assert process_state(server.pid) is None  # reaped: no zombie
    wait_for(lambda: (reap_children(), process_state(child) is None)[1], timeout=3)
    assert process_state(child) is None  # the grandchild went with its group: no orphan
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_stop_signals_the_parent_alone_and_sglang_exits_by_itself(tmp_path, subreaper):
    sched_file = tmp_path / "scheduler.pid"
    d, _, _, start = launch(tmp_path, scheduler_pid_file=str(sched_file))
    server = start()
    scheduler = int(sched_file.read_text())
    began = time.monotonic()
    code = server.stop(grace=60.0)
    assert time.monotonic() - began < 30  # one drain tick (0.5 s here, 5 s in SGLang), not the 60 s grace
    assert server.drained is True
    assert code == -9  # as SGLang: after draining it kills its children, then itself
    reap_children()
    assert process_state(scheduler) is None
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_stop_lets_a_long_stream_finish_and_leaves_no_process(tmp_path, subreaper):
    sched_file = tmp_path / "scheduler.pid"
    d, _, _, start = launch(tmp_path, tokens=40, itl=0.05, scheduler_pid_file=str(sched_file), warmup=SHORT_WARMUP)
    server = start()
    scheduler = int(sched_file.read_text())
    stream = stream_in_background(f"http://127.0.0.1:{d.server.port}", max_tokens=40)
    time.sleep(0.3)  # the stream is under way: ~1.7 s of it left
    began = time.monotonic()
    server.stop(grace=60.0)
    stopped_after = time.monotonic() - began
    stream["thread"].join(5)
    assert stream.get("error") is None, stream
    assert stream["tokens"] == 40  # every token arrived: the stop drained it
    assert server.drained is True
    assert 1.4 < stopped_after < 30, stopped_after  # it waited for the stream, then a drain tick, not the 60 s grace
    reap_children()
    assert process_state(scheduler) is None
    assert lifecycle.group_members(server.pid) == []
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_sigterm_to_the_whole_group_cuts_streams_as_sglang_does(tmp_path, subreaper):
    """Why stop() signals the parent alone: the stand-in's scheduler dies, and the server with it."""
    d, _, _, start = launch(tmp_path, tokens=40, itl=0.05, warmup=SHORT_WARMUP)
    server = start()
    stream = stream_in_background(f"http://127.0.0.1:{d.server.port}", max_tokens=40)
    time.sleep(0.3)
    os.killpg(server.pid, signal.SIGTERM)
    stream["thread"].join(5)
    assert stream.get("error") == "reset", stream
    server.stop(grace=0)
    reap_children()


def test_stop_kills_the_whole_group_when_the_drain_outlasts_the_grace(tmp_path, subreaper):
    sched_file = tmp_path / "scheduler.pid"
    d, _, _, start = launch(tmp_path, tokens=1000, itl=0.05, scheduler_pid_file=str(sched_file), warmup=SHORT_WARMUP)
    server = start()
    scheduler = int(sched_file.read_text())
    stream = stream_in_background(f"http://127.0.0.1:{d.server.port}", max_tokens=1000)
    time.sleep(0.3)
    began = time.monotonic()
    code = server.stop(grace=1.0)
    assert 1.0 <= time.monotonic() - began < 25  # the grace, not the 50 s the stream would take
    assert server.drained is False and code == -9
    stream["thread"].join(5)
    assert stream.get("error") == "reset"
    reap_children()
    assert process_state(scheduler) is None
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_drain_budget_fits_modal_and_sglang():
    assert lifecycle.drain_budget(0) == 0  # nothing granted: kill at once
    assert lifecycle.drain_budget(5) == 0  # less than two of SGLang's drain ticks: nothing could drain
    assert lifecycle.drain_budget(25) == 25 - lifecycle.KILL_MARGIN_SECONDS
    assert lifecycle.drain_budget(600) == lifecycle.MODAL_EXIT_HANDLER_SECONDS - lifecycle.KILL_MARGIN_SECONDS


def test_release_and_resume_memory_call_sglang_endpoints(fake_server):
    server = fake_server()
    lifecycle.release_memory(server.url)
    assert not lifecycle.is_healthy(server.url)  # released: not serving until resumed
    lifecycle.resume_memory(server.url)
    assert lifecycle.is_healthy(server.url)
    assert [r["path"] for r in server.requests()][:1] == ["/release_memory_occupation"]


def test_memory_endpoint_error_is_reported(fake_server):
    server = fake_server("--memory-status", "400")
    with pytest.raises(ServerFailed, match="HTTP 400: .*memory saver disabled"):
        lifecycle.release_memory(server.url)


def test_server_process_tail_keeps_last_lines(tmp_path):
    proc = ServerProcess(["python3", "-c", "import sys\nfor i in range(100): print('line', i)\nsys.exit(4)"],
                         tail_lines=5)
    assert proc.wait_exit(5) == 4
    assert proc.tail().splitlines() == [f"line {i}" for i in range(95, 100)]
    proc.stop()


def test_container_side_modules_import_neither_modal_nor_local_only_libraries():
    """The lifecycle runs in the SGLang image: no Modal, nothing only the laptop has (tests drive it without Modal)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys\n"
        "import infra.runtime.lifecycle, infra.runtime.weights, infra.runtime.kernels, infra.runtime.deployment, "
        "infra.runtime.sglang_args, infra.runtime.spec, infra.runtime.current\nfrom infra.runtime import schedule\n"
        "from infra.runtime.deployment import Window\n"
        "from infra.runtime.model import RESOLVED\n"
        "w = Window.model_validate(dict(name='w', start='0 9 * * *', end='0 17 * * *', timezone='UTC', "
        "min_containers=1),\n                          context=RESOLVED)  # as a container reads it back\n"
        "assert schedule.boundaries([w])[0].cron == '0 9,17 * * *'  # app definitions call it: no cron library needed\n"
        "bad = sorted(m for m in ('modal', 'pydantic_settings', 'aiohttp', 'huggingface_hub', 'cronsim', 'invoke')\n"
        "             if m in sys.modules)\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
