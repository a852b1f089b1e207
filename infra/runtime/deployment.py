"""A Deployment: one recipe resolved against one environment's settings.

It is the single source of truth for everything that gets built, deployed or
printed: `infra/runtime/spec.py` turns it into the exact Modal options that `infra/runtime/app.py`
and `infra/runtime/jobs.py` pass to Modal and that `plan` prints, and the containers
receive it verbatim as JSON (`INFRA_DEPLOYMENT`), so the definition Modal
imports in a container is the one that was deployed, by construction.

It is split the way responsibility is split: `recipe` is the resolved recipe
(everything about serving the model, which a promotion carries whole from one
environment to the next), and the other parts belong to the environment (where
it runs, how many replicas, who may call it, which caches it reads). The parts
mirror the sections of `environments/<env>.toml` and use their names.

Standard library only: the server container imports it without pydantic.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from infra.runtime.recipes.base import Recipe
from infra.runtime.schedule import Window

DEPLOYMENT_VARIABLE = "INFRA_DEPLOYMENT"


@dataclass(frozen=True)
class ModalTarget:
    """Where the apps live on Modal (settings: [modal])."""

    environment: str  # the Modal Environment the apps are deployed into
    cache_environment: str  # the Modal Environment holding the weight and kernel cache Volumes
    app_name: str  # the server's app; the download and compile jobs run in `jobs_app_name`

    @property
    def jobs_app_name(self) -> str:
        return f"{self.app_name}-jobs"


@dataclass(frozen=True)
class Scaling:
    """Replicas (settings: [scaling]); Modal's autoscaler option names."""

    min_containers: int
    max_containers: int | None
    buffer_containers: int | None
    scaledown_window: int | None
    schedule: tuple[Window, ...] = ()  # windows with another warm floor (infra/runtime/schedule.py)


@dataclass(frozen=True)
class Placement:
    """Where containers and Modal's proxies run (settings: [placement], else the recipe's defaults)."""

    compute_region: str | None
    routing_region: str


@dataclass(frozen=True)
class Server:
    """The SGLang process's port and where it may read weights from (settings: [server])."""

    port: int
    hf_hub_offline: bool  # the server reads weights from the Volume only, never from the Hub


@dataclass(frozen=True)
class Auth:
    proxy_auth: bool  # callers must send Modal-Key / Modal-Secret


@dataclass(frozen=True)
class Secrets:
    hf_token_secret: str | None  # the NAME of a Modal Secret holding HF_TOKEN, never a token


@dataclass(frozen=True)
class Caches:
    """The Modal Volumes (settings: [caches]) in `modal.cache_environment` (releases: `modal.environment`)."""

    weights_volume: str
    kernels_volume: str
    releases_volume: str


@dataclass(frozen=True)
class Deployment:
    env: str
    recipe: Recipe
    modal: ModalTarget
    scaling: Scaling
    placement: Placement
    server: Server
    auth: Auth
    secrets: Secrets
    caches: Caches
    gpu_snapshot: bool  # Modal GPU memory snapshots (settings: cold_start.gpu_snapshot)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        # Field and key order preserved, not sorted: the image's ENV layer is built from
        # `recipe.image_env` in order, and the container must rebuild the very same layers.
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        return decode(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        return cls.from_dict(json.loads(text))

    def with_recipe(self, recipe: Recipe) -> Deployment:
        """The same environment serving another resolved recipe (a promoted release, pinned revisions)."""
        return dataclasses.replace(self, recipe=recipe)


# ---------------------------------------------------------------------------- JSON -> dataclasses


class DecodeError(ValueError):
    """Stored data that is not a Deployment of this version of the package."""


def decode(cls: type, data: Any, where: str = "deployment") -> Any:
    """Rebuild a (nested, frozen) dataclass from `dataclasses.asdict` output, exactly.

    Driven by the type hints, so a new field needs no code here. Unknown keys, and
    missing keys without a default, are errors: a Deployment must round-trip exactly,
    not approximately. A missing key with a default (a field added since the data was
    written, e.g. in a release manifest) takes that default.
    """
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if unknown := sorted(set(data) - {f.name for f in fields}):
        raise DecodeError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for f in fields:
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DecodeError(f"{where}: missing field '{f.name}'")
    return cls(**values)


def _value(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, where)
    if dataclasses.is_dataclass(tp):
        return decode(tp, value, where)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, where) for v in value)
        return tuple(_value(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is dict:
        return {k: _value(args[1], v, where) for k, v in value.items()}
    return value
