"""Typed per-environment settings: three layers merged once, validated once.

Layers, lowest to highest precedence:

1. the defaults below (and, for per-recipe knobs, the recipe itself),
2. `environments/<env>.toml`, the reviewed, committed description of an environment,
3. environment variables `INFRA_<SECTION>__<KEY>` (e.g. `INFRA_SCALING__MIN_CONTAINERS=2`),
4. explicit overrides passed by a task (`--set scaling.min_containers=2`).

Variables and `--set` values are TOML literals (`2`, `true`, `"text"`, `["a", "b"]`,
`{ min_containers = 2 }`; JSON objects too), otherwise plain strings; the file is TOML.
Each layer is read once into a `Layer` that remembers where each key came from; the
layers are merged once and the result validated once, strictly (a boolean is not a
replica count, a string is not a list). Every mistake becomes one `ConfigError` line
naming the source (file, variable or `--set`), the setting, the value (masked when it
looks like a credential) and what is allowed; no pydantic traceback reaches the user.
Only the local side imports this module: containers receive the resolved
`Deployment` (infra/runtime/deployment.py).

Why not pydantic-settings' own sources: an error must name the layer a value came
from, which needs the layers' data before the merge; its sources merge inside the
model's constructor, so the project once smuggled the file's data in through a
ContextVar and parsed the variables twice. Reading three plain layers here, and
validating one merged dict with pydantic, is simpler and exact.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
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

from infra.runtime import catalog, schedule
from infra.runtime.errors import ConfigError
from infra.control.objectives import Gate, GateOverrides
from infra.runtime.recipes import RECIPES
from infra.control.secrets import credential_kind, looks_like_credential, shown

ENV_PREFIX = "INFRA_"
# Variables with our prefix that are not settings: they select what to load.
SELECTOR_VARIABLES = {"INFRA_ENV", "INFRA_RECIPE", "INFRA_CONFIG_DIR", "INFRA_DEPLOYMENT", "INFRA_STATE_DIR", "INFRA_REMOTE"}
# Settings chosen on the command line, never by --set or a variable: they pick the file to read.
SELECTORS = {"env": "--env (or INFRA_ENV)", "recipe": "--recipe (or INFRA_RECIPE)"}
MODAL_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # Modal's rule for object names (Secrets, Volumes...)


def config_dir() -> Path:
    """The folder of environment files; INFRA_CONFIG_DIR points elsewhere (tests, other repos)."""
    return Path(os.environ.get("INFRA_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "environments")


def known_environments() -> list[str]:
    directory = config_dir()
    if not directory.is_dir():
        source = "INFRA_CONFIG_DIR" if os.environ.get("INFRA_CONFIG_DIR") else "the package"
        raise ConfigError(f"{source}: configuration directory {directory} does not exist; "
                          "allowed: a folder of <env>.toml files (unset INFRA_CONFIG_DIR to use environments/)")
    return sorted(p.stem for p in directory.glob("*.toml"))


class Section(BaseModel):
    """A settings section: unknown keys are errors (typo protection), values are checked strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _modal_name(value: str | None) -> str | None:
    if value is None:
        return None
    if looks_like_credential(value):
        raise ValueError(f"this is the NAME of a Modal Secret, but the value looks like a {credential_kind(value)}: never "
                         "put a credential in settings; store it with `modal secret create NAME HF_TOKEN=...` and give NAME here")
    if not MODAL_NAME_RE.match(value):
        raise ValueError("not a Modal object name; allowed: 1 to 64 letters, digits, '.', '_' or '-'")
    return value


class ModalTarget(Section):
    environment: str | None = Field(
        default=None, description="Modal Environment to deploy into (default: the environment's own name)"
    )
    cache_environment: str | None = Field(
        default=None, description="Modal Environment holding the weight and kernel cache Volumes (default: environment)"
    )
    app_prefix: str = Field(default="sglang", description="Modal app name = <app_prefix>-<recipe>")

    _names = field_validator("environment", "cache_environment", "app_prefix")(_modal_name)


class ScheduleWindow(Section):
    """One `[[scaling.schedule]]` window: from each `start` firing to the next `end` firing, this floor holds
    (infra/runtime/schedule.py: overlaps take the highest floor, field by field)."""

    name: str
    start: str = Field(description="cron expression: the window opens when it fires")
    end: str = Field(description="cron expression: the window closes when it fires")
    timezone: str = Field(description="IANA time zone both expressions are read in, e.g. America/New_York")
    min_containers: int = Field(ge=0, description="warm replicas while the window is active")
    max_containers: int | None = Field(default=None, ge=1, description="cap while active (default: scaling.max_containers)")
    buffer_containers: int | None = Field(default=None, ge=0, description="default: scaling.buffer_containers")

    _name = field_validator("name")(schedule.check_name)
    _cron = field_validator("start", "end")(schedule.check_cron)
    _zone = field_validator("timezone")(schedule.check_timezone)

    def window(self) -> schedule.Window:
        return schedule.Window(**self.model_dump())


class Scaling(Section):
    min_containers: int = Field(default=0, ge=0, description="warm replicas kept running at all times")
    max_containers: int | None = Field(default=None, ge=1, description="upper bound on replicas (None: Modal's)")
    buffer_containers: int | None = Field(default=None, ge=0)
    scaledown_window: int | None = Field(default=None, ge=2, le=3600, description="seconds idle before scale-down")
    allow_warm_replicas: bool = Field(default=True, description="false forbids min_containers > 0 (cost guard)")
    schedule: list[ScheduleWindow] = Field(default_factory=list, description="windows with another warm floor")

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
        schedule.check_windows([w.window() for w in self.schedule], self, allow_warm_replicas=self.allow_warm_replicas)
        return self


class Placement(Section):
    compute_region: str | None = Field(default=None, description="where containers run (default: the recipe's)")
    routing_region: str | None = Field(default=None, description="where Modal's proxies run (default: the recipe's)")

    _compute = field_validator("compute_region")(catalog.check_compute_region)
    _routing = field_validator("routing_region")(catalog.check_routing_region)


# SGLang 0.5.11 also listens on port + 10000 and refuses to start above this (seen on the H100).
MAX_SGLANG_PORT = 65535 - 10000


class Server(Section):
    port: int | None = Field(default=None, ge=1, le=65535, description="SGLang's port in the container (default: the recipe's)")
    hf_hub_offline: bool = Field(default=False, description="server reads weights only from the Volume")

    @field_validator("port")
    @classmethod
    def _room_for_sglangs_second_port(cls, v: int | None) -> int | None:
        if v is not None and v > MAX_SGLANG_PORT:
            raise ValueError(f"SGLang also listens on port + 10000, so it refuses ports above {MAX_SGLANG_PORT}; "
                             f"allowed: 1 to {MAX_SGLANG_PORT}")
        return v


class Auth(Section):
    proxy_auth: bool = Field(default=True, description="require Modal-Key/Modal-Secret headers on the endpoint")


class Secrets(Section):
    hf_token_secret: str | None = Field(default=None, description="NAME of the Modal Secret holding HF_TOKEN")

    _name = field_validator("hf_token_secret")(_modal_name)


class Caches(Section):
    weights_volume: str = "huggingface-cache"
    kernels_volume: str = "deepgemm-cache"
    releases_volume: str = "sglang-releases"
    volume_read_gbps: float = Field(default=1.5, gt=0, description="Volume read rate for cold-start estimates")

    _names = field_validator("weights_volume", "kernels_volume", "releases_volume")(_modal_name)


class Costs(Section):
    gpu_hourly_usd: dict[str, float] = Field(default_factory=dict, description="overrides catalog list prices")

    @field_validator("gpu_hourly_usd")
    @classmethod
    def _known_gpus(cls, v: dict[str, float]) -> dict[str, float]:
        for gpu, price in v.items():
            catalog.check_gpu(gpu)
            if price < 0:
                raise ValueError(f"price for {gpu} is negative")
        return v


class ColdStart(Section):
    gpu_snapshot: bool = Field(default=False, description="Modal GPU memory snapshots (alpha)")
    image_pull_gbps: float = Field(default=1.0, gt=0)
    image_size_gb: dict[str, float] = Field(default_factory=dict, description="image tag -> size, for estimates")
    cuda_graph_seconds: float = Field(default=60.0, ge=0, description="CUDA-graph capture, per start")
    jit_seconds: float = Field(default=75.0, ge=0, description="JIT during capture without the compile caches (H100: ~75 s)")
    first_speculative_seconds: float = Field(
        default=115.0, ge=0, description="the first speculative decode's JIT without the compile caches (H100: 114 s)")
    server_boot_seconds: float = Field(default=30.0, ge=0, description="process start, imports, NCCL init")
    margin: float = Field(default=1.25, ge=1.0, description="startup_timeout must exceed estimate x margin")


class Release(Section):
    guarded: bool = Field(default=False, description="deploys need a clean tree on main_branch and confirmation")
    promote_from: str | None = Field(
        default=None, description="the environment whose releases `invoke promote` may bring here (none: deployed directly)"
    )
    main_branch: str = "main"
    require_pinned_revisions: bool = Field(default=False, description="every revision must be a 40-hex commit")


class RecipeOverrides(Section):
    """Per-recipe knobs an environment may change; unset means the recipe's value.

    Each knob (`given()`) is a field of the recipe (infra/runtime/recipes/base.py) or of a
    deployment part (placement, the GPU-snapshot switch) of the same name:
    infra/control/resolve.py routes them by name, so adding one here needs no other list.
    `gate` is not a knob: it is this recipe's change to the environment's promotion
    gate (infra/control/objectives.py), read by `resolve.gate_for`, never part of what is
    deployed (the recipe's own field is `gate_workload`, what the gate sends).
    """

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
    gate: GateOverrides = Field(default_factory=GateOverrides, description="this recipe's objectives (see [gate])")

    _gpu = field_validator("gpu_type")(catalog.check_gpu)
    _compute = field_validator("compute_region")(catalog.check_compute_region)
    _routing = field_validator("routing_region")(catalog.check_routing_region)

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

    def given(self) -> dict[str, Any]:
        """The knobs this environment set, by name (not `gate`, which configures promotions, not the deployment)."""
        return {name: value for name, value in self if value is not None and name != "gate"}


class Settings(BaseModel):
    """One environment's settings. `plan` prints them resolved against each recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

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
    gate: Gate = Field(default_factory=Gate, description="promotions into this environment are measured first")
    recipes: dict[str, RecipeOverrides] = Field(default_factory=dict)

    @field_validator("serves")
    @classmethod
    def _known_recipes(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_recipe_name(name)
        if repeated := sorted({name for name in v if v.count(name) > 1}):
            raise ValueError(f"lists {', '.join(repeated)} more than once; allowed: each recipe once")
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


def _check_recipe_name(name: str) -> None:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe '{name}'; known recipes: {', '.join(RECIPES)}")


# ---------------------------------------------------------------------------- layers


@dataclass
class Layer:
    """One source of settings as nested data, and where each of its keys came from."""

    data: dict[str, Any]
    label: str  # the source, for error messages: a file path, "--set"
    names: dict[tuple[str, ...], str] = field(default_factory=dict)  # key path -> its own source (variables)

    def source_of(self, loc: tuple[str, ...]) -> str | None:
        """This layer's name for the source of `loc` if it set `loc`, a table above it, or anything below it."""
        for path, name in self.names.items():
            if path[: len(loc)] == loc or loc[: len(path)] == path:
                return name
        return self.label if _touches(self.data, loc) else None


def _touches(data: Any, loc: tuple[str, ...]) -> bool:
    for part in loc:
        if not isinstance(data, dict):
            return True  # a value set above `loc` (e.g. a whole table given as one value)
        if part not in data:
            return False
        data = data[part]
    return True


def file_layer(path: Path) -> Layer:
    label = _rel(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "allowed: a UTF-8 TOML file, save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: malformed TOML: {exc}") from None
    return Layer(data, label)


def literal(raw: str) -> Any:
    """A value as written in a variable or `--set`: a TOML literal, a JSON object, else the text itself."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if raw.lstrip().startswith("{"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
    return raw


def variables_layer(environ: dict[str, str] | None = None) -> tuple[Layer, list[str]]:
    """INFRA_<SECTION>__<KEY> variables that address a setting, and warnings for those that match none."""
    environ = dict(os.environ if environ is None else environ)
    layer, warnings = Layer({}, "environment variables"), []
    top = set(Settings.model_fields) - set(SELECTORS)
    known = _setting_paths()
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in SELECTOR_VARIABLES:
            continue
        path = tuple(name[len(ENV_PREFIX):].lower().split("__"))
        if path[0] not in top:  # aimed at nothing we know: a typo silently doing nothing deserves a warning
            dotted = ".".join(path)
            close = difflib.get_close_matches(dotted, known, n=1)
            hint = f"; did you mean INFRA_{close[0].upper().replace('.', '__')}?" if close else ""
            warnings.append(f"warning: environment variable {name} matches no setting and is ignored{hint}")
            continue
        _put(layer.data, path, literal(environ[name]), name)
        layer.names[path] = name
    return layer, warnings


def overrides_layer(overrides: dict[str, Any]) -> Layer:
    layer = Layer({}, "--set")
    for key, value in overrides.items():
        path = _split(key)
        if path[0] in SELECTORS:
            raise ConfigError(f"--set {key}: '{path[0]}' chooses what to load; allowed: {SELECTORS[path[0]]}, not --set")
        _put(layer.data, path, value, f"--set {key}")
    return layer


def _split(key: str) -> tuple[str, ...]:
    """'recipes.qwen3.6-35b-vlm.tp_size' -> ('recipes', 'qwen3.6-35b-vlm', 'tp_size'): recipe names contain dots."""
    if key.startswith("recipes."):
        rest = key[len("recipes."):]
        name = max((n for n in RECIPES if rest.startswith(n + ".")), key=len, default=None)
        if name:
            return ("recipes", name, *rest[len(name) + 1:].split("."))
    return tuple(key.split("."))


def _put(data: dict, path: tuple[str, ...], value: Any, source: str) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: '{'.'.join(path[:-1])}' is given both as a value and as a table; allowed: one of them")
    node[path[-1]] = value


def merge(layers: list[Layer]) -> dict[str, Any]:
    """Deep-merge layers, lowest precedence first: a higher layer's key replaces the lower one's, tables merge."""

    def deep(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            out[key] = deep(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep(merged, layer.data)
    return merged


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
    recipe_source = "--recipe" if recipe else "INFRA_RECIPE"
    recipe = recipe or os.environ.get("INFRA_RECIPE") or None
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"{recipe_source}: unknown recipe '{recipe}'; known recipes: {', '.join(RECIPES)}")

    layers = [file_layer(path), variables_layer()[0], overrides_layer(overrides or {})]
    if "env" in layers[0].data and layers[0].data["env"] != env:
        raise ConfigError(f"{layers[0].label}: env = {layers[0].data['env']!r} but the file is for '{env}'; make them agree")
    merged = merge(layers) | {"env": env, "recipe": recipe}
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also leaves the real one missing: the unknown key is the mistake to name.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(describe(first, layers, merged)) from None
    if settings.release.promote_from not in (None, *known) or settings.release.promote_from == env:
        source = next((s for layer in reversed(layers) if (s := layer.source_of(("release", "promote_from")))), layers[0].label)
        raise ConfigError(f"{source}: release.promote_from = {settings.release.promote_from!r}: not another known "
                          f"environment; allowed: one of {', '.join(e for e in known if e != env)}, or unset")
    if settings.recipe is not None and settings.recipe not in settings.serves:
        raise ConfigError(
            f"{recipe_source}: recipe '{settings.recipe}' is not served by environment '{env}'; "
            f"it serves: {', '.join(settings.serves)} ({layers[0].label}: serves)"
        )
    return settings


def unknown_environment_variables(environ: dict[str, str] | None = None) -> list[str]:
    """Warnings for INFRA_* variables that match no setting (a typo silently does nothing otherwise)."""
    return variables_layer(environ)[1]


def _setting_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths += _setting_paths(ann, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--set a.b=value` pairs -> {"a.b": value}; values are TOML literals (JSON objects too), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {shown(pair)}: expected KEY=VALUE, e.g. --set scaling.min_containers=2")
        out[key.strip()] = literal(raw)
    return out


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- one line per mistake

# What a strict type error means, said for people.
EXPECTED = {
    "int_type": "expected a whole number", "float_type": "expected a number", "bool_type": "expected true or false",
    "string_type": "expected text in quotes", "list_type": 'expected a list, e.g. ["a", "b"]',
    "dict_type": "expected a table, e.g. { key = value }", "model_type": "expected a table, e.g. { key = value }",
}
SCALAR_TYPES = {"int_type", "float_type", "bool_type", "string_type", "list_type"}


def describe(err: dict, layers: list[Layer], merged: dict) -> str:
    """A validation error as one line: source, setting, value (masked if it looks like a credential), what is allowed."""
    loc = tuple(str(p) for p in err["loc"])
    # List items by index, as TOML readers count them: gate.objectives[0].metric, scaling.schedule[1].start.
    setting = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).removeprefix(".") or "settings"
    source = next((s for layer in reversed(layers) if (s := layer.source_of(loc))), layers[0].label)
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        choices = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(loc[-1], choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        allowed = f" (allowed here: {', '.join(choices)})" if choices else ""
        return f"{source}: unknown setting '{setting}'{hint}{allowed}"
    if err["type"] == "missing":
        return f"{source}: required setting '{setting}' is missing"
    found, value = _lookup(merged, loc)
    if found and isinstance(value, dict) and err["type"] in SCALAR_TYPES - {"list_type"}:  # a list says so below
        return f"{source}: '{setting}' is a single value, not a table; nothing can be set below it"
    message = EXPECTED.get(err["type"], err["msg"].removeprefix("Value error, "))
    table = isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))
    value_text = f" = {_as_written(value)}" if found and not table else ""
    return f"{source}: {setting}{value_text}: {message}"


def _as_written(value: Any) -> str:
    """A value as the user wrote it in TOML (true, not True), masked when it looks like a credential."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return shown(value)


def _lookup(data: dict, loc: tuple) -> tuple[bool, Any]:
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The settings model at `loc` (a section, a recipe's table, a schedule window), if `loc` names one."""
    model: Any = Settings
    for part in loc:
        if model is Settings and part == "recipes":
            model = "recipes"
            continue
        if model == "recipes":
            model = RecipeOverrides
            continue
        if isinstance(model, list):  # the item of a list of tables: skip its index
            model = model[0]
            continue
        info = model.model_fields.get(part) if isinstance(model, type) else None
        if info is None:
            return None
        model = info.annotation
        if typing.get_origin(model) is list:
            model = list(typing.get_args(model))
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
