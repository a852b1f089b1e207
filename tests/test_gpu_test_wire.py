"""`invoke gpu-test` at the wire (issue 32 item 1): the real `modal` client against the fake control plane.

The Function it creates must be the recipe's: its image (the compile job's, from the recipe's SGLang image, with
pytest and the suite on top), GPU type and count, timeout and Volumes, read back from the definition the client
sent. Inside the fake's function execution real pytest runs a small suite (tests/gpu's layout, reading the shape
from GPU_SUITE_SHAPE as tests/gpu does) and its JUnit report is parsed: a failing test fails the command and is
named; a passing run is shown as a table, written to $GITHUB_STEP_SUMMARY and recorded on the current release.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from modal_proto import api_pb2

from infra.perf.releases import Release, ReleaseStore
from infra.runtime import acceptance, spec
from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from infra.runtime.remote import ModalRemote
from stages import gpu_test as stage
from stages.common import Context
from tests.conftest import REPO, deployment

RECIPE = "qwen3-8b-low-latency"
SUITE = {
    "test_server.py": '''
import json, os

def test_the_server_answers():
    if path := os.environ.get("GPU_SUITE_REPORT"):
        chosen = {"shape": os.environ["GPU_SUITE_SHAPE"], "recipe": os.environ["GPU_SUITE_RECIPE"]}
        open(path, "w").write(json.dumps(chosen))
''',
    "test_speculative.py": '''
import os, pytest

@pytest.mark.skipif(os.environ.get("GPU_SUITE_SHAPE") == "tiny", reason="the real shape only")
def test_drafts_are_accepted():
    accepted = 1.02
    assert accepted > 2.0, f"{accepted} tokens accepted per verify step, floor 2.0"
''',
}


@pytest.fixture
def suite(tmp_path) -> Path:
    """A project whose tests/gpu holds SUITE: passes at tiny, fails at real."""
    project = tmp_path / "suite-project"
    (project / "tests" / "gpu").mkdir(parents=True)
    (project / "tests" / "__init__.py").write_text("")
    (project / "tests" / "gpu" / "__init__.py").write_text("")
    for name, text in SUITE.items():
        (project / "tests" / "gpu" / name).write_text(text)
    return project


@pytest.fixture
def runner(wire, suite):
    """infra/runtime/jobs.py `gpu_test`, run where the fake runs Functions: real pytest on the suite."""

    def run(job) -> dict:
        d = Deployment.from_json(job.environ[DEPLOYMENT_VARIABLE])
        return acceptance.run_suite(job.args[0], d.recipe.name, project=suite, env=dict(job.environ) | {
            "PATH": os.environ["PATH"]}).model_dump()

    wire.runners["gpu_test"] = run
    return run


def definition(wire, tag: str) -> api_pb2.Function:
    def read():
        found = [f for f in wire.state.functions.values() if f.tag == tag and f.definition is not None]
        return found[-1].definition

    return wire._on_loop(read)


def volumes(wire, f: api_pb2.Function) -> dict[str, tuple[str, bool]]:
    return wire._on_loop(lambda: {m.mount_path: (wire.state.volume(m.volume_id).name, m.read_only)
                                  for m in f.volume_mounts})


def dockerfile(wire, f: api_pb2.Function) -> list[str]:
    """The image's build commands, every layer from the base up."""
    def read():
        commands, image = [], wire.state.images[f.image_id]
        while image is not None:
            commands = list(image.definition.dockerfile_commands) + commands
            base = [b.image_id for b in image.definition.base_images]
            image = wire.state.images.get(base[0]) if base else None
        return commands

    return wire._on_loop(read)


def mounted(wire, f: api_pb2.Function) -> set[str]:
    return wire._on_loop(lambda: {path for m in f.mount_ids for path in wire.state.mounts[m].files})


def test_the_function_is_the_recipes_image_gpu_timeout_and_volumes(wire, runner):
    d = deployment("dev", RECIPE)
    out = ModalRemote().run_gpu_test(d, "tiny")
    assert acceptance.SuiteResult.model_validate(out).passed
    f, compiled = definition(wire, "gpu_test"), definition(wire, "compile_kernels")
    gpu = f.resources.gpu_config
    assert (gpu.gpu_type, gpu.count) == (compiled.resources.gpu_config.gpu_type, compiled.resources.gpu_config.count)
    assert (gpu.gpu_type, gpu.count) == ("H100!", 2) and d.recipe.gpu == "H100!:2"  # the type and the count
    assert f.timeout_secs == spec.gpu_test_timeout(d) > spec.compile_timeout(d)
    assert volumes(wire, f) == {HF_CACHE_PATH: (d.caches.weights_volume, True),
                                KERNELS_PATH: (d.caches.kernels_volume, True)}
    image, base = dockerfile(wire, f), dockerfile(wire, compiled)
    assert image[: len(base)] == base and f"FROM {d.recipe.sglang_image}" in base  # the compile job's image, then:
    assert any("pytest==9.2.0" in line for line in image[len(base):])
    files = mounted(wire, f)
    assert {"/root/project/tests/gpu/test_real_sglang.py", "/root/project/tests/gpu/real_shape.py",
            "/root/project/infra/runtime/acceptance.py", "/root/project/environments/dev.toml"} <= files
    assert not any("/benchmarks/results/" in p or p.endswith(".pyc") for p in files)
    assert wire.jobs[-1].args == ("tiny",) and wire.app_states("dev", f"{d.app_name}-jobs")[-1] == "APP_STATE_STOPPED"


def test_a_failing_test_fails_the_command_and_is_named(wire, wire_cli, runner):
    done = wire_cli("gpu-test", "--env", "dev", "--recipe", RECIPE, "--shape", "real")
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("error: gpu-test failed: 1 failed: tests/gpu/test_speculative.py::test_drafts_are_accepted "
            "(AssertionError: 1.02 tokens accepted per verify step, floor 2.0") in done.stderr
    assert re.search(r"tests/gpu/test_server.py::test_the_server_answers +passed", done.stderr)  # the table first
    # docs/acceptance.md shows this failure: its block marked `produced by tests/test_gpu_test_wire.py: failing test`.
    from tests.test_doc_examples import blocks
    from tests.test_docs import shows_in_order

    mark = "tests/test_gpu_test_wire.py: failing test"
    (shown,) = [b[3] for b in blocks(REPO / "docs" / "acceptance.md") if b[2] == mark]
    assert shows_in_order(shown, done.stderr) == [], "docs/acceptance.md's failing-test example drifted"
    assert wire.jobs[-1].args == ("real",)


def test_a_passing_run_is_a_table_a_job_summary_and_a_record_on_the_release(wire, runner, tmp_path, monkeypatch):
    d = deployment("dev", RECIPE)
    remote = ModalRemote()
    store = ReleaseStore(remote)
    release = Release(release_id="r1", kind="deploy", commit="abc", dirty=False, tag="git-abc", deployment=d)
    store.record(d, store.read(d), release)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv(stage.SUMMARY_VARIABLE, str(summary))
    from infra.control.settings import load_settings

    ctx = Context(settings=load_settings("dev", RECIPE), remote=remote, say=lambda _m: None)
    outcome = stage.run(ctx, d, stage.Options(shape="tiny"))
    assert outcome.status == "ran" and "recorded on release r1" in outcome.message
    assert re.search(r"tests/gpu/test_speculative.py::test_drafts_are_accepted +skipped +[0-9.]+ +the real shape only",
                     outcome.message)
    assert outcome.detail["report"] == {"shape": "tiny", "recipe": RECIPE}  # GPU_SUITE_REPORT, from inside the suite
    kept = store.read(d).current.acceptance["tiny"]
    assert kept.passed is True and [c.outcome for c in kept.cases] == ["passed", "skipped"]
    assert kept.report == {"shape": "tiny", "recipe": RECIPE}
    assert "### GPU acceptance: dev/qwen3-8b-low-latency, shape tiny: passed" in summary.read_text()
    assert "| `tests/gpu/test_server.py::test_the_server_answers` | passed |" in summary.read_text()
    # A release that runs something else keeps no record of what was not tested on it.
    other = deployment("dev", RECIPE).with_recipe(d.recipe.model_copy(update={"model_revision": "f" * 40}))
    tested = acceptance.SuiteResult.model_validate({k: v for k, v in outcome.detail.items()
                                                    if k in acceptance.SuiteResult.model_fields})
    assert "not recorded on release r1" in stage.record_on_release(ctx, other, tested)


def test_the_dry_run_says_what_it_would_run_and_costs_offline():
    from infra.control.settings import load_settings

    d = deployment("dev", RECIPE)
    ctx = Context(settings=load_settings("dev", RECIPE), remote=None, dry_run=True, say=lambda _m: None)
    outcome = stage.run(ctx, d, stage.Options(shape="real"))
    assert outcome.status == "dry-run" and "python -m pytest tests/gpu` at shape real" in outcome.message
    cost = outcome.detail["cost"]
    assert cost["seconds"] == spec.gpu_test_seconds(d)["real"] and cost["usd"] > 0
    assert cost["usd_at_timeout"] > cost["usd"] and cost["timeout_seconds"] == spec.gpu_test_timeout(d)


def test_a_suite_that_cannot_run_is_an_error_with_pytests_words(tmp_path):
    (tmp_path / "tests" / "gpu").mkdir(parents=True)
    (tmp_path / "tests" / "gpu" / "test_broken.py").write_text("import not_a_module_anywhere\n")
    r = acceptance.run_suite("tiny", RECIPE, project=tmp_path)
    assert not r.passed and r.exit_code != 0
    assert [c.outcome for c in r.failing] == ["error"] and "not_a_module_anywhere" in r.output_tail
    assert json.dumps(r.model_dump())  # the record travels as JSON


def test_the_functions_body_runs_from_a_shell_as_on_the_lent_gpu(suite, tmp_path):
    """`python -m infra.runtime.acceptance`: what the Function runs, on any machine (the lent GPU's command)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-m", "infra.runtime.acceptance", "--shape", "real", "--project", str(suite),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed       " in done.stdout and "tests/gpu/test_speculative.py::test_drafts_are_accepted" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("FAILED: shape real, exit 1")
    r = acceptance.SuiteResult.model_validate_json(out.read_text())
    assert [c.test for c in r.failing] == ["tests/gpu/test_speculative.py::test_drafts_are_accepted"]
