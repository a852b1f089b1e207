"""A Deployment: one recipe resolved against one environment's settings, and the parts it is made of.

The single source of truth for what is built, deployed or printed (infra/runtime/spec.py), sent to containers as JSON
(`INFRA_DEPLOYMENT`). The parts are the sections of `environments/<env>.toml`; `recipe` is the resolved recipe a
promotion carries whole, every other part the environment's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from infra.runtime import schedule
from infra.runtime.model import RESOLVED, Frozen, is_resolved, on_the_laptop
from infra.runtime.recipes.base import ComputeRegion, Recipe, RoutingRegion
from infra.runtime.secrets import credential_kind, looks_like_credential

DEPLOYMENT_VARIABLE = "INFRA_DEPLOYMENT"
MODAL_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # Modal's rule for object names (Secrets, Volumes...)
# SGLang 0.5.11 also listens on port + 10000 and refuses to start above this (seen on the H100).
MAX_SGLANG_PORT = 65535 - 10000


def _modal_name(value: str) -> str:
    if looks_like_credential(value):
        raise ValueError(f"this is the NAME of a Modal Secret, but the value looks like a {credential_kind(value)}: "
                         "never put a credential in settings; store it with `modal secret create NAME HF_TOKEN=...` "
                         "and give NAME here")
    if not MODAL_NAME_RE.match(value):
        raise ValueError("not a Modal object name; allowed: 1 to 64 letters, digits, '.', '_' or '-'")
    return value


ModalName = Annotated[str, AfterValidator(_modal_name)]


class ModalTarget(Frozen):
    """Where the apps live on Modal ([modal])."""

    environment: ModalName | None = Field(
        default=None, description="Modal Environment to deploy into (default: the environment's own name)")
    cache_environment: ModalName | None = Field(
        default=None, description="Modal Environment holding the weight and kernel cache Volumes (default: "
                                  "environment)")
    app_prefix: ModalName = Field(default="sglang", description="Modal app name = <app_prefix>-<recipe>")


class Window(Frozen):
    """One `[[scaling.schedule]]` window: from each `start` firing to the next `end` firing, this floor holds."""

    name: str
    start: str = Field(description="cron expression: the window opens when it fires")
    end: str = Field(description="cron expression: the window closes when it fires")
    timezone: str = Field(description="IANA time zone both expressions are read in, e.g. America/New_York")
    min_containers: int = Field(ge=0, description="warm replicas while the window is active")
    max_containers: int | None = Field(default=None, ge=1,
                                       description="cap while active (default: scaling.max_containers)")
    buffer_containers: int | None = Field(default=None, ge=0, description="default: scaling.buffer_containers")

    _name = field_validator("name")(schedule.check_name)
    _cron = field_validator("start", "end")(on_the_laptop(schedule.check_cron))
    _zone = field_validator("timezone")(on_the_laptop(schedule.check_timezone))


class Scaling(Frozen):
    """Replicas ([scaling]), with Modal's autoscaler option names."""

    min_containers: int = Field(default=0, ge=0, description="warm replicas kept running at all times")
    max_containers: int | None = Field(default=None, ge=1, description="upper bound on replicas (None: Modal's)")
    buffer_containers: int | None = Field(default=None, ge=0)
    scaledown_window: int | None = Field(default=None, ge=2, le=3600, description="seconds idle before scale-down")
    allow_warm_replicas: bool = Field(default=True, description="false forbids min_containers > 0 (cost guard)")
    schedule: list[Window] = Field(default_factory=list, description="windows with another warm floor")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Scaling:
        if self.max_containers is not None and self.min_containers > self.max_containers:
            raise ValueError(f"min_containers={self.min_containers} exceeds max_containers={self.max_containers}; "
                             "min_containers must be <= max_containers")
        if self.min_containers > 0 and not self.allow_warm_replicas:
            raise ValueError(f"min_containers={self.min_containers} but this environment forbids warm replicas "
                             "(allow_warm_replicas = false); allowed: min_containers = 0")
        if not is_resolved(info):
            schedule.check_windows(self.schedule, self, allow_warm_replicas=self.allow_warm_replicas)
        return self


class Placement(Frozen):
    """Where containers and Modal's proxies run ([placement]): an environment's, not a recipe's, so a promotion
    carries the recipe, not where it ran."""

    compute_region: ComputeRegion | None = Field(
        default=None, description="where containers run (none: anywhere, and no region multiplier on the bill)")
    routing_region: RoutingRegion = Field(default="us-east", description="where Modal's proxies run")


class Server(Frozen):
    """The SGLang process's port and where it may read weights from ([server])."""

    port: int | None = Field(default=None, ge=1, le=65535,
                             description="SGLang's port in the container (default: the recipe's)")
    hf_hub_offline: bool = Field(default=False, description="server reads weights only from the Volume")

    @field_validator("port")
    @classmethod
    def _room_for_sglangs_second_port(cls, v: int | None) -> int | None:
        if v is not None and v > MAX_SGLANG_PORT:
            raise ValueError(f"SGLang also listens on port + 10000, so it refuses ports above {MAX_SGLANG_PORT}; "
                             f"allowed: 1 to {MAX_SGLANG_PORT}")
        return v


class Auth(Frozen):
    proxy_auth: bool = Field(default=True, description="require Modal-Key/Modal-Secret headers on the endpoint")


class Secrets(Frozen):
    hf_token_secret: ModalName | None = Field(default=None, description="NAME of the Modal Secret holding HF_TOKEN")


class Caches(Frozen):
    """The Modal Volumes ([caches]) in `modal.cache_environment` (releases: `modal.environment`)."""

    weights_volume: ModalName = "huggingface-cache"
    kernels_volume: ModalName = "deepgemm-cache"
    releases_volume: ModalName = "sglang-releases"


class Startup(Frozen):
    """What a server container does while it starts ([startup]): deployed."""

    gpu_snapshot: bool = Field(default=False, description="Modal GPU memory snapshots (alpha; single-GPU recipes; "
                                                          'per recipe: recipes."<name>".gpu_snapshot)')
    refuse_on_cache_miss: bool = Field(
        default=False, description="a server that compiled anything while starting (a compile-cache miss) refuses to "
                                   "go ready, so the compile stage must be rerun; warned about in `invoke status` "
                                   "either way")


class Deployment(Frozen):
    env: str
    recipe: Recipe
    modal: ModalTarget
    scaling: Scaling
    placement: Placement
    server: Server
    auth: Auth
    secrets: Secrets
    caches: Caches
    startup: Startup

    @property
    def app_name(self) -> str:
        """The server's Modal app; the download and compile jobs run in `jobs_app_name`."""
        return f"{self.modal.app_prefix}-{self.recipe.name.replace('.', '-')}"

    @property
    def jobs_app_name(self) -> str:
        return f"{self.app_name}-jobs"

    @property
    def builds_app_name(self) -> str:
        """The app `invoke build` builds the server's image in (its own, so a build deploys nothing)."""
        return f"{self.app_name}-builds"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        # Key order kept: the image's ENV layer follows `recipe.image_env`, and a container rebuilds the same layers.
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        """What a container was deployed with: checked when it was resolved, so read back as such."""
        return cls.model_validate_json(text, context=RESOLVED)

    @classmethod
    def read(cls, data: dict[str, Any]) -> Deployment:
        """A deployment a release recorded, maybe an older version's: unknown keys ignored, new fields defaulted."""
        return cls.model_validate(startup_lifted(data), strict=False, extra="ignore", context=RESOLVED)

    def with_recipe(self, recipe: Recipe) -> Deployment:
        """The same environment serving another resolved recipe (a promoted release, pinned revisions)."""
        return self.model_copy(update={"recipe": recipe})


def startup_lifted(data: dict[str, Any]) -> dict[str, Any]:
    """A deployment recorded before [startup] (gpu_snapshot and refuse_on_cache_miss beside the parts), upgraded:
    `read` uses it, and so do the release manifests' layout upgrades (infra/perf/releases.py)."""
    if "startup" in data or not {"gpu_snapshot", "refuse_on_cache_miss"} & set(data):
        return data
    old = {k: data[k] for k in ("gpu_snapshot", "refuse_on_cache_miss") if k in data}
    return {k: v for k, v in data.items() if k not in old} | {"startup": old}
