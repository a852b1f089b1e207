"""The Modal app as Modal sees it: real SDK objects, built offline, and the container's second import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from infra.runtime import compile_cache
from infra.runtime.deployment import Deployment
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from tests.conftest import FAKES, REPO

DESCRIBE = str(FAKES / "describe_app.py")


def describe_locally(env: str, recipe: str, **extra_env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))}
    environ |= {"INFRA_ENV": env, "INFRA_RECIPE": recipe, "MODAL_ENVIRONMENT": env, "PYTHONPATH": str(REPO)} | extra_env
    done = subprocess.run([sys.executable, DESCRIBE], env=environ, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def describe_in_container(tmp_path, local: dict) -> dict:
    """Import the app as the container does: what is mounted (infra/runtime only), Modal's injected variables only."""
    root = tmp_path / "root"
    shutil.copytree(REPO / "infra" / "runtime", root / "infra" / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(DESCRIBE, root / "describe_app.py")
    injected = {k: v for secret in local["env"] for k, v in secret.items()}
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(root)} | injected
    done = subprocess.run(
        [sys.executable, str(root / "describe_app.py"), "--container"], env=environ, capture_output=True, text=True,
        cwd=root
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("recipe", ["qwen3-8b-low-latency", "qwen3.6-35b-vlm"])
def test_container_import_rebuilds_the_identical_definition(tmp_path, env, recipe):
    local = describe_locally(env, recipe)
    assert describe_in_container(tmp_path, local) == local


def test_container_import_identical_with_gpu_snapshots(tmp_path):
    local = describe_locally("prod", "qwen3.6-35b-vlm", INFRA_STARTUP__GPU_SNAPSHOT="true")
    assert local["methods"] == {"start_for_snapshot": "ENTER_PRE_SNAPSHOT", "restore": "ENTER_POST_SNAPSHOT",
                                "stop": "EXIT"}
    assert describe_in_container(tmp_path, local) == local


def test_container_import_ignores_a_different_environment_in_the_container(tmp_path):
    """Even with INFRA_* variables present in the container, the baked deployment wins."""
    local = describe_locally("prod", "qwen3-8b-low-latency")
    root = tmp_path / "root"
    shutil.copytree(REPO / "infra" / "runtime", root / "infra" / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    injected = {k: v for secret in local["env"] for k, v in secret.items()}
    environ = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root), "INFRA_ENV": "dev",
               "INFRA_SCALING__MIN_CONTAINERS": "0"}
    done = subprocess.run([sys.executable, DESCRIBE, "--container"], env=environ | injected, capture_output=True,
                          text=True, cwd=root)
    assert json.loads(done.stdout) == local


def test_prod_8b_server_definition():
    got = describe_locally("prod", "qwen3-8b-low-latency")
    assert got["app"] == "sglang-qwen3-8b-low-latency" and got["server"] == "server"
    assert got["gpu"] == "H100!:2"
    assert got["regions"] == ["us-east"] and got["routing_regions"] == ["us-east"]
    # The compile caches read-only: servers never write the shared copy, only the compile job does.
    assert got["volumes"] == {HF_CACHE_PATH: ["huggingface-cache", "prod"],
                              KERNELS_PATH: ["deepgemm-cache", "prod", "read-only"]}
    assert (got["port"], got["startup_timeout"], got["exit_grace_period"]) == (8000, 1200, 25)
    assert (got["min_containers"], got["max_containers"], got["target_concurrency"]) == (1, 4, 10.0)
    assert got["unauthenticated"] is False  # proxy auth on in prod
    assert got["enable_memory_snapshot"] is False and got["experimental_options"] == {}
    assert got["methods"] == {"start": "ENTER_POST_SNAPSHOT", "stop": "EXIT"}
    assert got["image"] == [
        ["FROM lmsysorg/sglang:v0.5.6.post2-cu129-amd64-runtime"],
        ["FROM base", "ENTRYPOINT []"],
        ["FROM base", "COPY --from=ghcr.io/astral-sh/uv:latest /uv /.uv/uv",
         "RUN /.uv/uv pip install --python $(command -v python) --compile-bytecode huggingface-hub==0.36.0"],
        ["FROM base", "ENV HF_HUB_CACHE=/root/.cache/huggingface", "ENV HF_XET_HIGH_PERFORMANCE=1",
         "ENV SGLANG_ENABLE_JIT_DEEPGEMM=1"],
        ["MOUNT local python source"],
    ]
    (env,) = got["env"]
    assert env["HF_HUB_OFFLINE"] == "1"
    # Every JIT cache variable, on local disk at the one fixed path the compile job compiled at.
    assert {k: env[k] for k in compile_cache.environment()} == compile_cache.environment(compile_cache.LOCAL_ROOT)
    assert {c.variable for c in compile_cache.CACHES} == {
        "SGLANG_DG_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "SGLANG_CACHE_DIR",
        "FLASHINFER_WORKSPACE_BASE", "TVM_FFI_CACHE_DIR", "CUDA_CACHE_PATH",
    }
    baked = Deployment.from_json(env["INFRA_DEPLOYMENT"])
    assert baked.env == "prod" and baked.recipe.name == "qwen3-8b-low-latency" and baked.scaling.min_containers == 1


def test_dev_vlm_server_definition():
    got = describe_locally("dev", "qwen3.6-35b-vlm")
    assert got["gpu"] == "H100!:1"
    assert got["regions"] is None  # the reference leaves the compute region open
    assert got["routing_regions"] == ["us-east"]
    assert (got["min_containers"], got["startup_timeout"], got["exit_grace_period"]) == (0, 900, 25)
    assert got["unauthenticated"] is True  # dev is public, as the reference examples
    assert got["volumes"][HF_CACHE_PATH] == ["huggingface-cache", "dev"]
    assert "HF_HUB_OFFLINE" not in got["env"][0]
    assert got["image"][0] == ["FROM lmsysorg/sglang:v0.5.10.post1-cu130-runtime"]
    assert ["FROM base", "ENTRYPOINT []"] in got["image"]
    assert not any("pip install" in " ".join(layer) for layer in got["image"])


def test_gpu_snapshot_options_only_where_enabled():
    on = describe_locally("prod", "qwen3.6-35b-vlm", INFRA_STARTUP__GPU_SNAPSHOT="true")
    assert on["enable_memory_snapshot"] is True and on["experimental_options"] == {"enable_gpu_snapshot": "True"}
    assert on["env"][0]["TORCHINDUCTOR_COMPILE_THREADS"] == "1"


def test_import_refuses_a_mismatched_modal_environment():
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))}
    environ |= {"INFRA_ENV": "prod", "INFRA_RECIPE": "qwen3-8b-low-latency", "PYTHONPATH": str(REPO),
                "MODAL_ENVIRONMENT": "main"}
    done = subprocess.run([sys.executable, "-c", "import infra.control.modal_entry"], env=environ, capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode != 0
    assert "deploys into Modal Environment 'prod', but MODAL_ENVIRONMENT is 'main'" in done.stderr


def test_import_without_a_recipe_when_two_are_served():
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))}
    environ |= {"INFRA_ENV": "prod", "PYTHONPATH": str(REPO), "MODAL_ENVIRONMENT": "prod"}
    done = subprocess.run([sys.executable, "-c", "import infra.control.modal_entry"], env=environ, capture_output=True,
                          text=True, cwd=REPO)
    assert "serves 2 recipes (qwen3-8b-low-latency, qwen3.6-35b-vlm); choose one with INFRA_RECIPE" in done.stderr


def test_jobs_app_definition(monkeypatch):
    from tests.conftest import deployment

    monkeypatch.setenv("INFRA_DEPLOYMENT", deployment("staging").to_json())
    monkeypatch.setenv("MODAL_ENVIRONMENT", "staging")
    sys.modules.pop("infra.runtime.jobs", None)
    import infra.runtime.jobs as jobs

    assert jobs.app.name == "sglang-qwen3-8b-low-latency-jobs"
    from modal._utils.async_utils import synchronizer

    download = synchronizer._translate_in(jobs.download_weights)._spec
    compile_ = synchronizer._translate_in(jobs.compile_kernels)._spec
    assert download.gpus is None  # CPU only
    assert list(download.volumes) == [HF_CACHE_PATH]
    assert download.volumes[HF_CACHE_PATH].name == "huggingface-cache"
    assert compile_.gpus == "H100!:2"  # kernels compiled on the GPU that runs them
    assert set(compile_.volumes) == {HF_CACHE_PATH, KERNELS_PATH}
    # the writer
    assert not compile_.volumes[KERNELS_PATH]._read_only and not compile_.volumes[KERNELS_PATH]._mount_options
    job_env = {k: v for secret in compile_.secrets if hasattr(secret, "_load_env_dict") for k,
               v in secret._load_env_dict().items()}
    assert job_env["TRITON_CACHE_DIR"] == compile_cache.LOCAL_ROOT + "/triton"  # compiled where servers restore
    sys.modules.pop("infra.runtime.jobs", None)


def test_modal_cli_import_path_finds_the_app():
    """`modal deploy -m infra.control.modal_entry --env prod` resolves the app with Modal's own import machinery."""
    script = (
        "from modal._environments import ensure_env\n"
        "from modal.cli.import_refs import import_app_from_ref, parse_import_ref\n"
        "ensure_env('prod')  # what `--env prod` does before importing\n"
        "app = import_app_from_ref(parse_import_ref('infra.control.modal_entry', use_module_mode=True), "
        "base_cmd='modal deploy')\nprint(app.name, sorted(app.registered_functions))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))}
    environ |= {"INFRA_ENV": "prod", "INFRA_RECIPE": "qwen3-8b-low-latency", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sglang-qwen3-8b-low-latency ['server']"


def _expected(options: dict) -> dict:
    """What Modal should hold for one entry of infra/runtime/spec.py: the image as its Dockerfile commands, Modal's
    defaults filled in."""
    from infra.runtime import modal_objects
    from tests.fakes.describe_app import dockerfile, synchronizer_in

    out = {k: v for k, v in options.items() if k != "include_source"}
    out["image"] = dockerfile(synchronizer_in(modal_objects.image(options["image"])))
    if "schedule" in options:  # a scheduled Function: no GPU, Volumes or Secrets
        return out
    out.setdefault("gpu", None)
    out.setdefault("cpu", None)
    out.setdefault("memory", None)
    if "port" in options:  # the server
        out.setdefault("enable_memory_snapshot", False)
        out["experimental_options"] = {k: str(v) for k, v in out.get("experimental_options", {}).items()}
    return out


BUSINESS_HOURS = ('[{name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI", '
                  'timezone="America/New_York", min_containers=1}]')
# Business hours (one trigger: "0 8,18 * * MON-FRI"), and a weekend window in another zone (two triggers).
TWO_ZONES = BUSINESS_HOURS[:-1] + (', {name="weekend", start="0 10 * * SAT", end="0 16 * * SUN", '
                                   'timezone="Europe/Paris", min_containers=1}]')


@pytest.mark.parametrize("env, recipe, schedule", [
    ("dev", "qwen3-8b-low-latency", None), ("dev", "qwen3.6-35b-vlm", None),
    ("staging", "qwen3-8b-low-latency", None), ("staging", "qwen3.6-35b-vlm", None),
    ("prod", "qwen3-8b-low-latency", TWO_ZONES), ("prod", "qwen3.6-35b-vlm", None),
])
def test_the_deployed_definitions_are_exactly_the_spec_that_plan_shows(env, recipe, schedule):
    """infra/runtime/spec.py is the one source: what the app (server and scheduler) and the jobs hand to Modal, read
    back from the SDK's own objects, equals it key for key (and `plan --json` holds it verbatim)."""
    from infra.control import plan
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings
    from infra.runtime import spec

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "MODAL_"))}
    environ |= {"INFRA_ENV": env, "INFRA_RECIPE": recipe, "MODAL_ENVIRONMENT": env, "PYTHONPATH": str(REPO)}
    overrides = {}
    if schedule:
        environ["INFRA_SCALING__SCHEDULE"] = schedule
        overrides = {"scaling.schedule": __import__("infra.control.settings", fromlist=["x"]).literal(schedule)}
    done = subprocess.run([sys.executable, DESCRIBE, "--definitions"], env=environ, capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    deployed = json.loads(done.stdout)

    settings = load_settings(env, recipe, overrides)
    d = resolve(settings, recipe)
    specs = spec.modal_spec(d)
    assert (deployed["app"], deployed["jobs_app"]) == (specs["app"]["name"], specs["jobs_app"]["name"])
    # The tags Modal's billing report carries: the server App also names the commit it deploys (modal_entry reads it
    # from git, as `invoke deploy` passes it), which the offline spec `plan` shows cannot know.
    from infra.control import gitinfo

    assert deployed["app_tags"] == spec.modal_spec(d, commit=gitinfo.read().tag)["app"]["tags"] == \
        specs["app"]["tags"] | {"commit": gitinfo.read().tag}
    assert deployed["jobs_app_tags"] == specs["jobs_app"]["tags"] == {"env": env, "recipe": recipe, "role": "jobs"}
    assert deployed["server"] == _expected(specs["server"])
    assert deployed["scheduler"] == {name: _expected(options) for name, options in specs["scheduler"].items()}
    # business hours merged into one trigger; the weekend: two
    assert len(deployed["scheduler"]) == (3 if schedule else 0)
    assert deployed["jobs"] == {name: _expected(options) for name, options in specs["jobs"].items()}
    assert plan.plan_for(settings, d).to_data()["modal"] == specs


def test_plan_json_carries_the_exact_app_tags_deploy_sends(cli):
    """Issue 30: plan --json left out the `commit` tag; it now shows the tags a deploy from this checkout sends."""
    done = cli("plan", "--env", "dev", "--recipe", "qwen3-8b-low-latency", "--json")
    assert done.returncode == 0, done.stderr
    [planned] = json.loads(done.stdout)
    assert cli("deploy", "--env", "dev", "--recipe", "qwen3-8b-low-latency").returncode == 0
    [sent] = cli.wire.app_versions("dev", "sglang-qwen3-8b-low-latency")
    assert planned["modal"]["app"]["tags"] == sent["app_tags"] == {
        "env": "dev", "recipe": "qwen3-8b-low-latency", "role": "server", "commit": sent["tag"]}
