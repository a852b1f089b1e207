"""`plan`'s output as typed records: what `plan_for` returns, what its renderers read by attribute, and what
`plan --json` dumps (docs/tasks.md shows it; tests/test_docs.py checks it).

A key is in the JSON only where it was set (`DeploymentPlan.to_data` dumps what was set), as when these were dicts:
an option Modal gets only with snapshots, or a phase's uncached figure where it differs, stays absent elsewhere. The
Modal options are infra/runtime/spec.py's, read tolerantly: what is not named here passes through as it is.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict

from infra.control import costs
from infra.control.cold_start_figures import MeasuredStart
from infra.control.costs import JobCost, Number, Price, RatesShown, ScheduledCost, Shown, Standing
from infra.control.objectives import GatePlan
from infra.control.watching import SentinelCost
from infra.runtime import spec
from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Window


class _Passed(Shown):
    """Options another module builds (infra/runtime/spec.py): the fields `plan` reads, the rest kept as they are."""

    model_config = ConfigDict(extra="allow")


class ImageLayer(_Passed):
    method: str
    args: list[Any]
    kwargs: dict[str, Any]

    def describe(self) -> str:
        if self.method == "env":
            return "env " + " ".join(f"{k}={v}" for k, v in self.args[0].items())
        if self.method in ("from_registry", "add_local_python_source"):
            return " ".join(self.args) + (" (mounted)" if self.method == "add_local_python_source" else "")
        words = [a if isinstance(a, str) else json.dumps(a) for a in self.args]
        return " ".join([self.method, *words, *(f"{k}={v}" for k, v in self.kwargs.items())])


class Named(_Passed):
    """A Volume or a Secret, by name in its Modal environment."""

    name: str
    environment: str


class Function(_Passed):
    """One Function's options as Modal receives them."""

    image: list[ImageLayer]
    gpu: str | None = None
    env: dict[str, str] = {}
    secrets: list[Named] = []
    volumes: dict[str, Named] = {}

    def container(self) -> costs.Container:
        return costs.Container.of(self.model_dump())

    def image_text(self) -> str:
        """'lmsysorg/sglang:... + entrypoint [] + uv_pip_install huggingface-hub==0.36.0 + env (4) + infra'."""
        return " + ".join(layer.describe() for layer in self.image)

    def env_text(self) -> str:
        return " ".join(f"{k}=" + (f"<this deployment, {len(v)} bytes of JSON>" if k == DEPLOYMENT_VARIABLE else v)
                        for k, v in self.env.items())

    def secrets_text(self) -> str:
        return ", ".join(f"Modal Secret {s.name} ({s.environment})" for s in self.secrets) or "none"


class ServerFunction(Function):
    name: str
    compute_region: str | None
    routing_region: str | None
    target_concurrency: int
    min_containers: int
    max_containers: int | None
    startup_timeout: Number
    exit_grace_period: Number
    enable_memory_snapshot: bool = False


class JobFunction(Function):
    timeout: Number


class JobFunctions(_Passed):
    download_weights: JobFunction
    compile_kernels: JobFunction
    gpu_test: JobFunction


class AppName(_Passed):
    name: str
    tags: dict[str, str]


class ModalSpec(_Passed):
    """Verbatim what infra/runtime/app.py and infra/runtime/jobs.py pass to Modal (infra/runtime/spec.py)."""

    app: AppName
    server: ServerFunction
    scheduler: dict[str, Any]
    jobs_app: AppName
    jobs: JobFunctions


class ModelPin(Shown):
    id: str
    revision: str | None
    pinned: bool
    resolved_commit: str | None


class WarmupShown(Shown):
    requests: int
    prompt: str
    max_tokens: int
    timeout: Number
    image: str | None


class ReadinessShown(Shown):
    health: str
    warmup: WarmupShown


class Endpoint(Shown):
    public: bool
    auth: str


class FirstPipeline(Shown):
    seconds: int
    usd: float
    parts: dict[str, JobCost]
    basis: str


class GpuTestCost(Shown):
    shapes: dict[str, JobCost]
    timeout_seconds: int
    usd_at_timeout: float | None


class CostPlan(Shown):
    rates: RatesShown
    replica: Price
    standing: Standing
    compile_job: JobCost
    gate_measurement: JobCost | None
    first_pipeline: FirstPipeline
    gpu_test: GpuTestCost


class PlannedWindow(Window):
    """A schedule window with when it opens and closes, in words."""

    opens: str
    closes: str


class Trigger(Shown):
    cron: str
    timezone: str
    events: list[str]


class ScheduleBase(Shown):
    min_containers: int
    max_containers: int | None
    buffer_containers: int | None


class SchedulePlan(Shown):
    windows: list[PlannedWindow]
    overlaps: str
    triggers: list[Trigger]
    base: ScheduleBase
    cost: ScheduledCost


class SentinelPlan(Shown):
    """The environment's sentinel: its app's options (spec.sentinel_app) and its cost (watching.cost)."""

    modal: dict[str, Any]
    cost: SentinelCost


class ColdPhase(Shown):
    """One phase of a cold start: with the compile caches, and (where it differs) without them."""

    seconds: Number | None
    basis: str
    uncached_seconds: Number | None = None
    cached: bool | None = None

    @property
    def uncached(self) -> Number | None:
        return self.seconds if self.uncached_seconds is None else self.uncached_seconds


class ProfileShown(Shown):
    name: str
    measured_on: str
    source: str
    measured_with_this_model: bool


class ColdStartEstimate(Shown):
    parts: dict[str, ColdPhase]
    estimate_seconds: Number
    uncached_estimate_seconds: Number
    launch_to_ready_seconds: Number
    uncached_launch_to_ready_seconds: Number
    compiled: bool
    complete: bool
    profile: ProfileShown
    piecewise_graphs: str
    caveats: list[str]
    measured_starts: list[MeasuredStart]  # whole starts measured with this model, shown beside the estimate
    snapshot_restore_seconds: float | None = None  # with startup.gpu_snapshot only
    note: str | None = None


class DeploymentPlan(Shown):
    """What would be deployed for one recipe of one environment, resolved."""

    env: str
    recipe: str
    modal_environment: str
    sglang_version: str
    modal: ModalSpec
    model: ModelPin | None
    draft_model: ModelPin | None
    tensor_parallel: int
    readiness_timeout: Number
    launch_command: list[str]
    compile_command: list[str]
    readiness: ReadinessShown
    endpoint: Endpoint
    cost: CostPlan
    schedule: SchedulePlan | None
    gate: GatePlan  # what a promotion into this environment must measure (infra/perf/gate.py)
    sentinel: SentinelPlan | None  # the same in every recipe's plan: it probes them all (docs/sentinel.md)
    cold_start: ColdStartEstimate
    compile_job: spec.CompileBudget  # the compile job's CPU and timeout, derived from measured compile times
    warnings: list[str]
