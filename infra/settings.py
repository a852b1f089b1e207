"""Typed per-environment settings, loaded with pydantic-settings.

Sources, lowest to highest precedence:

1. the defaults below (and, for per-recipe knobs, the recipe itself),
2. `environments/<env>.toml`, the reviewed, committed description of an environment,
3. environment variables `INFRA_<SECTION>__<KEY>` (e.g. `INFRA_SCALING__MIN_CONTAINERS=2`),
4. explicit overrides passed by a task (`--set scaling.min_containers=2`).

Every mistake becomes one `ConfigError` line naming where the value came from,
the field, the value and what is allowed; this module never lets a pydantic
traceback reach the user. Only the local side imports it: containers receive the
already-resolved `Deployment` (infra/deployment.py).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from infra import catalog
from infra.errors import ConfigError
from infra.recipes import RECIPES

ENV_PREFIX = "INFRA_"
# Variables with our prefix that are not settings: they select what to load.
SELECTOR_VARIABLES = {"INFRA_ENV", "INFRA_RECIPE", "INFRA_CONFIG_DIR", "INFRA_DEPLOYMENT", "INFRA_STATE_DIR", "INFRA_REMOTE"}


def config_dir() -> Path:
    """The folder of environment files; INFRA_CONFIG_DIR points elsewhere (tests, other repos)."""
    return Path(os.environ.get("INFRA_CONFIG_DIR") or Path(__file__).resolve().parent.parent / "environments")


def known_environments() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.toml"))


class Section(BaseModel):
    """A settings section: unknown keys are errors (typo protection), values are checked strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_region(value: str | None, allowed: frozenset[str]) -> str | None:
    if value is not None and value not in allowed:
        raise ValueError(f"not a Modal region name; allowed: {', '.join(sorted(allowed))}")
    return value


def _check_gpu(value: str | None) -> str | None:
    if value is not None and value not in catalog.GPUS:
        raise ValueError(f"unknown GPU type; allowed: {', '.join(catalog.GPUS)}")
    return value


class ModalTarget(Section):
    environment: str | None = Field(
        default=None, description="Modal Environment to deploy into (default: the environment's own name)"
    )
    cache_environment: str | None = Field(
        default=None, description="Modal Environment holding the weight and kernel cache Volumes (default: environment)"
    )
    app_prefix: str = Field(default="sglang", description="Modal app name = <app_prefix>-<recipe>")


class Scaling(Section):
    min_containers: int = Field(default=0, ge=0, description="warm replicas kept running at all times")
    max_containers: int | None = Field(default=None, ge=1, description="upper bound on replicas (None: Modal's)")
    buffer_containers: int | None = Field(default=None, ge=0)
    scaledown_window: int | None = Field(default=None, ge=2, le=3600, description="seconds idle before scale-down")
    allow_warm_replicas: bool = Field(default=True, description="false forbids min_containers > 0 (cost guard)")

    @model_validator(mode="after")
    def _consistent(self) -> Scaling:
        if self.max_containers is not None and self.min_containers > self.max_containers:
            raise ValueError(
                f"min_containers={self.min_containers} exceeds max_containers={self.max_containers}; "
                "min_containers must be <= max_containers"
            )
        if self.min_containers > 0 and not self.allow_warm_replicas:
            raise ValueError(
                f"min_containers={self.min_containers} but this environment forbids warm replicas "
                "(allow_warm_replicas = false); allowed: min_containers = 0"
            )
        return self


class Placement(Section):
    compute_region: str | None = Field(default=None, description="where containers run (default: the recipe's)")
    routing_region: str | None = Field(default=None, description="where Modal's proxies run (default: the recipe's)")

    _compute = field_validator("compute_region")(lambda v: _check_region(v, catalog.COMPUTE_REGIONS))
    _routing = field_validator("routing_region")(lambda v: _check_region(v, catalog.ROUTING_REGIONS))


class Server(Section):
    port: int = Field(default=8000, ge=1, le=65535)
    hf_hub_offline: bool = Field(default=False, description="server reads weights only from the Volume")


class Auth(Section):
    proxy_auth: bool = Field(default=True, description="require Modal-Key/Modal-Secret headers on the endpoint")


class Secrets(Section):
    hf_token_secret: str | None = Field(default=None, description="Modal Secret holding HF_TOKEN")


class Caches(Section):
    weights_volume: str = "huggingface-cache"
    kernels_volume: str = "deepgemm-cache"
    releases_volume: str = "sglang-releases"
    volume_read_gbps: float = Field(default=1.5, gt=0, description="Volume read rate for cold-start estimates")


class Costs(Section):
    gpu_hourly_usd: dict[str, float] = Field(default_factory=dict, description="overrides catalog list prices")

    @field_validator("gpu_hourly_usd")
    @classmethod
    def _known_gpus(cls, v: dict[str, float]) -> dict[str, float]:
        for gpu, price in v.items():
            _check_gpu(gpu)
            if price < 0:
                raise ValueError(f"price for {gpu} is negative")
        return v


class ColdStart(Section):
    gpu_snapshot: bool = Field(default=False, description="Modal GPU memory snapshots (alpha)")
    image_pull_gbps: float = Field(default=1.0, gt=0)
    image_size_gb: dict[str, float] = Field(default_factory=dict, description="image tag -> size, for estimates")
    cuda_graph_seconds: float = Field(default=60.0, ge=0, description="CUDA-graph capture, per start")
    server_boot_seconds: float = Field(default=30.0, ge=0, description="process start, imports, NCCL init")
    margin: float = Field(default=1.25, ge=1.0, description="startup_timeout must exceed estimate x margin")


class Release(Section):
    guarded: bool = Field(default=False, description="deploys need a clean tree on main_branch and confirmation")
    main_branch: str = "main"
    require_pinned_revisions: bool = Field(default=False, description="every revision must be a 40-hex commit")


class RecipeOverrides(Section):
    """Per-recipe knobs an environment may change; unset means the recipe's value."""

    model: str | None = Field(default=None, description="serve another repository with this recipe (e.g. a fine-tune)")
    gated: bool | None = Field(default=None, description="the repository needs a Hugging Face token")
    model_revision: str | None = None
    draft_revision: str | None = None
    gpu_type: str | None = None
    gpu_count: int | None = Field(default=None, ge=1, le=catalog.MAX_GPUS_PER_CONTAINER)
    tp_size: int | None = Field(default=None, ge=1)
    target_concurrency: int | None = Field(default=None, gt=0)
    readiness_timeout: int | None = Field(default=None, gt=0)
    startup_timeout: int | None = Field(default=None, gt=0)
    compute_region: str | None = None
    routing_region: str | None = None
    gpu_snapshot: bool | None = None

    _gpu = field_validator("gpu_type")(_check_gpu)
    _compute = field_validator("compute_region")(lambda v: _check_region(v, catalog.COMPUTE_REGIONS))
    _routing = field_validator("routing_region")(lambda v: _check_region(v, catalog.ROUTING_REGIONS))

    @field_validator("model")
    @classmethod
    def _model_id(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", v):
            raise ValueError("not a Hugging Face repository id; allowed: 'org/name'")
        return v

    @field_validator("model_revision", "draft_revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("revision is empty; give a 40-hex commit (or a branch or tag where pinning is not required)")
        return v


class Settings(BaseSettings):
    """One environment's settings. `plan` prints them resolved against each recipe."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    env: str
    serves: list[str] = Field(min_length=1, description="recipes this environment deploys")
    recipe: str | None = Field(default=None, description="the recipe a command acts on (--recipe / INFRA_RECIPE)")
    modal: ModalTarget = ModalTarget()
    scaling: Scaling = Scaling()
    placement: Placement = Placement()
    server: Server = Server()
    auth: Auth = Auth()
    secrets: Secrets = Secrets()
    caches: Caches = Caches()
    costs: Costs = Costs()
    cold_start: ColdStart = ColdStart()
    release: Release = Release()
    recipes: dict[str, RecipeOverrides] = Field(default_factory=dict)

    @field_validator("serves")
    @classmethod
    def _known_recipes(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_recipe_name(name)
        return v

    @field_validator("recipes")
    @classmethod
    def _known_override_keys(cls, v: dict[str, RecipeOverrides]) -> dict[str, RecipeOverrides]:
        for name in v:
            _check_recipe_name(name)
        return v

    @property
    def modal_environment(self) -> str:
        return self.modal.environment or self.env

    @property
    def cache_environment(self) -> str:
        return self.modal.cache_environment or self.modal_environment

    def selected_recipes(self) -> list[str]:
        return [self.recipe] if self.recipe else list(self.serves)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: explicit overrides, then INFRA_* variables, then the environment file.
        return (init_settings, env_settings, _EnvironmentFile(settings_cls))


class _EnvironmentFile(PydanticBaseSettingsSource):
    """The parsed `environments/<env>.toml` of the load in progress (parsed once, by `load_settings`)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ returns the whole table
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _FILE_DATA.get({})


_FILE_DATA: ContextVar[dict[str, Any]] = ContextVar("_FILE_DATA")


def _check_recipe_name(name: str) -> None:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe '{name}'; known recipes: {', '.join(RECIPES)}")


# ---------------------------------------------------------------------------- loading


def load_settings(env: str | None = None, recipe: str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load one environment's settings from its file, INFRA_* variables and explicit overrides."""
    env = env or os.environ.get("INFRA_ENV")
    known = known_environments()
    if not env:
        raise ConfigError(f"no environment chosen: pass --env (or set INFRA_ENV) to one of {', '.join(known)}")
    if env not in known:
        raise ConfigError(f"unknown environment '{env}'; choose one of {', '.join(known)} ({config_dir()})")
    path = config_dir() / f"{env}.toml"
    file_data = _read_toml(path)
    env_data = _environment_variables()
    explicit = _nested(overrides or {})
    recipe_source = "--recipe" if recipe else "INFRA_RECIPE"
    recipe = recipe or os.environ.get("INFRA_RECIPE") or None
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"{recipe_source}: unknown recipe '{recipe}'; known recipes: {', '.join(RECIPES)}")
        explicit["recipe"] = recipe
    if "env" in file_data and file_data["env"] != env:
        raise ConfigError(f"{_rel(path)}: env = {file_data['env']!r} but the file is for '{env}'; make them agree")

    token = _FILE_DATA.set(file_data)
    try:
        settings = Settings(env=env, **explicit)
    except ValidationError as exc:
        merged = _deep_merge(_deep_merge(file_data, env_data), explicit)
        raise ConfigError(_describe(exc, path, env_data, explicit, merged)) from None
    finally:
        _FILE_DATA.reset(token)
    if settings.recipe is not None and settings.recipe not in settings.serves:
        raise ConfigError(
            f"{recipe_source}: recipe '{settings.recipe}' is not served by environment '{env}'; "
            f"it serves: {', '.join(settings.serves)} ({_rel(path)}: serves)"
        )
    return settings


def _environment_variables() -> dict[str, Any]:
    """INFRA_* variables parsed the pydantic-settings way (nested delimiter, JSON for lists and tables)."""
    source = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False)
    data = dict(source())
    data.pop("env", None)  # INFRA_ENV selects the file; it is not an override of it
    data.pop("recipe", None)
    return data


def unknown_environment_variables(environ: dict[str, str] | None = None) -> list[str]:
    """Warnings for INFRA_* variables that match no setting (a typo silently does nothing otherwise)."""
    environ = dict(os.environ if environ is None else environ)
    known = set(_setting_paths())
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in SELECTOR_VARIABLES:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] == "recipes" and len(path) == 3 and path[1] in RECIPES and path[2] in RecipeOverrides.model_fields:
            continue
        dotted = ".".join(path)
        if dotted in known:
            continue
        close = difflib.get_close_matches(dotted, known, n=1)
        hint = f"; did you mean INFRA_{close[0].upper().replace('.', '__')}?" if close else ""
        warnings.append(f"warning: environment variable {name} matches no setting and is ignored{hint}")
    return warnings


def _setting_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths += _setting_paths(ann, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


# ---------------------------------------------------------------------------- helpers


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--set a.b=value` pairs -> {"a.b": value}; values are TOML literals, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set scaling.min_containers=2")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"scaling.min_containers": 2, "recipes.qwen3.6-35b-vlm.tp_size": 1} -> nested dicts.

    Recipe names may contain dots, so `recipes.<name>.<field>` matches the longest known name.
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("recipes."):
            rest = key[len("recipes.") :]
            name = max((n for n in RECIPES if rest.startswith(n + ".")), key=len, default=None)
            parts = ["recipes", name, rest[len(name) + 1 :]] if name else key.split(".")
        else:
            parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_rel(path)}: malformed TOML: {exc}") from None


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _lookup(data: dict, loc: tuple) -> tuple[bool, Any]:
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Settings
    for part in loc:
        if model is Settings and part == "recipes":
            model = "recipes"
            continue
        if model == "recipes":
            model = RecipeOverrides
            continue
        info = model.model_fields.get(part) if isinstance(model, type) else None
        if info is None:
            return None
        model = info.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(exc: ValidationError, path: Path, env_data: dict, explicit: dict, merged: dict) -> str:
    """The first validation error as one line: source, field, value, what is allowed."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    field = ".".join(loc) or "settings"
    if _lookup(explicit, loc)[0]:
        source = "--set"
    elif _lookup(env_data, loc)[0]:
        source = f"{ENV_PREFIX}{'__'.join(loc).upper()}"
    else:
        source = _rel(path)
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        choices = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(loc[-1], choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        allowed = f" (allowed here: {', '.join(choices)})" if choices else ""
        return f"{source}: unknown setting '{field}'{hint}{allowed}"
    if err["type"] == "missing":
        return f"{source}: required setting '{field}' is missing"
    found, value = _lookup(merged, loc)
    message = err["msg"].removeprefix("Value error, ")
    shown = f" = {value!r}" if found and not isinstance(value, dict) else ""
    return f"{source}: {field}{shown}: {message}"
