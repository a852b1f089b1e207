"""The in-container lifecycle against real processes: the stand-in `sglang.launch_server`
started with the real command line, a real HTTP server, real signals, the real process table."""

from __future__ import annotations

import json
import time

import pytest

from infra import lifecycle, sglang_args
from infra.lifecycle import Readiness, ServerFailed, ServerProcess
from tests.conftest import (
    deployment,
    free_port,
    process_state,
    processes_mentioning,
    reap_children,
    standin_env,
    wait_for,
)


def launch(tmp_path, recipe="qwen3-8b-low-latency", timeout=20.0, poll=0.2, **fake):
    d = deployment(recipe=recipe, port=free_port())
    record = tmp_path / "requests.jsonl"
    argv_file = tmp_path / "argv.json"
    env = standin_env(record=str(record), **fake)
    env["FAKE_SGLANG_ARGV"] = str(argv_file)
    readiness = Readiness(timeout=timeout, poll_interval=poll, warmup=d.recipe.warmup, model=d.recipe.model)
    base = f"http://127.0.0.1:{d.server.port}"
    return d, record, argv_file, lambda: lifecycle.start_and_warm(sglang_args.launch_command(d), base, readiness, env=env)


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
        assert all(c["body"]["max_tokens"] == 16 for c in chats)
        health = [r for r in requests_of(record) if r["path"] == "/health"]
        assert len(health) >= lifecycle.HEALTHY_IN_A_ROW
    finally:
        code = server.stop(grace=5)
    assert code is not None
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
    assert chats[0]["body"]["max_tokens"] == 16


def test_exit_during_startup_fails_within_one_poll_interval_with_code_and_log_tail(tmp_path):
    _, _, _, start = launch(
        tmp_path, poll=5.0, timeout=60, listen_after=30, exit_after=0.5, exit_code=7,
        log_lines=["Loading safetensors checkpoint shards", "CUDA error: out of memory"],
    )
    began = time.monotonic()
    with pytest.raises(ServerFailed) as err:
        start()
    elapsed = time.monotonic() - began
    assert elapsed < 5.0, elapsed  # the poll interval is 5 s; we must not sleep through the exit
    message = str(err.value)
    assert "exited with code 7" in message
    assert "CUDA error: out of memory" in message
    assert "simulated crash" in message


def test_never_healthy_fails_at_the_readiness_timeout_with_log_tail(tmp_path, subreaper):
    d, _, _, start = launch(tmp_path, timeout=2.0, poll=0.5, never_healthy=True, log_lines=["stuck capturing CUDA graphs"])
    began = time.monotonic()
    with pytest.raises(ServerFailed) as err:
        start()
    elapsed = time.monotonic() - began
    assert 2.0 <= elapsed < 4.5, elapsed
    assert "not healthy within 2 s" in str(err.value)
    assert "stuck capturing CUDA graphs" in str(err.value)
    reap_children()
    assert processes_mentioning(f"--port {d.server.port}") == []  # the failed server was stopped, not leaked


def test_flapping_health_keeps_waiting_until_stable(tmp_path):
    _, record, _, start = launch(tmp_path, poll=0.2, flap=6)
    server = start()
    server.stop()
    entries = requests_of(record)
    health = [i for i, r in enumerate(entries) if r["path"] == "/health"]
    first_chat = next(i for i, r in enumerate(entries) if r["path"] == "/v1/chat/completions")
    # Checks 1..6 alternate; the first healthy answer (check 1) must not have been enough.
    assert len([i for i in health if i < first_chat]) >= 6 + lifecycle.HEALTHY_IN_A_ROW - 1


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
    assert 1.0 <= elapsed < 3.0, elapsed
    assert process_state(server.pid) is None  # reaped: no zombie
    wait_for(lambda: (reap_children(), process_state(child) is None)[1], timeout=3)
    assert process_state(child) is None  # the grandchild went with its group: no orphan
    assert processes_mentioning(f"--port {d.server.port}") == []


def test_graceful_stop_uses_sigterm(tmp_path):
    _, _, _, start = launch(tmp_path)
    server = start()
    began = time.monotonic()
    code = server.stop(grace=5.0)
    assert code == -15
    assert time.monotonic() - began < 2.0


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
    proc = ServerProcess(["python3", "-c", "import sys\nfor i in range(100): print('line', i)\nsys.exit(4)"], tail_lines=5)
    assert proc.wait_exit(5) == 4
    assert proc.tail().splitlines() == [f"line {i}" for i in range(95, 100)]
    proc.stop()


def test_container_side_modules_import_neither_modal_nor_local_only_libraries():
    """The lifecycle runs in the SGLang image: standard library only (tests drive it without Modal)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys\n"
        "import infra.lifecycle, infra.weights, infra.kernels, infra.deployment, infra.sglang_args, infra.spec, infra.current\n"
        "from infra import schedule\n"
        "w = schedule.Window('w', '0 9 * * *', '0 17 * * *', 'UTC', 1)\n"
        "assert schedule.boundaries([w])[0].cron == '0 9,17 * * *'  # app definitions call it: no cron library needed\n"
        "bad = sorted(m for m in ('modal', 'pydantic', 'pydantic_settings', 'aiohttp', 'huggingface_hub', 'requests',\n"
        "                         'cronsim') if m in sys.modules)\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
