"""Typed per-environment settings, loaded by pydantic-settings from three sources over the defaults.

Precedence, highest first (`Settings.settings_customise_sources` declares it once):

1. `--set section.key=value` on a task (pydantic-settings' init source),
2. environment variables `INFRA_<SECTION>__<KEY>` (VariablesSource: prefix `INFRA_`, `__` nesting),
3. `environments/<env>.toml`, the reviewed, committed description of an environment,
4. the defaults of the sections (and, for per-recipe knobs, the recipe itself).

Variables and `--set` values are TOML literals (`2`, `true`, `"text"`, `["a", "b"]`, `{ min_containers = 2 }`;
JSON objects too), otherwise plain strings. The sections are the Deployment's own parts (infra/runtime/deployment.py)
plus those only the laptop reads; they validate strictly, the settings class itself does not (strictness there would
let the env source coerce "true" into 1). Every mistake is one `ConfigError` line naming the source (file, variable or
`--set`), the setting, the value (masked when it looks like a credential) and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from infra.control import costs
from infra.control.objectives import Gate, GateOverrides
from infra.runtime import catalog
from infra.runtime.deployment import Auth, Caches, ModalTarget, Placement, Scaling, Secrets, Server, Startup
from infra.runtime.errors import ConfigError
from infra.runtime.model import Frozen
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import Recipe, Revision
from infra.runtime.secrets import plain, shown
from infra.runtime.sentinel import Sentinel

ENV_PREFIX = "INFRA_"
ENV_DELIMITER = "__"
# Variables with our prefix that are not settings: they select what to load.
SELECTOR_VARIABLES = {"INFRA_ENV", "INFRA_RECIPE", "INFRA_CONFIG_DIR", "INFRA_DEPLOYMENT", "INFRA_STATE_DIR",
                      "INFRA_COMMIT_TAG"}
# Settings chosen on the command line, never by --set or a variable: they pick the file to read.
SELECTORS = {"env": "--env (or INFRA_ENV)", "recipe": "--recipe (or INFRA_RECIPE)"}


def config_dir() -> Path:
    """The folder of environment files; INFRA_CONFIG_DIR points elsewhere (tests, other repos)."""
    return Path(os.getenv("INFRA_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "environments")


def known_environments() -> list[str]:
    directory = config_dir()
    if not directory.is_dir():
        source = "INFRA_CONFIG_DIR" if os.getenv("INFRA_CONFIG_DIR") else "the package"
        raise ConfigError(f"{source}: configuration directory {directory} does not exist; "
                          "allowed: a folder of <env>.toml files (unset INFRA_CONFIG_DIR to use environments/)")
    return sorted(p.stem for p in directory.glob("*.toml"))


# ---------------------------------------------------------------------------- the sections only the laptop reads


class Costs(Frozen):
    """Rates that win over Modal's (live or the offline table: infra/control/costs.py), and how far a bill may stray."""

    gpu_hourly_usd: dict[str, float] = Field(
        default_factory=dict, description="USD per GPU-hour by GPU type, e.g. a negotiated rate (over live and table)")
    rates: dict[str, float] = Field(
        default_factory=dict, description="USD per unit-hour by resource: cpu (per core), memory (per GiB), a GPU type")
    mismatch_margin: float = Field(
        default=0.15, gt=0, le=10, description="`status --cost` warns when billed and estimated differ by more")

    @field_validator("gpu_hourly_usd")
    @classmethod
    def _known_gpus(cls, v: dict[str, float]) -> dict[str, float]:
        for gpu, price in v.items():
            catalog.check_gpu(gpu)
            if price < 0:
                raise ValueError(f"price for {gpu} is negative; allowed: a rate of 0 or more")
        return v

    @field_validator("rates")
    @classmethod
    def _known_resources(cls, v: dict[str, float]) -> dict[str, float]:
        seen: dict[str, str] = {}
        for name, price in v.items():
            resource = costs.check_resource(name)
            if price < 0:
                raise ValueError(f"rate for {name} is negative; allowed: a rate of 0 or more")
            if resource in seen:
                raise ValueError(f"{seen[resource]} and {name} both price {resource}; allowed: one of them")
            seen[resource] = name
        return v

    @model_validator(mode="after")
    def _each_gpu_priced_once(self) -> Costs:
        both = sorted({costs.gpu_resource(g)
                       for g in self.gpu_hourly_usd} & {costs.check_resource(r) for r in self.rates})
        if both:
            raise ValueError(f"{both[0]} is priced by both gpu_hourly_usd and rates; allowed: one of them")
        return self


class ColdStart(Frozen):
    """The figures `plan` estimates a cold start with ([cold_start]; never deployed: what a start does is [startup]).
    The phase figures it adds up are measured ones (infra/control/cold_start_figures.py), not settings: each names
    where it was measured."""

    image_pull_gbps: float = Field(default=1.0, gt=0)
    image_size_gb: dict[str, float] = Field(default_factory=dict, description="image tag -> size, for estimates")
    volume_read_gbps: float = Field(default=1.5, gt=0, description="Volume read rate for the weights' read time")
    margin: float = Field(default=1.25, ge=1.0, description="startup_timeout must exceed estimate x margin")


class Client(Frozen):
    """How this machine talks to Modal (never deployed: changing it redeploys nothing)."""

    connect_timeout: float = Field(default=15.0, gt=0, le=300,
                                   description="seconds a call may take to reach Modal's control plane before it fails")


class ReleasePolicy(Frozen):
    guarded: bool = Field(default=False, description="deploys need a clean tree on main_branch and confirmation")
    promote_from: str | None = Field(default=None, description="the environment whose releases `invoke promote` may "
                                     "bring here (none: deployed directly)")
    main_branch: str = "main"
    require_pinned_revisions: bool = Field(default=False, description="every revision must be a 40-hex commit")
    # The bake (docs/bake.md, infra/control/bake_policy.py): after a promotion's smoke test, probe this environment
    # for this long and roll back on a sustained breach. Off (0) by default: only an environment that takes
    # promotions bakes, and it says how long in its own file (prod: 10 minutes, reasoned there).
    bake_minutes: float = Field(default=0, ge=0, le=24 * 60, description="minutes `invoke promote` probes the target "
                                "after its smoke test, rolling back on a sustained breach (0: no bake)")
    bake_off_reason: str | None = Field(default=None, description="why bake_minutes is 0 in an environment that "
                                        "takes promotions (required there; recorded with who promoted)")


# ---------------------------------------------------------------------------- a recipe's knobs

# The recipe fields an environment may change under [recipes."<name>"]: each is checked by the recipe's own
# field (its type, bounds and checks), so adding a knob is adding its name here.
RECIPE_KNOBS = ("model", "gated", "model_revision", "gpu_type", "gpu_count", "cpu", "memory", "target_concurrency",
                "readiness_timeout", "startup_timeout")


def _optional(name: str) -> tuple[Any, Any]:
    info = Recipe.model_fields[name]
    checked = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return checked | None, Field(default=None, description=info.description)


RecipeKnobs = create_model(
    "RecipeKnobs",
    __base__=Frozen,
    __doc__="""One `[recipes."<name>"]` table: the recipe's own fields an environment may change (unset: the recipe's),
    the draft model's revision, this recipe's GPU-snapshot switch, and `gate`, this recipe's change to the
    environment's promotion gate (infra/control/objectives.py), which configures promotions, not what is deployed.""",
    **{name: _optional(name) for name in RECIPE_KNOBS},
    draft_revision=(Revision | None, None),
    gpu_snapshot=(bool | None, None),
    gate=(GateOverrides, Field(default_factory=GateOverrides, description="this recipe's objectives (see [gate])")),
)


def knobs_given(knobs: BaseModel) -> dict[str, Any]:
    """The knobs an environment set, by name (not `gate`, which configures promotions, not the deployment)."""
    return knobs.model_dump(exclude_none=True, exclude={"gate"})


# ---------------------------------------------------------------------------- the settings


class Settings(BaseSettings):
    """One environment's settings. `plan` prints them resolved against each recipe."""

    # No env_prefix here: the variables are VariablesSource's (INFRA_, `__` nesting), not pydantic-settings' own.
    model_config = SettingsConfigDict(extra="forbid", frozen=True)

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
    startup: Startup = Startup()
    costs: Costs = Costs()
    cold_start: ColdStart = ColdStart()
    release: ReleasePolicy = ReleasePolicy()
    client: Client = Client()
    gate: Gate = Field(default_factory=Gate, description="promotions into this environment are measured first")
    sentinel: Sentinel = Field(default_factory=Sentinel, description="the scheduled probe of every served recipe")
    recipes: dict[str, RecipeKnobs] = Field(default_factory=dict)  # type: ignore[valid-type]

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        """--set over INFRA_* variables over the environment's file over the defaults."""
        env = init_settings.init_kwargs["env"]
        return init_settings, VariablesSource(settings_cls), EnvironmentFile(settings_cls, config_dir() / f"{env}.toml")

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
    def _known_recipe_tables(cls, v: dict) -> dict:
        for name in v:
            _check_recipe_name(name)
        return v

    @property
    def modal_environment(self) -> str:
        return self.modal.environment or self.env

    @property
    def cache_environment(self) -> str:
        return self.modal.cache_environment or self.modal_environment

    def knobs(self, recipe: str) -> BaseModel:
        """The environment's `[recipes."<recipe>"]` table (empty when it has none)."""
        return self.recipes.get(recipe) or RecipeKnobs()

    def selected_recipes(self) -> list[str]:
        return [self.recipe] if self.recipe else list(self.serves)


def _check_recipe_name(name: str) -> None:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {shown(name)}; known recipes: {', '.join(RECIPES)}")


# ---------------------------------------------------------------------------- the sources


class EnvironmentFile(PydanticBaseSettingsSource):
    """environments/<env>.toml, read as UTF-8 (a byte-order mark is fine), each mistake one line naming the file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path):
        super().__init__(settings_cls)
        self.path = path
        self.label = _relative(path)
        self.data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except IsADirectoryError:
            raise ConfigError(f"{self.label}: a directory, not a file; allowed: a TOML file named <env>.toml "
                              "(move the directory out of the configuration folder)") from None
        except OSError as exc:
            raise ConfigError(f"{self.label}: cannot be read ({exc.strerror or exc}); allowed: a readable TOML "
                              "file") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.label}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                              "allowed: a UTF-8 TOML file, save it as UTF-8") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.label}: malformed TOML: {exc}") from None

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ returns the whole document
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.data


def place(data: dict, path: tuple[str, ...], value: object, clash: str) -> None:
    """Set `value` at `path` in nested tables, creating them; `clash` is the error where a value stands in the way."""
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(clash)
    node[path[-1]] = value


class VariablesSource(PydanticBaseSettingsSource):
    """INFRA_<SECTION>__<KEY> variables, each value read as a TOML literal (`literal`), not as JSON or text.

    A source of its own on pydantic-settings' public source API (`PydanticBaseSettingsSource`, as EnvironmentFile):
    the variables become one nested table, as the environment file's, and the settings validate it the same way.
    """

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ returns the whole table
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for path, name in sorted(self.names().items(), key=lambda item: len(item[0])):
            if path[0] not in self.settings_cls.model_fields or path[0] in SELECTORS:
                continue  # no setting: unknown_environment_variables warns about it
            place(data, path, literal(os.environ[name]),
                  f"environment variable {plain(name)}: '{'.'.join(path[:-1])}' is also given as a single value; "
                  "allowed: one of them")
        return data

    def names(self) -> dict[tuple[str, ...], str]:
        """Setting path -> the variable that set it, for error messages."""
        return {_variable_path(name): name for name in os.environ
                if name.upper().startswith(ENV_PREFIX) and name.upper() not in SELECTOR_VARIABLES}


def _variable_path(name: str) -> tuple[str, ...]:
    return tuple(name[len(ENV_PREFIX):].lower().split(ENV_DELIMITER))


def literal(raw: str) -> Any:
    """A value as written in a variable or `--set`: a TOML literal, a JSON object, else the text itself."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):  # ValueError: an integer too long for Python to read
        pass
    if raw.lstrip().startswith("{"):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


def unknown_environment_variables(environ: dict[str, str] | None = None) -> list[str]:
    """Warnings for INFRA_* variables that address no setting: a typo would otherwise silently do nothing."""
    environ = dict(os.environ if environ is None else environ)
    top = set(Settings.model_fields) - set(SELECTORS)
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in SELECTOR_VARIABLES:
            continue
        path = _variable_path(name)
        if path[0] not in top:
            close = difflib.get_close_matches(".".join(path), _setting_paths(), n=1)
            hint = f"; did you mean INFRA_{close[0].upper().replace('.', '__')}?" if close else ""
            warnings.append(f"warning: environment variable {plain(name)} matches no setting and is ignored{hint}")
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


# ---------------------------------------------------------------------------- --set


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--set a.b=value` pairs -> {"a.b": value}; values are TOML literals (JSON objects too), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {shown(pair)}: expected KEY=VALUE, e.g. --set scaling.min_containers=2")
        out[key.strip()] = literal(raw)
    return out


def _nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """--set's dotted keys as one nested table."""
    data: dict[str, Any] = {}
    for key, value in overrides.items():
        path = _split(key)
        if path[0] in SELECTORS:
            raise ConfigError(f"--set {plain(key)}: '{path[0]}' chooses what to load; allowed: {SELECTORS[path[0]]}, "
                              "not --set")
        place(data, path, value, f"--set {plain(key)}: '{'.'.join(path[:-1])}' is given both as a value and as a "
                                 "table; allowed: one of them")
    return data


def _split(key: str) -> tuple[str, ...]:
    """'recipes.qwen3.6-35b-vlm.tp_size' -> ('recipes', 'qwen3.6-35b-vlm', 'tp_size'): recipe names contain dots."""
    if key.startswith("recipes."):
        rest = key[len("recipes."):]
        name = max((n for n in RECIPES if rest.startswith(n + ".")), key=len, default=None)
        if name:
            return ("recipes", name, *rest[len(name) + 1:].split("."))
    return tuple(key.split("."))


# ---------------------------------------------------------------------------- settings that moved

# Old places of settings ("*": any recipe) -> the new one: a file, variable or --set still using one is refused in
# one line naming where the setting lives now, instead of an "unknown setting" that hides the move.
MOVED = {
    ("cold_start", "gpu_snapshot"): "startup.gpu_snapshot (deployed: the container reads it)",
    ("cold_start", "refuse_on_cache_miss"): "startup.refuse_on_cache_miss (deployed: the container reads it)",
    ("caches", "volume_read_gbps"): "cold_start.volume_read_gbps (only plan reads it, never a container)",
    ("recipes", "*", "tp_size"): 'recipes."{recipe}".gpu_count (tensor parallelism is one shard per GPU)',
    ("recipes", "*", "compute_region"): "placement.compute_region (a region is set once, per environment)",
    ("recipes", "*", "routing_region"): "placement.routing_region (a region is set once, per environment)",
}


def _refuse_moved(layers: list[Layer]) -> None:
    for layer in layers:
        for old, new in MOVED.items():
            for path in _matching(layer.data, old):
                source = layer.source_of(path) or layer.label
                name = ".".join(f'"{p}"' if i == 1 and path[0] == "recipes" else p for i, p in enumerate(path))
                where = new.format(recipe=path[1] if path[0] == "recipes" else "")
                raise ConfigError(f"{source}: {plain(name)} has moved to {where}; set it there")


def _matching(data: Any, pattern: tuple[str, ...], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The key paths in `data` that `pattern` names ("*": any key at that level)."""
    if not pattern:
        yield path
        return
    if isinstance(data, dict):
        for key in data if pattern[0] == "*" else [pattern[0]] if pattern[0] in data else []:
            yield from _matching(data[key], pattern[1:], (*path, key))


# ---------------------------------------------------------------------------- loading


def load_settings(env: str | None = None, recipe: str | None = None,
                  overrides: dict[str, Any] | None = None) -> Settings:
    """Load one environment's settings from its file, INFRA_* variables and explicit overrides."""
    env = env or os.environ.get("INFRA_ENV")
    known = known_environments()
    if not env:
        raise ConfigError(f"no environment chosen: pass --env (or set INFRA_ENV) to one of {', '.join(known)}")
    if env not in known:
        close = difflib.get_close_matches(env, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown environment {shown(env)}{hint}; choose one of {', '.join(known)} ({config_dir()})")
    recipe_source = "--recipe" if recipe else "INFRA_RECIPE"
    recipe = recipe or os.environ.get("INFRA_RECIPE") or None
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"{recipe_source}: unknown recipe {shown(recipe)}; known recipes: {', '.join(RECIPES)}")
    given = _nested(overrides or {})
    file = EnvironmentFile(Settings, config_dir() / f"{env}.toml")
    _refuse_moved(_layers(file, given))
    if "env" in file.data and file.data["env"] != env:
        raise ConfigError(f"{file.label}: env = {shown(file.data['env'])} but the file is for '{env}'; make them agree")
    try:
        settings = Settings(**given, env=env, recipe=recipe)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also leaves the real one missing: the unknown key is the mistake to name.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(describe(first, _layers(file, given))) from None
    if settings.release.promote_from not in (None, *known) or settings.release.promote_from == env:
        source = _source_of(("release", "promote_from"), _layers(file, given))
        raise ConfigError(f"{source}: release.promote_from = {shown(settings.release.promote_from)}: not another known "
                          f"environment; allowed: one of {', '.join(e for e in known if e != env)}, or unset")
    if settings.recipe is not None and settings.recipe not in settings.serves:
        raise ConfigError(f"{recipe_source}: recipe '{settings.recipe}' is not served by environment '{env}'; "
                          f"it serves: {', '.join(settings.serves)} ({file.label}: serves)")
    if unserved := sorted(set(settings.recipes) - set(settings.serves)):
        source = _source_of(("recipes", unserved[0]), _layers(file, given))
        raise ConfigError(f"{source}: [recipes.\"{unserved[0]}\"] configures a recipe environment '{env}' does not "
                          f"serve (serves: {', '.join(settings.serves)}); allowed: a table for a served recipe, or add "
                          "it to serves")
    return settings


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, FileNotFoundError):  # FileNotFoundError: the working directory was deleted
        return str(path)


# ---------------------------------------------------------------------------- one line per mistake


class Layer(typing.NamedTuple):
    """One source's data as the settings received it, and where each of its keys came from."""

    label: str  # the source, for error messages: a file path, "--set"
    data: dict[str, Any]
    names: dict[tuple[str, ...], str]  # key path -> its own source (a variable, a --set)

    def source_of(self, loc: tuple[str, ...]) -> str | None:
        """This layer's name for the source of `loc` if it set `loc`, a table above it, or anything below it."""
        for path, name in self.names.items():
            if path[: len(loc)] == loc or loc[: len(path)] == path:
                return name
        return self.label if _touches(self.data, loc) else None


def _layers(file: EnvironmentFile, given: dict) -> list[Layer]:
    """The sources, lowest precedence first, each read back as pydantic-settings read it."""
    variables = VariablesSource(Settings)
    return [Layer(file.label, file.data, {}), Layer("environment variables", variables(), variables.names()),
            Layer("--set", given, {})]


def _source_of(loc: tuple[str, ...], layers: list[Layer]) -> str:
    return next((s for layer in reversed(layers) if (s := layer.source_of(loc))), layers[0].label)


def _touches(data: Any, loc: tuple[str, ...]) -> bool:
    for part in loc:
        if not isinstance(data, dict):
            return True  # a value set above `loc` (e.g. a whole table given as one value)
        if part not in data:
            return False
        data = data[part]
    return True


def _merged(layers: list[Layer]) -> dict[str, Any]:
    def deep(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            out[key] = deep(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep(merged, layer.data)
    return merged


# What a strict type error means, said for people.
EXPECTED = {
    "int_type": "expected a whole number", "float_type": "expected a number", "bool_type": "expected true or false",
    "string_type": "expected text in quotes", "list_type": 'expected a list, e.g. ["a", "b"]',
    "dict_type": "expected a table, e.g. { key = value }", "model_type": "expected a table, e.g. { key = value }",
    "finite_number": "not a finite number; allowed: a number such as 2.5 (nan and inf are no setting's value)",
}
SCALAR_TYPES = {"int_type", "float_type", "bool_type", "string_type", "list_type"}


def describe(err: dict, layers: list[Layer]) -> str:
    """A validation error as one line: source, setting, value (masked if it looks like a credential), what is
    allowed."""
    loc = tuple(str(p) for p in err["loc"])
    # List items by index, as TOML readers count them: gate.objectives[0].metric, scaling.schedule[1].start.
    setting = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).removeprefix(".") or "settings"
    source = _source_of(loc, layers)
    if err["type"] == "extra_forbidden" and (name := _unquoted_recipe(loc)):
        written = ".".join(plain(p) for p in loc[:1 + len(name.split("."))])
        return (f"{source}: [{written}] is read as nested tables, because dots in a TOML key separate tables; "
                f"allowed: the recipe name in quotes, [recipes.\"{name}\"] (--set recipes.{name}.KEY=VALUE needs none)")
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        choices = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(loc[-1], choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        allowed = f" (allowed here: {', '.join(choices)})" if choices else ""
        return f"{source}: unknown setting '{plain(setting)}'{hint}{allowed}"
    if err["type"] == "missing":
        return f"{source}: required setting '{setting}' is missing"
    found, value = _lookup(_merged(layers), loc)
    if found and isinstance(value, dict) and err["type"] in SCALAR_TYPES - {"list_type"}:  # a list says so below
        return f"{source}: '{setting}' is a single value, not a table; nothing can be set below it"
    message = EXPECTED.get(err["type"], err["msg"].removeprefix("Value error, "))
    table = isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))
    value_text = f" = {_as_written(value)}" if found and not table else ""
    return f"{source}: {setting}{value_text}: {message}"


def _unquoted_recipe(loc: tuple[str, ...]) -> str | None:
    """The dotted recipe name that `loc` spells as nested tables (recipes.qwen3.6-35b-vlm unquoted), if any."""
    if len(loc) < 3 or loc[0] != "recipes":
        return None
    return next((n for n in RECIPES if "." in n and tuple(n.split(".")) == loc[1:1 + len(n.split("."))]), None)


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
        if isinstance(model, list):  # the item of a list of tables, or a table of tables: skip its key
            model = model[0]
            continue
        info = model.model_fields.get(part) if isinstance(model, type) else None
        if info is None:
            return None
        model = info.annotation
        if typing.get_origin(model) is list:
            model = list(typing.get_args(model))
        elif typing.get_origin(model) is dict:
            model = [typing.get_args(model)[1]]
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
