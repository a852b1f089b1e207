"""Issue 13: every local check before the first remote call, promotion in one direction, one command line.

Run as a user runs them (`python -m invoke ...` in a clean project checkout) with the real Modal client in front of
the fake control plane, whose record of RPCs proves what reached Modal."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO


def dirty(cli) -> None:
    staging = cli.project / "environments" / "staging.toml"
    staging.write_text(staging.read_text() + "# an uncommitted edit\n")


@pytest.mark.parametrize("task", [["pipeline", "--env", "prod", "--yes"], ["deploy", "--env", "prod", "--yes"]])
def test_a_prod_pipeline_or_deploy_from_a_dirty_tree_makes_no_remote_call_at_all(cli, task):
    dirty(cli)
    cli.credentials = False  # also without credentials: the dirty tree is the first failing check
    done = cli(*task)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: refusing to deploy to guarded environment 'prod' from a dirty working tree "
        "(commit or stash your changes, or pass --force)")
    assert cli.rpcs() == []


def test_a_prod_pipeline_without_confirmation_or_credentials_stops_before_build(cli):
    done = cli("pipeline", "--env", "prod", "--recipe", "qwen3.6-35b-vlm")  # no terminal, no --yes
    assert "needs confirmation: no terminal, so pass --yes" in done.stderr and cli.rpcs() == []
    cli.credentials = False
    done = cli("pipeline", "--env", "prod", "--recipe", "qwen3.6-35b-vlm", "--yes")
    assert "Modal credentials missing" in done.stderr and cli.rpcs() == []


@pytest.mark.parametrize("source, target, expected", [
    ("prod", "staging", "error: promote --from prod --to staging: staging takes releases only from no environment "
                        "(release.promote_from in environments/staging.toml); allowed: none: staging is deployed by "
                        "`invoke pipeline`; nothing changed"),
    ("dev", "prod", "error: promote --from dev --to prod: prod takes releases only from staging (release.promote_from "
                    "in environments/prod.toml); allowed: --from staging --to prod; nothing changed"),
])
def test_promotion_has_a_direction_refused_offline(cli, source, target, expected):
    cli.credentials = False  # offline: refused before anything needs Modal
    done = cli("promote", "--from", source, "--to", target, "--yes")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == expected
    assert cli.rpcs() == []


def test_no_short_flag_means_two_things(cli):
    """Long flags only: `-d` was --debug on plan, --dry-run on stages and --duration on bench."""
    meanings: dict[str, set[str]] = {}
    for task in ("plan", "build", "download", "compile", "deploy", "smoke", "try", "pipeline", "promote", "rollback",
                 "status", "scale", "bench", "sglang-flags"):
        for line in cli("--help", task).stdout.splitlines():
            if match := re.match(r"\s+-(\w), --([\w-]+)", line):
                meanings.setdefault(match.group(1), set()).add(match.group(2))
    assert {flag: names for flag, names in meanings.items() if len(names) > 1} == {}


def test_try_takes_its_environment_from_infra_env(cli):
    done = cli("try", "--recipe", "qwen3-8b-low-latency", "--dry-run", INFRA_ENV="staging")
    assert done.returncode == 0 and "try (dry run, staging/qwen3-8b-low-latency)" in done.stdout


def test_every_dry_run_line_names_the_environment_and_the_recipe(cli):
    done = cli("scale", "--env", "prod", "--min", "2", "--dry-run")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0] != lines[1]
    assert lines[0].startswith("scale (dry run, prod/qwen3-8b-low-latency): would set min_containers to 2")
    assert lines[1].startswith("scale (dry run, prod/qwen3.6-35b-vlm): would set min_containers to 2")


def test_scale_without_min_says_what_is_missing_and_debug_drops_the_hint(cli):
    assert cli("scale", "--env", "prod").stderr.strip() == (
        "error: --min is missing: give the number of warm replicas to keep, e.g. --min 2")
    cli.wire.fail("ImageGetOrCreate", "boom")
    assert "(run with --debug for the traceback)" in cli("build", "--env", "dev", "--recipe", "qwen3.6-35b-vlm").stderr
    debugged = cli("build", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--debug").stderr
    assert "Traceback" in debugged and "run with --debug" not in debugged


def test_json_prints_the_machine_readable_result_on_every_task(cli, fake_server, tmp_path):
    server = fake_server("--tokens", "3")
    done = cli("bench", "--url", server.url, "--concurrency", "1", "--requests", "1", "--max-tokens", "2", "--json",
               "--output", str(tmp_path / "report.json"))
    [result] = json.loads(done.stdout)
    assert result["stage"] == "bench" and result["detail"]["levels"][0]["concurrency"] == 1
    assert json.loads((tmp_path / "report.json").read_text())["schema"] == 1
    [planned] = json.loads(cli("build", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--dry-run", "--json").stdout)
    assert planned["status"] == "dry-run"


def test_plan_counts_a_token_in_the_modal_config_file_as_set(cli, tmp_path):
    config = tmp_path / "modal.toml"
    config.write_text('[default]\ntoken_id = "ak-abcdefghijklmnop0123"\ntoken_secret = '
                      '"as-abcdefghijklmnop0123"\nactive = true\n')
    cli.credentials = False  # none in the environment: the one in the file is the one found
    out = cli("plan", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", MODAL_CONFIG_PATH=str(config)).stdout
    assert "MODAL_TOKEN_ID ak-…(masked) (from the Modal config file)" in out
    assert "abcdefghijklmnop" not in out


def test_bench_checks_its_inputs_before_any_request(cli):
    for args, expected in (
        (["--url", "127.0.0.1:8000"], "--url must be an http:// or https:// address"),
        (["--url", "http://127.0.0.1:9", "--output", "/no/such/folder/r.json"],
         "folder /no/such/folder does not exist"),
    ):
        done = cli("bench", *args, timeout=120)  # a hang guard: the refusal itself comes before any request
        assert done.returncode == 1 and expected in done.stderr


def test_the_docs_name_every_task(cli):
    """Each task is documented: named as `invoke <task>` on the tasks page or its own page under docs/."""
    readme = "\n".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")]
                       if p.name != "errors.md")
    for task in re.findall(r"^  (\S+) ", cli("--list").stdout, re.M):
        assert f"invoke {task}" in readme, task


# ---------------------------------------------------------------------------- issue 30: the order of the checks


@pytest.fixture
def asked_then_refused(wire, monkeypatch):
    """Run a guarded action on a terminal without credentials; the questions it asked before it failed."""
    from infra.control.settings import load_settings
    from infra.runtime.remote import MissingCredentials, ModalRemote
    from stages.common import Context
    from tests.conftest import project_copy

    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.delenv("MODAL_TOKEN_SECRET")

    def run_it(tmp_path, run) -> list[str]:
        asked: list[str] = []
        ctx = Context(settings=load_settings("prod", "qwen3-8b-low-latency"), remote=ModalRemote(), interactive=True,
                      repo=project_copy(tmp_path), say=lambda m: None)
        with pytest.raises(MissingCredentials):
            run(ctx, lambda question: asked.append(question) or "y")
        assert wire.rpcs() == []
        return asked

    return run_it


def test_a_guarded_deploy_checks_credentials_before_it_asks(tmp_path, asked_then_refused):
    """Git state, settings, credentials, then the question: answering `y` is never followed by "credentials missing"."""
    from infra.control.resolve import resolve
    from stages import deploy

    assert asked_then_refused(tmp_path, lambda ctx, confirm: deploy.run(
        ctx, resolve(ctx.settings, "qwen3-8b-low-latency"), confirm=confirm)) == []


def test_a_guarded_rollback_and_promotion_check_credentials_before_they_ask(tmp_path, asked_then_refused):
    import dataclasses

    from infra.control.resolve import resolve
    from infra.control.settings import load_settings
    from stages import promote, rollback

    assert asked_then_refused(tmp_path, lambda ctx, confirm: rollback.run(
        ctx, resolve(ctx.settings, "qwen3-8b-low-latency"), confirm=confirm)) == []
    assert asked_then_refused(tmp_path / "p", lambda ctx, confirm: promote.run(
        dataclasses.replace(ctx, settings=load_settings("staging")), ctx,
        promote.Options("qwen3-8b-low-latency"), confirm=confirm)) == []


def test_compile_without_credentials_reaches_nothing_before_saying_so(cli):
    """The unpinned draft revision is looked up on the weights Volume: only once credentials are known to exist."""
    cli.credentials = False
    done = cli("compile", "--env", "dev", "--recipe", "qwen3-8b-low-latency")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("error: Modal credentials missing")
    assert cli.rpcs() == []


@pytest.mark.parametrize("args, expected, named", [
    (["status", "--dry-run"], "error: invoke status: no flag '--dry-run' (status changes nothing, so there is nothing "
                              "to dry-run); allowed: ", ["--cost", "--env", "--recipe", "--since", "--debug"]),
    (["plan", "--jsn"], "error: invoke plan: no flag '--jsn' (did you mean --json?); allowed: ", ["--env", "--json"]),
    (["deplyo"], "error: no task named 'deplyo' (did you mean 'deploy'?); `invoke --list` shows them: ",
     ["bench", "deploy", "plan", "status"]),
])
def test_a_flag_a_task_lacks_is_one_line_saying_why(args, expected, named):
    """`invoke status --dry-run` got pyinvoke's raw "No idea what '--dry-run' is!"."""
    from tests.conftest import run_in_process

    done = run_in_process(args, {}, REPO)
    assert (done.returncode, done.stdout, done.stderr.count("\n")) == (1, "", 1)
    assert done.stderr.startswith(expected), done.stderr
    allowed = done.stderr.strip().removeprefix(expected).split(", ")
    assert set(named) <= set(allowed), allowed


def test_every_task_answers_every_grammar_flag_in_one_line():
    """Each task either takes --env/--recipe/--json/--set/--dry-run/--force/--yes or says in one line why not."""
    from invoke import Collection

    import tasks
    from tests.conftest import run_in_process

    for task in Collection.from_module(tasks).task_names:
        for flag in ("--dry-run", "--force", "--yes"):
            done = run_in_process([task, flag, "--help"], {}, REPO)
            assert done.returncode == 0 or (done.stderr.count("\n") == 1 and done.stderr.startswith(
                f"error: invoke {task}: no flag '{flag}'")), (task, flag, done.stderr)


def test_a_prod_deploy_dry_run_refuses_an_unpinned_draft_as_prod_refuses_main(cli):
    """Issue 30: prod refused draft_revision = "main" but its dry run said it would deploy an unset one."""
    done = cli("deploy", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--dry-run")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip() == (
        "error: environment 'prod' requires pinned revisions (release.require_pinned_revisions): draft model "
        "Tengyunw/qwen3_8b_eagle3 revision is unset (follows the Hub's main branch), and no download on this machine "
        "resolved it (a dry run reads no Volume); allowed: a 40-hex commit in "
        'recipes."qwen3-8b-low-latency".draft_revision, or run `invoke download --env prod --recipe '
        "qwen3-8b-low-latency` first")
    pinned = cli("deploy", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--dry-run",
                 "--set", "recipes.qwen3-8b-low-latency.draft_revision=" + "ab" * 20)
    assert pinned.returncode == 0 and "would deploy sglang-qwen3-8b-low-latency" in pinned.stdout
    # A pipeline's download stage pins it before its deploy: its dry run is not refused.
    flow = cli("pipeline", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--dry-run", "--yes")
    assert flow.returncode == 0 and "deploy (dry run, prod/qwen3-8b-low-latency)" in flow.stdout
    assert cli.rpcs() == []


def test_a_command_run_from_a_deleted_directory_is_one_line(tmp_path):
    """Issue 30: from a directory deleted under the shell, a task ended in FileNotFoundError's traceback. (Without
    --search-root, pyinvoke's own loader stops first, at os.getcwd(), before any task of ours is loaded.)"""
    import subprocess
    import sys

    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -m invoke -r "{REPO}" plan --env dev'
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in __import__("os").environ.items() if not k.startswith("INFRA_")})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("error: the current directory no longer exists (deleted, or replaced by a new one of the "
                           f"same name); allowed: a directory that exists: `cd {REPO}` and run it again\n")
