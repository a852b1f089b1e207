"""One CLI grammar: every task's flags, typed and shown as such; prompts, pipes and dry runs that behave."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from invoke import Collection

import tasks
from infra.runtime.errors import Aborted, ConfigError, Refused
from infra.runtime.remote import ModalRemote
from stages import cli
from stages.common import Context, confirm_or_refuse
from tests.conftest import REPO, deployment

TASKS = Collection.from_module(tasks).tasks


def flags_of(name: str) -> dict[str, object]:
    """--flag -> the parsed Argument of one task, as pyinvoke builds it."""
    return {f"--{arg.name.replace('_', '-').strip('-')}": arg for arg in TASKS[name].get_arguments()}


def test_every_task_takes_the_common_flags():
    for name in TASKS:
        flags = flags_of(name)
        environment = {"--env"} if name != "promote" else {"--from", "--to"}
        assert environment | {"--json", "--set", "--debug"} <= set(flags), name
    changing = ["build", "download", "compile", "deploy", "smoke", "try", "pipeline", "promote", "rollback", "scale",
                "bench", "sglang-flags"]
    assert [name for name in changing if "--dry-run" not in flags_of(name)] == []
    # --force where a stage skips unchanged inputs or a guard refuses.
    assert [n for n in ("build", "download", "compile", "deploy", "pipeline", "try", "rollback", "scale")
            if "--force" not in flags_of(n)] == []


def test_help_shows_types_and_placeholders():
    def help_of(name: str) -> str:
        return subprocess.run([sys.executable, "-m", "invoke", "--help", name], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout

    scale, bench = help_of("scale"), help_of("bench")
    assert "--min=INT" in scale and "--set=KEY=VALUE" in scale and "--env=ENV" in scale
    for shown in ("--concurrency=N[,N...]", "--requests=INT", "--duration=SECONDS", "--compare=FILE|RELEASE",
                  "--top-p=NUMBER", "--output=FILE"):
        assert shown in bench, shown
    assert "STRING" not in scale + bench


def test_numbers_are_parsed_before_the_task_runs():
    done = subprocess.run([sys.executable, "-m", "invoke", "bench", "--url", "http://127.0.0.1:9", "--duration",
                           "soon"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == "error: --duration 'soon': expected a number"


@pytest.mark.parametrize("answer", [EOFError, KeyboardInterrupt])
def test_ctrl_d_or_ctrl_c_at_a_prompt_aborts_and_does_nothing(answer, wire):
    ctx = Context(settings=None, remote=ModalRemote(), interactive=True)

    def confirm(_question):
        raise answer()

    with pytest.raises(Aborted, match=r"^deploying: aborted; nothing changed$"):
        confirm_or_refuse(ctx, "deploying", "Deploy? [y/N] ", confirm)
    assert wire.rpcs() == []


@pytest.mark.parametrize("json", [[], ["--json"]])
def test_output_into_a_closed_pipe_ends_quietly(json):
    """`| true` has exited before plan (a second of imports) writes a byte: every write meets a closed pipe."""
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m invoke plan --env prod {' '.join(json)} | true; "
                                         "echo \"status ${PIPESTATUS[0]}\""], cwd=REPO, capture_output=True, text=True)
    assert done.stdout == f"status {cli.SIGPIPE_EXIT}\n" and done.stderr == ""


def test_dry_runs_are_offline_and_need_no_credentials(cli_env):
    for args in (["rollback", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--to", "v3"],
                 ["promote", "--from", "staging", "--to", "prod", "--recipe", "qwen3-8b-low-latency"],
                 ["bench", "--env", "dev", "--recipe", "qwen3-8b-low-latency", "--concurrency", "1,4"],
                 ["bench", "--url", "http://127.0.0.1:9"], ["scale", "--env", "prod", "--min", "2"],
                 ["pipeline", "--env", "dev", "--recipe", "qwen3-8b-low-latency"]):
        done = cli_env(*args, "--dry-run", "--json")
        assert done.returncode == 0, (args, done.stderr)
        assert {r["status"] for r in json.loads(done.stdout)} == {"dry-run"}, args
        assert cli_env.rpcs() == [], args  # not even a read


def test_a_draft_revision_warning_is_said_once_per_run(cli_env):
    done = cli_env("pipeline", "--env", "dev", "--recipe", "qwen3-8b-low-latency", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert len(re.findall(r"draft model .* revision is unset", done.stderr)) == 1, done.stderr


def test_guards_that_force_overrides(wire):
    ctx = Context(settings=deployment_settings("dev"), remote=ModalRemote(), say=lambda _m: None)
    from stages import rollback, scale, trial

    with pytest.raises(ConfigError, match="forbids warm replicas .*or --force"):
        scale.run(ctx, deployment("dev"), scale.Options(min_containers=1))
    prod = Context(settings=deployment_settings("prod"), remote=ModalRemote(), say=lambda _m: None)
    with pytest.raises(Refused, match="try runs an ephemeral copy in guarded environment 'prod'"):
        trial.run(prod, deployment("prod"))
    from infra.perf.releases import Manifest, Release

    def release(version, smoke):
        return Release(release_id=f"r{version}", kind="deploy", commit="c" * 40, dirty=False, tag=f"git-{version}",
                       deployment=deployment("dev"), version=version, smoke=smoke)

    failed, current = release(1, {"passed": False, "error": "HTTP 500"}), release(2, {"passed": True})
    manifest = Manifest(env="dev", recipe="r", current=current, history=[current, failed])
    with pytest.raises(Refused, match=r"v1 \(git-1\) failed its smoke test \(HTTP 500\); allowed: another version, "
                                      r"or --force"):
        rollback.choose(deployment("dev"), manifest, None)
    assert rollback.choose(deployment("dev"), manifest, None, force=True) is failed
    assert wire.rpcs() == []


def deployment_settings(env: str):
    from infra.control.settings import load_settings

    return load_settings(env)


@pytest.fixture
def cli_env(cli):
    """The CLI with no Modal credentials at all: a dry run must not need them."""
    cli.credentials = False
    return cli


def test_a_file_with_a_byte_order_mark_loads(tmp_path, monkeypatch):
    from infra.control.settings import load_settings

    folder = tmp_path / "environments"
    folder.mkdir()
    (folder / "qa.toml").write_bytes(b"\xef\xbb\xbf" + (REPO / "environments" / "dev.toml").read_bytes())
    monkeypatch.setenv("INFRA_CONFIG_DIR", str(folder))
    assert load_settings("qa").serves


def test_values_in_messages_are_shortened_and_escaped():
    from infra.runtime.secrets import shown

    assert shown("\x1b[31mred") == "'\\x1b[31mred'"
    long = shown("x" * 100_000)
    assert long.endswith("… (100000 characters)") and len(long) < 100
    token = shown("hf_abcdefghijklmnopqrstuvwxyz0123")
    assert "hf_" in token and "abcdefgh" not in token
    with pytest.raises(ConfigError, match=r"^--version '0.5.\*': not an SGLang release"):
        from tools import sglang_tables

        sglang_tables.check_version("0.5.*")


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from infra.perf import bench
    from stages import show

    monkeypatch.setattr(show, "on_a_terminal", lambda: False)
    assert show.progress_bars() is bench.no_progress
    monkeypatch.setattr(show, "on_a_terminal", lambda: True)
    advanced = []
    with show.progress_bars()(4, 16) as advance:
        for _ in range(16):
            advance()
            advanced.append(1)
    assert len(advanced) == 16


def test_plan_on_a_terminal_wraps_long_values_and_marks_warnings():
    from rich.console import Console

    from infra.control import plan
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings
    from stages import show

    settings = load_settings("prod")
    plans = [plan.plan_for(settings, resolve(settings, "qwen3-8b-low-latency"))]
    console = Console(width=100, force_terminal=True, record=True)
    show.plan(plans, console)
    text = console.export_text(clear=False)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100  # the 600-character launch command wraps
    assert "--speculative-num-draft-tokens 32" in text and "WARNING" in text
    styled = console.export_html()
    assert "unpinned: draft model" in styled and "font-weight: bold" in styled


def test_with_a_schedule_the_standing_cost_is_the_schedules():
    from infra.control import plan
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings, parse_overrides

    window = ('scaling.schedule=[{name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI", '
              'timezone="America/New_York", min_containers=1}]')
    settings = load_settings("prod", overrides=parse_overrides(["scaling.min_containers=0", window]))
    text = plan.render([plan.plan_for(settings, resolve(settings, "qwen3-8b-low-latency"))])
    (standing,) = [line for line in text.splitlines() if line.startswith("Standing cost")]
    assert standing.startswith("Standing cost  on the schedule: 440 GPU-hours and $3,162.74 per 30 days")
    assert "outside its windows 0 warm replica(s)" in standing


def test_results_tables_are_tables_on_a_terminal():
    from rich.console import Console

    from infra.perf import bench
    from stages import show

    text = "status of something\n  ledger:\n" + "\n".join(
        "    " + line for line in bench._table(["release", "how it came", "$/1M out"],
                                               [["r1", "promote from staging, gate passed", "$7.59"],
                                                ["r2", "deploy", "-"]]).splitlines()) + "\nwarning: a cache miss"
    console = Console(width=40, force_terminal=True, record=True)
    show.lines(text, console)
    shown = console.export_text(clear=False)
    assert max(len(line.rstrip()) for line in shown.splitlines()) <= 40
    assert "promote from" in shown and "$7.59" in shown and "----" not in shown  # drawn and wrapped, not dashes
    assert "bold" in console.export_html() or "font-weight" in console.export_html()  # the warning stands out


def test_a_stray_variable_is_warned_about_once_even_where_two_environments_load():
    from stages import runner
    from tests.conftest import run_in_process

    runner._WARNED.clear()
    done = run_in_process(["promote", "--from", "staging", "--to", "prod", "--recipe", "qwen3-8b-low-latency",
                           "--dry-run"], {"INFRA_SCALNG__MIN_CONTAINERS": "1"}, REPO)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("INFRA_SCALNG__MIN_CONTAINERS matches no setting") == 1
