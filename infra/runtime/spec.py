"""The exact Modal options of the server and of each job, as plain data: one pure function of a Deployment.

infra/runtime/app.py and jobs.py pass it to Modal (through modal_objects.py) and `invoke plan` prints it (`plan --json`
under "modal"): what is shown is what is deployed, by construction (tests/test_app.py reads it back from the SDK).
"""

from __future__ import annotations

from typing import Any

from infra.runtime import compile_cache, schedule
from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.runtime.model import Stored
from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH
from infra.runtime.sentinel import SPEC_VARIABLE, SentinelSpec

SERVER_NAME = "server"  # the Server's name inside its Modal app
PACKAGE = "infra.runtime"  # what containers import, mounted at start (not baked into an image)
PACKAGE_IGNORE = ["**/__pycache__/**", "**/*.pyc"]
# What infra/runtime needs beyond the standard library, as pyproject.toml pins them (tests/test_structure.py keeps
# them equal). The SGLang images ship both (SGLang depends on them); the slim images get exactly these.
RUNTIME_PACKAGES = ("pydantic==2.14.4", "requests==2.34.2")
# The download job's slim image: the Hub client version the SGLang image gets (and the tests run), and Xet transfers.
DOWNLOAD_PACKAGES = ["huggingface-hub==0.36.0", "hf-xet==1.2.0"]
DOWNLOAD_TIMEOUT = 3 * 60 * 60  # seconds: ~90 GB at a slow Hub day's rate

# The compile job, sized from what it measured (benchmarks/results/cold_start_real_shape_h200.json, "compile":
# Qwen3-8B-FP8 + full-width EAGLE-3 drafter, TP 1, one H200, SGLang 0.5.11, dummy weights). compile_deep_gemm took
# 628.8 s: DeepGEMM's JIT of 4 GEMM shapes 429.5 s (101, 121, 46, 118 s), the rest its server's start and stop. The
# JIT is one serial loop over M = 1..16384 per shape, nvcc synchronously: 1.15 busy cores of 16 on average. Neither
# more CPUs nor SGLANG_JIT_DEEPGEMM_COMPILE_WORKERS (read nowhere in SGLang 0.5.6.post2 to 0.5.11) would shorten it.
DEEP_GEMM_MEASURED_SECONDS = 628.8  # compile.compile_deep_gemm_s
DEEP_GEMM_MEASURED_SHAPES = 4
DEEP_GEMM_JIT_SECONDS = 429.5  # compile.compile_deep_gemm_timeline.deep_gemm.seconds
DEEP_GEMM_SLOWEST_SHAPE_SECONDS = 120.6  # the slowest of the four
UNCACHED_SERVER_START_SECONDS = 313.4  # compile.server_timings.ready_s: the job's server, nothing cached but DeepGEMM
COMPILE_TIMEOUT_MARGIN = 2.0  # over the measured figures: another host's CPU (the JIT is single-core), real weights
COMPILE_JOB_MARGIN = 300  # seconds for the concurrent warm-up burst, the stop, publishing and the Volume commits
# CPU cores: the JIT uses one core (nvcc, serially), and while the job's server starts SGLang's processes were
# 1.48 cores busy on average, 3.41 at most. So 3 for the job's Python, the tokenizer and detokenizer processes and
# nvcc, plus 1 per tensor-parallel rank for its scheduler process: 4 at TP 1, 5 at TP 2. Not 16: they would idle.
COMPILE_CPU_BASE = 3.0
COMPILE_CPU_PER_RANK = 1.0


# The acceptance suite's Function (`invoke gpu-test`): the compile job's image, GPU and Volumes, the suite mounted
# under acceptance.PROJECT. What it imports beyond the SGLang image: pytest and its timeout plugin, the settings'
# loader, invoke (its bench test runs `python -m invoke bench`), cron and rich (the settings and stages import them).
TEST_PACKAGES = ("pytest==9.2.0", "pytest-timeout==2.4.0", "pydantic-settings==2.16.3", "invoke==3.0.3", "cronsim==2.8",
                 "rich==15.0.0")
# Project paths the suite needs, relative to the repository root (modal_objects resolves them there).
TEST_SOURCES = ("infra", "stages", "tasks.py", "environments", "benchmarks", "tests/__init__.py", "tests/gpu",
                "tests/fakes/openai_server.py", "tests/fakes/__init__.py", "pyproject.toml")
TEST_IGNORE = ["**/__pycache__/**", "**/*.pyc", "results/**"]  # relative to each folder: benchmarks/results is data
# Seconds each shape's suite takes on one H100 or H200 with SGLang 0.5.11 (benchmarks/results/README.md): tiny,
# test_real_sglang.py 8/8 in 411-448 s; real, the 8B compile job (946 s) then a cached start (127.5 s); model, one
# cached start plus the weights' load and the checks, taken as the recipe's startup_timeout.
GPU_TEST_MEASURED_SECONDS = {"tiny": 448.0, "real": 946.0 + 127.5}
GPU_TEST_MARGIN = 600  # seconds over the slowest shape: the image's pull, the suite's imports, another host's CPU


SCHEDULER_TIMEOUT = 120  # seconds: one autoscaler update
SCHEDULER_RETRIES = 3  # a boundary missed because of a transient error is retried, not skipped


def modal_spec(d: Deployment, commit: str | None = None) -> dict[str, Any]:
    """Everything Modal receives for this deployment. `commit`, the git tag being deployed, is known only when a
    deploy imports the app (infra/runtime/current.commit_tag); `plan` shows the spec without it."""
    return {
        "app": {"name": d.app_name, "tags": tags(d, "server", commit)},
        "server": server(d),
        "scheduler": scheduler(d),
        "jobs_app": {"name": d.jobs_app_name, "tags": tags(d, "jobs")},
        "jobs": jobs(d),
    }


# The App tags Modal's billing report carries with every row: which environment, recipe, part and (server) commit a
# cost belongs to. Not the release id: it is made after the deploy lands, and a tag that changed on every deploy would
# make each redeploy of an unchanged definition a new version. The ledger finds a row's release by time and checks it
# by the commit (infra/perf/ledger.py `bill`).
TAG_NAMES = ("env", "recipe", "role", "commit")


def tags(d: Deployment, role: str = "server", commit: str | None = None) -> dict[str, str]:
    found = {"env": d.env, "recipe": d.recipe.name, "role": role}
    return (found | {"commit": commit}) if commit else found


# ---------------------------------------------------------------------------- the server


def server(d: Deployment) -> dict[str, Any]:
    """Options for `@app.server`, the successor of the reference documents' @app.cls + http_server + concurrent."""
    r = d.recipe
    options: dict[str, Any] = {
        "name": SERVER_NAME, "image": server_image(d), "gpu": r.gpu, **resources(d),
        # The compile caches read-only: only the compile job writes (infra/runtime/compile_cache.py).
        "volumes": cache_volumes(d, kernels_read_only=True),
        "env": server_env(d),
        # The token only where the server may fall back to the Hub (not HF_HUB_OFFLINE).
        "secrets": [] if d.server.hf_hub_offline else hf_secrets(d),
        "port": d.server.port,
        "routing_region": d.placement.routing_region,  # the documents' proxy region
        "compute_region": d.placement.compute_region,  # the documents' `region`
        "target_concurrency": r.target_concurrency,  # the documents' `target_inputs`
        "min_containers": d.scaling.min_containers, "max_containers": d.scaling.max_containers,
        "buffer_containers": d.scaling.buffer_containers, "scaledown_window": d.scaling.scaledown_window,
        "exit_grace_period": r.exit_grace_period,
        "startup_timeout": r.startup_timeout,  # bounds the whole @modal.enter
        "unauthenticated": not d.auth.proxy_auth,
        "include_source": False,  # the image mounts this package itself, assets included
    }
    if d.startup.gpu_snapshot:  # alpha on Modal: only where the environment asks for it
        options |= {"enable_memory_snapshot": True, "experimental_options": {"enable_gpu_snapshot": True}}
    return options


def server_env(d: Deployment) -> dict[str, str]:
    """Variables set on the server container (not baked into the image, so changing them rebuilds nothing)."""
    env = {DEPLOYMENT_VARIABLE: d.to_json()} | compile_cache.environment()  # every JIT cache at the fixed local root
    if d.server.hf_hub_offline:
        env["HF_HUB_OFFLINE"] = "1"
    if d.startup.gpu_snapshot:
        env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # as Modal's SGLang snapshot example: snapshot-safe
    return env


# ---------------------------------------------------------------------------- the scheduler


def scheduler(d: Deployment) -> dict[str, dict[str, Any]]:
    """The Functions that apply the scheduled warm floor, one per cron trigger, in the server's app: deployed,
    promoted and rolled back with the server whose floor they set (infra/runtime/app.py `apply_floor`)."""
    return {
        f"apply_floor_{i}": {"image": slim_image(*schedule.PACKAGES),
                             "schedule": {"cron": trigger.cron, "timezone": trigger.timezone},
                             "env": {DEPLOYMENT_VARIABLE: d.to_json()}, "timeout": SCHEDULER_TIMEOUT,
                             "retries": SCHEDULER_RETRIES, "include_source": False}
        for i, trigger in enumerate(schedule.boundaries(d.scaling.schedule))
    }


# ---------------------------------------------------------------------------- the sentinel

SENTINEL_CPU = 0.125  # Modal's minimum request: the probe waits on the network, it computes next to nothing
SENTINEL_MEMORY_MIB = 256  # Python, the modal client and pydantic: above Modal's 128 MiB default


def sentinel_app(s: SentinelSpec) -> dict[str, Any]:
    """The sentinel's own app (infra/runtime/sentinel_app.py): one scheduled Function probing every served recipe.
    Its own app, not the servers': a promotion or rollback of a recipe neither redeploys nor stops it."""
    return {
        "app": {"name": s.app_name, "tags": {"env": s.env, "role": "sentinel"}},
        "function": {
            "image": slim_image(*schedule.PACKAGES),
            "schedule": {"period_seconds": s.settings.interval_seconds},
            "env": {SPEC_VARIABLE: s.to_json()},
            # MODAL_KEY/MODAL_SECRET for endpoints behind proxy auth; the probe sends them to those alone.
            "secrets": ([{"name": s.settings.proxy_auth_secret, "environment": s.modal_environment}]
                        if any(t.proxy_auth for t in s.targets) else []),
            "cpu": SENTINEL_CPU,
            "memory": SENTINEL_MEMORY_MIB, "timeout": s.timeout_seconds,
            # Idle this long after a run: the next run finds the container up (a steady bill, as `plan` prices it).
            "scaledown_window": min(s.settings.interval_seconds + 30, 3600),
            "retries": 0,  # a missed probe is a gap in the record, not something to send late
            "include_source": False,
        },
    }


# ---------------------------------------------------------------------------- the jobs


def jobs(d: Deployment) -> dict[str, dict[str, Any]]:
    """The Functions `invoke download`, `compile` and `gpu-test` run ephemerally in `<app>-jobs` (jobs.py)."""
    return {
        "download_weights": {
            "image": slim_image(*DOWNLOAD_PACKAGES, env={"HF_HUB_CACHE": HF_CACHE_PATH,
                                                         "HF_XET_HIGH_PERFORMANCE": "1"}),
            "volumes": {HF_CACHE_PATH: weights_volume(d)},
            "secrets": hf_secrets(d),  # HF_TOKEN, if the environment names a secret; never printed
            "env": {DEPLOYMENT_VARIABLE: d.to_json()}, "cpu": 4.0, "memory": 8192, "timeout": DOWNLOAD_TIMEOUT,
            "include_source": False,
        },
        # The one writer of the compile caches.
        "compile_kernels": gpu_job(d, server_image(d), cache_volumes(d, kernels_read_only=False), compile_timeout(d)),
        # Read-only: the suite reads the weights and the published compile caches and never publishes.
        "gpu_test": gpu_job(d, test_image(d), cache_volumes(d, kernels_read_only=True)
                            | {HF_CACHE_PATH: weights_volume(d) | {"read_only": True}}, gpu_test_timeout(d)),
    }


def gpu_job(d: Deployment, image: list[dict[str, Any]], volumes: dict[str, Any], timeout: int) -> dict[str, Any]:
    """A job on the recipe's GPUs (what is compiled or proved is what serves) that runs the real server (the recipe's
    memory; CPU sized for the DeepGEMM JIT, `compile_cpu`), with the weights from the download stage and every cache
    variable at the fixed local root; it reads only the Volumes: no token."""
    return {"image": image, "gpu": d.recipe.gpu, **(resources(d) | {"cpu": compile_cpu(d)}), "volumes": volumes,
            "env": {DEPLOYMENT_VARIABLE: d.to_json(), "HF_HUB_OFFLINE": "1"} | compile_cache.environment(),
            "secrets": [], "timeout": timeout, "include_source": False}


def test_image(d: Deployment) -> list[dict[str, Any]]:
    """The server's image, pytest, then the mounts: the package and the suite (Modal builds no layer after a mount)."""
    *built, package = server_image(d)
    layers = built + [_layer("uv_pip_install", *TEST_PACKAGES), package]
    for source in TEST_SOURCES:
        method = "add_local_file" if "." in source.rsplit("/", 1)[-1] else "add_local_dir"
        kwargs = {} if method == "add_local_file" else {"ignore": TEST_IGNORE}
        layers.append(_layer(method, source, f"/root/project/{source}", **kwargs))
    return layers


def gpu_test_seconds(d: Deployment) -> dict[str, float]:
    """What each shape's suite is expected to take (GPU_TEST_MEASURED_SECONDS; model: the recipe's startup_timeout)."""
    return GPU_TEST_MEASURED_SECONDS | {"model": float(d.recipe.startup_timeout)}


def gpu_test_timeout(d: Deployment) -> int:
    """The Function's timeout: the slowest shape (real runs the compile job's body first) plus the margin."""
    return int(max(compile_timeout(d) + d.recipe.startup_timeout, *gpu_test_seconds(d).values()) + GPU_TEST_MARGIN)


def resources(d: Deployment) -> dict[str, Any]:
    """The recipe's CPU and memory requests, where it makes them (else Modal's defaults apply)."""
    return {k: v for k, v in (("cpu", d.recipe.cpu), ("memory", d.recipe.memory)) if v is not None}


def compile_cpu(d: Deployment) -> float:
    """CPU cores for the compile job (see COMPILE_CPU_BASE)."""
    return COMPILE_CPU_BASE + COMPILE_CPU_PER_RANK * d.recipe.tp_size


class CompileBudget(Stored):
    """The compile job's time and CPU (`plan --json`'s `compile_job`), derived from the measured figures above."""

    deep_gemm_shapes: int
    deep_gemm_expected_seconds: float
    deep_gemm_kill_after_seconds: int
    server_seconds: int
    margin_seconds: int
    timeout_seconds: int
    cpu: float
    basis: str


def compile_budget(d: Deployment) -> CompileBudget:
    """The compile job's time from the measured figures above (`plan` shows it, the job obeys it). Extrapolated, not
    measured: TP 2 (taken as TP 1: only the node's first rank precompiles, the same number of shapes, each halved in
    N or K), other models' shapes (the VLM's count is from its configuration), and an H100 host's CPU (the margin)."""
    shapes = d.recipe.deep_gemm_shapes if compile_cache.deepgemm_enabled(d.recipe.image_env) else 0
    fixed = DEEP_GEMM_MEASURED_SECONDS - DEEP_GEMM_JIT_SECONDS
    expected = fixed + shapes * DEEP_GEMM_SLOWEST_SHAPE_SECONDS if shapes else 0.0
    deep_gemm = int(-(-COMPILE_TIMEOUT_MARGIN * expected // 1))  # rounded up
    return CompileBudget(
        deep_gemm_shapes=shapes, deep_gemm_expected_seconds=round(expected, 1), deep_gemm_kill_after_seconds=deep_gemm,
        server_seconds=d.recipe.startup_timeout, margin_seconds=COMPILE_JOB_MARGIN,
        timeout_seconds=deep_gemm + d.recipe.startup_timeout + COMPILE_JOB_MARGIN, cpu=compile_cpu(d),
        basis=(f"compile_deep_gemm measured {DEEP_GEMM_MEASURED_SECONDS:g} s for {DEEP_GEMM_MEASURED_SHAPES} GEMM "
               f"shapes (Qwen3-8B-FP8 shape, TP 1, 1×H200, SGLang 0.5.11): {fixed:.1f} s fixed + {shapes} shape(s) "
               f"× {DEEP_GEMM_SLOWEST_SHAPE_SECONDS:g} s (the slowest measured) = {expected:.1f} s, × margin "
               f"{COMPILE_TIMEOUT_MARGIN:g} = {deep_gemm} s; then the server within startup_timeout "
               f"{d.recipe.startup_timeout} s (measured uncached at that shape: {UNCACHED_SERVER_START_SECONDS:g} "
               f"s) and {COMPILE_JOB_MARGIN} s to warm, stop, publish and commit"))


def compile_timeout(d: Deployment) -> int:
    """The compile job's Modal timeout: `compile_budget` in one number."""
    return compile_budget(d).timeout_seconds


# ---------------------------------------------------------------------------- parts


def server_image(d: Deployment) -> list[dict[str, Any]]:
    """The SGLang team's image, as the recipe pins it, in the reference documents' order."""
    r = d.recipe
    layers = [_layer("from_registry", r.sglang_image), _layer("entrypoint", [])]  # silence chatty logs on start
    if r.pip_installs:
        layers.append(_layer("uv_pip_install", *r.pip_installs))
    layers.append(_layer("env", dict(r.image_env)))
    return layers + [_package()]


def slim_image(*packages: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A slim CPU image with `packages` and this package's own: the download job's, the scheduler's (with the cron
    library and time-zone database the floor is computed with) and the sentinel's."""
    layers = [_layer("debian_slim", python_version="3.11"), _layer("uv_pip_install", *packages, *RUNTIME_PACKAGES)]
    return layers + ([_layer("env", env)] if env else []) + [_package()]


def _package() -> dict[str, Any]:
    """This package, mounted at container start (not baked in), assets included (the warm-up image)."""
    return _layer("add_local_python_source", PACKAGE, ignore=PACKAGE_IGNORE)


def _layer(method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One call on modal.Image: the first layer is a constructor, each later one a method of the image so far."""
    return {"method": method, "args": list(args), "kwargs": kwargs}


def weights_volume(d: Deployment) -> dict[str, Any]:
    return {"name": d.caches.weights_volume, "environment": d.modal.cache_environment, "read_only": False}


def cache_volumes(d: Deployment, *, kernels_read_only: bool) -> dict[str, dict[str, Any]]:
    """Container path -> Volume. Both caches, in every container that runs SGLang."""
    return {HF_CACHE_PATH: weights_volume(d), KERNELS_PATH: {"name": d.caches.kernels_volume,
                                                             "environment": d.modal.cache_environment,
                                                             "read_only": kernels_read_only}}


def hf_secrets(d: Deployment) -> list[dict[str, str]]:
    name = d.secrets.hf_token_secret
    return [{"name": name, "environment": d.modal.environment}] if name else []
