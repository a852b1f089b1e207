"""A Deployment: one recipe resolved against one environment's settings.

It is the single source of truth for everything that gets built, deployed or
printed: `plan` renders it, `infra/app.py` turns it into Modal objects, and the
server container receives it verbatim as JSON (`INFRA_DEPLOYMENT`), so the
definition Modal imports in the container is the one that was deployed, by
construction. It therefore uses only the standard library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra import compile_cache
from infra.recipes.base import (
    KERNELS_PATH,
    HF_CACHE_PATH,
    SmokeTest,
    SpeculativeDecoding,
    Warmup,
)

if TYPE_CHECKING:  # the container never imports settings (pydantic-settings is a local-only dependency)
    pass

DEPLOYMENT_VARIABLE = "INFRA_DEPLOYMENT"
SERVER_NAME = "server"  # the Server's name inside its Modal app
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Time Modal needs around the health wait: process launch, Volume mounts, GPU init.
STARTUP_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class Deployment:
    env: str
    recipe: str
    app_name: str
    modal_environment: str
    cache_environment: str

    # Container image
    sglang_image: str
    sglang_version: str
    pip_installs: tuple[str, ...]
    image_env: dict[str, str]

    # Model
    model: str
    model_revision: str
    model_size_gb: float
    draft_model: str | None
    draft_revision: str | None
    draft_size_gb: float
    gated: bool
    hf_token_secret: str | None
    hf_hub_offline: bool

    # GPUs
    gpu_type: str
    gpu_count: int
    tp_size: int

    # SGLang
    port: int
    target_concurrency: int
    mem_fraction_static: float
    extra_flags: tuple[tuple[str, str | None], ...]
    speculative: SpeculativeDecoding | None

    # Modal
    compute_region: str | None
    routing_region: str
    min_containers: int
    max_containers: int | None
    buffer_containers: int | None
    scaledown_window: int | None
    exit_grace_period: int
    startup_timeout: int
    proxy_auth: bool
    gpu_snapshot: bool

    # Volumes
    weights_volume: str
    kernels_volume: str
    releases_volume: str

    # Readiness
    readiness_timeout: int
    health_poll_interval: float
    warmup: Warmup
    smoke: SmokeTest = field(default_factory=lambda: SmokeTest(prompt="Tell me a joke."))

    # ------------------------------------------------------------------ derived

    @property
    def gpu(self) -> str:
        """Modal's GPU request string, e.g. "H100!:2"."""
        return f"{self.gpu_type}:{self.gpu_count}"

    @property
    def cuda_graph_max_bs(self) -> int:
        """Capture CUDA graphs only for batch sizes we are likely to see: twice the concurrency target."""
        return 2 * self.target_concurrency

    @property
    def warmup_budget(self) -> float:
        return self.warmup.count * self.warmup.timeout

    @property
    def volume_mounts(self) -> dict[str, str]:
        """Container path -> Volume name. Both caches, in every container that runs SGLang."""
        return {HF_CACHE_PATH: self.weights_volume, KERNELS_PATH: self.kernels_volume}

    @property
    def server_env(self) -> dict[str, str]:
        """Variables set on the server container (not baked into the image, so changing them rebuilds nothing)."""
        env = {DEPLOYMENT_VARIABLE: self.to_json()}
        env |= compile_cache.environment()  # every JIT cache on local disk at the fixed path
        if self.hf_hub_offline:
            env["HF_HUB_OFFLINE"] = "1"
        if self.gpu_snapshot:
            env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # as Modal's SGLang snapshot example: snapshot-safe
        return env

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        # Field and key order preserved, not sorted: the image's ENV layer is built from
        # `image_env` in order, and the container must rebuild the very same layers.
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        data = dict(data)
        data["pip_installs"] = tuple(data["pip_installs"])
        data["extra_flags"] = tuple((flag, value) for flag, value in data["extra_flags"])
        data["speculative"] = SpeculativeDecoding(**data["speculative"]) if data["speculative"] else None
        data["warmup"] = Warmup(**data["warmup"])
        data["smoke"] = SmokeTest(**data["smoke"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        return cls.from_dict(json.loads(text))

    def fingerprint(self, *fields: str) -> str:
        """A short, stable hash of the named fields (all fields when none are named)."""
        data = self.to_dict()
        chosen = {k: data[k] for k in fields} if fields else data
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]

    def with_revisions(self, model_revision: str | None = None, draft_revision: str | None = None) -> Deployment:
        """The same deployment with revisions resolved (by the download stage or a release manifest)."""
        changes: dict[str, Any] = {}
        if model_revision:
            changes["model_revision"] = model_revision
        if draft_revision and self.draft_model:
            changes["draft_revision"] = draft_revision
            changes["speculative"] = dataclasses.replace(self.speculative, draft_revision=draft_revision)
        return dataclasses.replace(self, **changes) if changes else self

    def repositories(self) -> list[tuple[str, str]]:
        """(repo, revision) of every model the server loads; an unset draft revision means the Hub's "main"."""
        repos = [(self.model, self.model_revision)]
        if self.draft_model:
            repos.append((self.draft_model, self.draft_revision or "main"))
        return repos

    def unpinned(self) -> list[str]:
        """Human descriptions of revisions that are not 40-hex commits."""
        out = []
        if not COMMIT_RE.match(self.model_revision or ""):
            out.append(f"model {self.model} revision {self.model_revision!r} is not a commit")
        if self.draft_model and not COMMIT_RE.match(self.draft_revision or ""):
            shown = repr(self.draft_revision) if self.draft_revision else "unset (follows the Hub's main branch)"
            out.append(f"draft model {self.draft_model} revision is {shown}")
        return out


def current() -> Deployment:
    """The deployment this process is about: baked JSON inside a container, settings on a laptop."""
    baked = os.environ.get(DEPLOYMENT_VARIABLE)
    if baked:
        return Deployment.from_json(baked)
    from infra.resolve import resolve  # local side only
    from infra.settings import load_settings

    settings = load_settings()
    names = settings.selected_recipes()
    if len(names) != 1:
        from infra.errors import ConfigError

        raise ConfigError(
            f"environment '{settings.env}' serves {len(names)} recipes ({', '.join(names)}); "
            "choose one with INFRA_RECIPE (or --recipe)"
        )
    return resolve(settings, names[0])


def check_modal_environment(d: Deployment, environ: dict[str, str], is_local: bool) -> None:
    """On the deploying machine, MODAL_ENVIRONMENT must name the deployment's Modal Environment.

    A deploy that silently lands in the profile's default environment is a bug; inside
    a container (is_local False) Modal has already placed us.
    """
    if is_local and environ.get("MODAL_ENVIRONMENT") != d.modal_environment:
        from infra.errors import ConfigError

        raise ConfigError(
            f"environment '{d.env}' deploys into Modal Environment '{d.modal_environment}', "
            f"but MODAL_ENVIRONMENT is {environ.get('MODAL_ENVIRONMENT')!r}: run "
            f"`invoke deploy --env {d.env}` or `modal deploy -m infra.app --env {d.modal_environment}`"
        )
