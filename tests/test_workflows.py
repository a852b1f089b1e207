"""The CI/CD jobs users run are real: actionlint (with shellcheck) passes, and every `invoke`
command they run exists with exactly those flags."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from invoke import Collection
from invoke.parser import ParserContext

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def invoke_commands(script: str) -> list[list[str]]:
    commands = []
    for line in script.splitlines():
        line = line.strip()
        if re.search(r"(^|/)invoke\s", line):
            tokens = shlex.split(line)
            start = next(i for i, t in enumerate(tokens) if t.endswith("invoke"))
            commands.append(tokens[start + 1 :])
    return commands


def all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for script in run_scripts(load(path.name)):
            found += [(path.name, cmd) for cmd in invoke_commands(script)]
    return found


def test_actionlint_with_shellcheck_passes():
    actionlint = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    assert actionlint and shellcheck, "install the test extras: pip install -e '.[test]'"
    done = subprocess.run([actionlint, "-no-color", "-oneline", "-shellcheck", shellcheck], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check can fail: a job that needs a job that does not exist."""
    broken = tmp_path / ".github" / "workflows"
    broken.mkdir(parents=True)
    (broken / "bad.yml").write_text("on: push\njobs:\n  a:\n    needs: missing\n    runs-on: ubuntu-latest\n    "
                                    "steps:\n      - run: echo hi\n")
    actionlint = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    done = subprocess.run([actionlint, "-no-color", "-shellcheck=", str(broken / "bad.yml")], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "missing" in done.stdout


def problems(invocations: list[tuple[str, list[str]]]) -> list[str]:
    """Each invoke command a workflow runs must name a task of tasks.py and only flags that task has."""
    sys.path.insert(0, str(REPO))
    import tasks

    collection = Collection.from_module(tasks)
    found = []
    for workflow, argv in invocations:
        name = argv[0]
        if name not in collection.task_names:
            found.append(f"{workflow}: no task {name!r}")
            continue
        parser = ParserContext(name=name, args=collection[name].get_arguments())
        found += [f"{workflow}: `invoke {name}` has no flag {t}" for t in argv[1:] if t.startswith("-")
                  and t.split("=")[0] not in parser.flags]
    return found


def test_every_invoke_command_exists_with_those_flags():
    invocations = all_invocations()
    assert len(invocations) >= 5  # plan (ci); pipeline and status (staging); promote and status (prod)
    assert problems(invocations) == []


def test_the_flag_check_can_fail():
    assert problems([("x.yml", ["plan", "--environment", "prod"]), ("y.yml", ["deploy-all", "--env", "prod"])]) == [
        "x.yml: `invoke plan` has no flag --environment",
        "y.yml: no task 'deploy-all'",
    ]


def test_ci_runs_the_readme_commands_and_plans_every_environment():
    ci = load("ci.yml")
    assert set(ci[True]) == {"pull_request", "push"}  # YAML 1.1 reads `on` as True
    assert ci[True]["push"] == {"branches-ignore": ["main"]}  # main is tested once, by deploy-staging.yml
    scripts = "\n".join(run_scripts(ci))
    assert "pip install -e '.[test]'" in scripts and ".venv/bin/python -m pytest" in scripts
    assert 'invoke plan --env "$env" --json' in scripts and "for env in dev staging prod" in scripts
    upload = [s for s in ci["jobs"]["test-and-plan"]["steps"]
              if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload and upload[0]["with"]["path"] == "plans/"
    readme = (REPO / "README.md").read_text()
    assert "python -m pytest" in readme and "pip install -e '.[test]'" in readme


def test_every_workflow_caches_pip_on_the_project_file():
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in load(path.name)["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/setup-python"):
                    assert step["with"]["cache"] == "pip", path.name
                    assert step["with"]["cache-dependency-path"] == "pyproject.toml", path.name


def test_the_staging_job_has_time_for_a_first_download_and_compile():
    from infra.control.plan import first_pipeline_seconds
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings

    staging = load_settings("staging")
    needed = first_pipeline_seconds([resolve(staging, name) for name in staging.serves]) / 60
    limit = load("deploy-staging.yml")["jobs"]["deploy"]["timeout-minutes"]
    assert needed <= limit <= needed + 30, (needed, limit)  # enough for a cold first run, not hours more


def test_staging_deploys_on_main_without_overlap():
    wf = load("deploy-staging.yml")
    assert wf[True]["push"] == {"branches": ["main"]} and set(wf[True]) == {"push", "workflow_dispatch"}
    assert wf["concurrency"] == {"group": "deploy-staging", "cancel-in-progress": False}
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    assert deploy["env"]["MODAL_TOKEN_ID"] == "${{ secrets.MODAL_TOKEN_ID }}"
    assert deploy["env"]["MODAL_TOKEN_SECRET"] == "${{ secrets.MODAL_TOKEN_SECRET }}"
    assert ["pipeline", "--env", "staging", "--yes"] in [cmd for _, cmd in all_invocations()]


def test_prod_promotion_is_manual_and_reviewed():
    wf = load("promote-prod.yml")
    assert list(wf[True]) == ["workflow_dispatch"]
    job = wf["jobs"]["promote"]
    assert job["environment"] == "production"
    commands = [cmd for name, cmd in all_invocations() if name == "promote-prod.yml"]
    assert ["promote", "--from", "staging", "--to", "prod", "--yes", "--from-manifest", "${extra[@]}"] in commands
    # Inputs reach the script through the environment, never interpolated into it.
    scripts = "\n".join(run_scripts(wf))
    assert "${{" not in scripts


def test_prod_promotion_can_skip_the_gate_only_with_a_reason_and_shows_the_ledger():
    wf = load("promote-prod.yml")
    inputs = wf[True]["workflow_dispatch"]["inputs"]
    assert inputs["skip_gate"] == {"description": inputs["skip_gate"]["description"], "type": "boolean",
                                   "default": False}
    assert inputs["reason"]["type"] == "string" and inputs["record_baseline"]["type"] == "boolean"
    env = wf["jobs"]["promote"]["env"]
    assert (env["SKIP_GATE"], env["SKIP_REASON"]) == ("${{ inputs.skip_gate }}", "${{ inputs.reason }}")
    scripts = "\n".join(run_scripts(wf))
    # The extra flags the script adds exist on `invoke promote` (the reason travels with --skip-gate, always).
    extras = re.findall(r"extra\+=\((.*)\)", scripts)
    assert extras == ['--recipe "$RECIPE"', '--skip-gate --reason "$SKIP_REASON"', "--record-baseline"]
    assert problems([("promote-prod.yml", ["promote", *shlex.split(" ".join(extras))])]) == []
    # The job summary gets prod's status and ledger after the gate's table (which `invoke promote` writes).
    (status,) = [s for job in wf["jobs"].values() for s in job["steps"]
                 if "invoke status --env prod" in s.get("run", "")]
    assert status["if"] == "always()" and status["shell"] == "bash" and '>> "$GITHUB_STEP_SUMMARY"' in status["run"]


def test_prod_promotion_bakes_unless_a_reason_turns_it_off_within_the_jobs_limit():
    """Issue 31 item 1: the bake runs in this job; turning it off is an input with its reason, passed as settings
    variables (they reach the promotion that --from-manifest runs from staging's commit), recorded in the manifest."""
    from infra.control import bake_policy

    wf = load("promote-prod.yml")
    inputs = wf[True]["workflow_dispatch"]["inputs"]
    assert inputs["bake_off_reason"] | {"description": None} == {"description": None, "type": "string", "default": ""}
    assert wf["jobs"]["promote"]["env"]["BAKE_OFF_REASON"] == "${{ inputs.bake_off_reason }}"
    scripts = "\n".join(run_scripts(wf))
    assert ('if [ -n "$BAKE_OFF_REASON" ]; then\n  export INFRA_RELEASE__BAKE_MINUTES=0 '
            'INFRA_RELEASE__BAKE_OFF_REASON="$BAKE_OFF_REASON"\nfi') in scripts
    assert bake_policy.job_limit_minutes() == wf["jobs"]["promote"]["timeout-minutes"]  # what a bake is checked against


def test_staging_runs_the_gpu_acceptance_suite_after_the_pipeline_only_when_asked():
    """Issue 32: `invoke gpu-test` after the pipeline, at the shape a hand-run workflow names; never on a push."""
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings
    from infra.runtime import acceptance, spec

    wf = load("deploy-staging.yml")
    choice = wf[True]["workflow_dispatch"]["inputs"]["gpu_test"]
    assert choice["type"] == "choice" and choice["default"] == "none"
    assert choice["options"] == ["none", *acceptance.SHAPES]
    job = wf["jobs"]["gpu-test"]
    assert job["needs"] == "deploy" and job["environment"] == "staging"
    assert job["if"] == "github.event_name == 'workflow_dispatch' && inputs.gpu_test != 'none'"
    assert job["env"]["SHAPE"] == "${{ inputs.gpu_test }}"  # reaches the script through the environment
    scripts = "\n".join(step["run"] for step in job["steps"] if "run" in step)
    assert "${{" not in scripts
    commands = [cmd for name, cmd in all_invocations() if name == "deploy-staging.yml"]
    assert ["gpu-test", "--env", "staging", "--shape", "$SHAPE"] in commands
    staging = load_settings("staging")
    needed = sum(spec.gpu_test_timeout(resolve(staging, name)) for name in staging.serves) / 60
    assert needed <= job["timeout-minutes"] <= needed + 30, (needed, job["timeout-minutes"])
def test_prod_is_checked_hourly_and_a_failing_check_fails_the_job_with_a_summary():
    wf = load("prod-check.yml")
    assert [s["cron"] for s in wf[True]["schedule"]] == ["17 * * * *"] and "workflow_dispatch" in wf[True]
    steps = wf["jobs"]["check"]["steps"]
    (check,) = [s for s in steps if "invoke check --env prod" in s.get("run", "")]
    assert check["shell"] == "bash" and "tee check.txt" in check["run"]  # bash's -o pipefail keeps check's status
    (summary,) = [s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert summary["if"] == "always()" and "cat check.txt" in summary["run"]
    assert ["check", "--env", "prod"] in [cmd[:3] for name, cmd in all_invocations() if name == "prod-check.yml"]
    assert "${{" not in "\n".join(run_scripts(wf))  # values reach the scripts through the environment
