"""Settings: precedence of sources, and one clear line for every bad value."""

from __future__ import annotations

import shutil

import pytest

from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides, unknown_environment_variables
from infra.runtime.errors import ConfigError
from tests.conftest import REPO


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A copy of environments/ that a test may edit, selected with INFRA_CONFIG_DIR."""
    target = tmp_path / "environments"
    shutil.copytree(REPO / "environments", target)
    monkeypatch.setenv("INFRA_CONFIG_DIR", str(target))
    return target


def error_of(fn) -> str:
    with pytest.raises(ConfigError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_precedence_defaults_file_environment_overrides(monkeypatch):
    assert load_settings("prod").scaling.min_containers == 1  # file over default (0)
    monkeypatch.setenv("INFRA_SCALING__MIN_CONTAINERS", "3")
    assert load_settings("prod").scaling.min_containers == 3  # variable over file
    s = load_settings("prod", overrides=parse_overrides(["scaling.min_containers=2"]))
    assert s.scaling.min_containers == 2  # explicit override over variable
    assert s.scaling.max_containers == 4  # untouched siblings keep the file's value


def test_env_chosen_by_variable(monkeypatch):
    monkeypatch.setenv("INFRA_ENV", "staging")
    assert load_settings().env == "staging"
    monkeypatch.setenv("INFRA_RECIPE", "qwen3.6-35b-vlm")
    assert load_settings().selected_recipes() == ["qwen3.6-35b-vlm"]


def test_recipe_overrides_reach_the_deployment():
    s = load_settings("dev", overrides=parse_overrides(
        ['recipes.qwen3.6-35b-vlm.draft_revision="x"', "recipes.qwen3-8b-low-latency.target_concurrency=4"]
    ))
    d = resolve(s, "qwen3-8b-low-latency")
    assert d.recipe.target_concurrency == 4 and d.recipe.cuda_graph_max_bs == 8


def test_modal_environment_defaults_to_env_name(config):
    (config / "qa.toml").write_text('serves = ["qwen3-8b-low-latency"]\n')
    s = load_settings("qa")
    assert s.modal_environment == "qa" and s.cache_environment == "qa"


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: load_settings("qa"), "unknown environment 'qa'; choose one of dev, prod, staging"),
        (lambda: load_settings("prod", recipe="llama"), "--recipe: unknown recipe 'llama'; known recipes: "
                                                        "qwen3-8b-low-latency, qwen3.6-35b-vlm"),
        (lambda: load_settings("dev", overrides={"scaling.min_containers": "two"}),
         "--set: scaling.min_containers = 'two': expected a whole number"),
        (lambda: load_settings("dev", overrides={"scaling.min_containers": -1}),
         "--set: scaling.min_containers = -1: Input should be greater than or equal to 0"),
        (lambda: load_settings("prod", overrides={"scaling.min_containers": 5}),
         "scaling: min_containers=5 exceeds max_containers=4; min_containers must be <= max_containers"),
        (lambda: load_settings("dev", overrides={"scaling.min_containers": 1}),
         "min_containers=1 but this environment forbids warm replicas (allow_warm_replicas = false); allowed: "
         "min_containers = 0"),
        (lambda: load_settings("prod", overrides={"placement.compute_region": "us-middle"}),
         "placement.compute_region = 'us-middle': not a Modal region name; allowed: "),
        (lambda: load_settings("prod", overrides={"placement.routing_region": "eu-north"}),
         "placement.routing_region = 'eu-north': not a Modal region name; allowed: ap-south, eu-west, us-east, "
         "us-west"),
        (lambda: load_settings("prod", overrides={"server.port": 70000}),
         "server.port = 70000: Input should be less than or equal to 65535"),
        (lambda: load_settings("prod", overrides={"server.port": 0}),
         "server.port = 0: Input should be greater than or equal to 1"),
        (lambda: load_settings("prod", overrides={"recipes.qwen3-8b-low-latency.gpu_type": "H1000"}),
         "recipes.qwen3-8b-low-latency.gpu_type = 'H1000': unknown GPU type; allowed: T4, L4"),
        (lambda: load_settings("prod", overrides={"recipes.qwen3-8b-low-latency.gpu_count": 9}),
         "gpu_count = 9: Input should be less than or equal to 8"),
        (lambda: load_settings("prod", overrides={"recipes.qwen3-8b-low-latency.target_concurrency": 0}),
         "target_concurrency = 0: Input should be greater than 0"),
        (lambda: load_settings("prod", overrides={"recipes.qwen3-8b-low-latency.readiness_timeout": 0}),
         "readiness_timeout = 0: Input should be greater than 0"),
        (lambda: load_settings("prod", overrides={"recipes.qwen3-8b-low-latency.model_revision": " "}),
         "model_revision = ' ': revision is empty"),
        (lambda: load_settings("prod", overrides={"scaling.min_container": 2}),
         "--set: unknown setting 'scaling.min_container'; did you mean 'min_containers'?"),
        (lambda: load_settings("prod", overrides={"recipes.llama.gpu_count": 2}), "unknown recipe 'llama'"),
    ],
)
def test_bad_values_are_one_clear_line(call, expected):
    assert expected in error_of(call)


def test_recipe_not_served_by_environment(config):
    (config / "edge.toml").write_text('serves = ["qwen3-8b-low-latency"]\n')
    message = error_of(lambda: load_settings("edge", recipe="qwen3.6-35b-vlm"))
    assert message == ("--recipe: recipe 'qwen3.6-35b-vlm' is not served by environment 'edge'; it serves: "
                       f"qwen3-8b-low-latency ({config / 'edge.toml'}: serves)")


def test_malformed_toml_names_line_and_column(config):
    (config / "dev.toml").write_text('serves = ["qwen3-8b-low-latency"]\n[scaling\nmin_containers = 0\n')
    message = error_of(lambda: load_settings("dev"))
    assert "dev.toml: malformed TOML:" in message and "line 2" in message and "column" in message


def test_unknown_key_in_file_suggests_the_closest(config):
    text = (config / "prod.toml").read_text().replace("min_containers = 1", "min_contianers = 1")
    (config / "prod.toml").write_text(text)
    message = error_of(lambda: load_settings("prod"))
    assert message.startswith(str(config / "prod.toml") + ": unknown setting 'scaling.min_contianers'; did you mean "
                                                          "'min_containers'?")


def test_wrong_type_in_file_names_the_file(config):
    text = (config / "prod.toml").read_text().replace("min_containers = 1", 'min_containers = "two"')
    (config / "prod.toml").write_text(text)
    message = error_of(lambda: load_settings("prod"))
    assert message.startswith(str(config / "prod.toml") + ": scaling.min_containers = 'two': expected a whole number")


def test_wrong_value_in_variable_names_the_variable(monkeypatch):
    monkeypatch.setenv("INFRA_SCALING__MAX_CONTAINERS", "0")
    assert error_of(lambda: load_settings("prod")).startswith(
        "INFRA_SCALING__MAX_CONTAINERS: scaling.max_containers = 0: Input should be greater than or equal to 1")


def test_unknown_infra_variables_warn_with_a_suggestion():
    warnings = unknown_environment_variables({"INFRA_SCALNG__MIN_CONTAINERS": "1", "INFRA_ENV": "dev", "PATH": "/bin",
                                              "INFRA_SCALING__MIN_CONTAINERS": "1"})
    assert warnings == [
        "warning: environment variable INFRA_SCALNG__MIN_CONTAINERS matches no setting and is ignored; "
        "did you mean INFRA_SCALING__MIN_CONTAINERS?"
    ]


def test_override_syntax_error():
    assert "expected KEY=VALUE" in error_of(lambda: parse_overrides(["scaling.min_containers"]))


# ---------------------------------------------------------------------------- checks needing the recipe


def resolve_error(env, recipe, *overrides) -> str:
    return error_of(lambda: resolve(load_settings(env, overrides=parse_overrides(list(overrides))), recipe))


def test_the_gpu_count_is_the_tensor_parallelism():
    """One value: a shard per GPU, so changing gpu_count changes --tp-size with it."""
    from infra.runtime import sglang_args

    d = resolve(load_settings("prod", overrides=parse_overrides(["recipes.qwen3-8b-low-latency.gpu_count=4"])),
                "qwen3-8b-low-latency")
    launch = sglang_args.launch_command(d)
    assert d.recipe.gpu == "H100!:4" and launch[launch.index("--tp-size") + 1] == "4"


def test_startup_timeout_must_cover_readiness_and_warmup():
    message = resolve_error("prod", "qwen3.6-35b-vlm", "recipes.qwen3.6-35b-vlm.startup_timeout=300")
    assert 'recipes."qwen3.6-35b-vlm".startup_timeout = 300' in message
    assert "readiness_timeout 600 s + warm-up 240 s + 60 s margin; allowed: >= 900" in message


def test_pinned_revisions_required_in_prod():
    message = resolve_error("prod", "qwen3-8b-low-latency", 'recipes.qwen3-8b-low-latency.model_revision="main"')
    assert message == (
        'recipes."qwen3-8b-low-latency".model_revision = \'main\': environment \'prod\' requires pinned revisions '
        "(release.require_pinned_revisions); allowed: a 40-hex commit id"
    )
    # dev accepts a branch name
    d = resolve(load_settings("dev", overrides=parse_overrides(['recipes.qwen3-8b-low-latency.model_revision="main"'])),
                "qwen3-8b-low-latency")
    assert d.recipe.model_revision == "main"


def test_gpu_snapshot_checked_against_the_sglang_version():
    d = resolve(load_settings("prod", overrides=parse_overrides(["startup.gpu_snapshot=true"])), "qwen3.6-35b-vlm")
    assert d.startup.gpu_snapshot
    assert "--enable-memory-saver" in __import__("infra.runtime.sglang_args", fromlist=["x"]).launch_command(d)


# ---------------------------------------------------------------------------- one clear line from every source
# (issue 13: JSON-valued and too deeply nested variables, lists from variables, selectors given as settings,
# a missing configuration folder, a file that is not UTF-8, strict types, duplicates, credentials never echoed)

TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123"


@pytest.mark.parametrize("variable, value, expected", [
    ("INFRA_SCALING", '{"min_containers": true}',
     "INFRA_SCALING: scaling.min_containers = true: expected a whole number"),
    ("INFRA_SCALING", "{bad json", "INFRA_SCALING: scaling = '{bad json': expected a table, e.g. { key = value }"),
    ("INFRA_SCALING__MIN_CONTAINERS__X", "1",
     "INFRA_SCALING__MIN_CONTAINERS__X: 'scaling.min_containers' is a single value, not a table; nothing can be set "
     "below it"),
    ("INFRA_SERVES", "qwen3-8b-low-latency",
     "INFRA_SERVES: serves = 'qwen3-8b-low-latency': expected a list, e.g. [\"a\", \"b\"]"),
    ("INFRA_SERVES", '["qwen3-8b-low-latency", "qwen3-8b-low-latency"]',
     "INFRA_SERVES: serves = ['qwen3-8b-low-latency', 'qwen3-8b-low-latency']: lists qwen3-8b-low-latency more than "
     "once; allowed: each recipe once"),
    ("INFRA_SCALING__MIN_CONTAINERS", "true", "INFRA_SCALING__MIN_CONTAINERS: scaling.min_containers = true: expected "
                                              "a whole number"),
    ("INFRA_SECRETS__HF_TOKEN_SECRET", TOKEN, "INFRA_SECRETS__HF_TOKEN_SECRET: secrets.hf_token_secret = "
     "'hf_…(masked)': this is the NAME of a Modal Secret, but the value looks like a Hugging Face token: never put a "
     "credential in settings"),
    ("INFRA_CONFIG_DIR", "/no/such/folder", "INFRA_CONFIG_DIR: configuration directory /no/such/folder does not exist; "
     "allowed: a folder of <env>.toml files"),
])
def test_every_variable_mistake_is_one_line_naming_the_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    message = error_of(lambda: load_settings("prod"))
    assert message.startswith(expected) and TOKEN not in message


def test_a_json_object_in_a_variable_sets_a_whole_table(monkeypatch):
    monkeypatch.setenv("INFRA_SCALING", '{"min_containers": 2, "max_containers": 3}')
    s = load_settings("prod")
    assert (s.scaling.min_containers, s.scaling.max_containers) == (2, 3)
    monkeypatch.setenv("INFRA_SERVES", '["qwen3.6-35b-vlm"]')
    assert load_settings("prod").serves == ["qwen3.6-35b-vlm"]


@pytest.mark.parametrize("override, expected", [
    ("env=dev", "--set env: 'env' chooses what to load; allowed: --env (or INFRA_ENV), not --set"),
    ("recipe=qwen3.6-35b-vlm", "--set recipe: 'recipe' chooses what to load; allowed: --recipe (or INFRA_RECIPE), not "
                               "--set"),
    ("scaling.min_containers=true", "--set: scaling.min_containers = true: expected a whole number"),
    (f"server.port={TOKEN}", "--set: server.port = 'hf_…(masked)': expected a whole number"),
    (f"secrets.hf_token_secret={TOKEN}", "--set: secrets.hf_token_secret = 'hf_…(masked)': this is the NAME of a Modal "
                                         "Secret"),
    ("secrets.hf_token_secret=my secret!", "--set: secrets.hf_token_secret = 'my secret!': not a Modal object name"),
    ('serves=["qwen3-8b-low-latency", "qwen3-8b-low-latency"]', "--set: serves = ['qwen3-8b-low-latency', "),
    ("release.promote_from=qa", "--set: release.promote_from = 'qa': not another known environment; allowed: one of "
                                "dev, staging"),
    ("release.promote_from=prod", "--set: release.promote_from = 'prod': not another known environment"),
    ("server.port=60000", "--set: server.port = 60000: SGLang also listens on port + 10000, so it refuses ports above "
                          "55535; allowed: 1 to 55535"),
])
def test_every_override_mistake_is_one_line_and_never_echoes_a_credential(override, expected):
    message = error_of(lambda: load_settings("prod", overrides=parse_overrides([override])))
    assert message.startswith(expected), message
    assert TOKEN not in message and TOKEN[3:15] not in message


def test_a_file_that_is_not_utf8_is_named_with_the_offending_byte(config):
    (config / "prod.toml").write_bytes((config / "prod.toml").read_bytes() + b"# caf\xe9\n")
    message = error_of(lambda: load_settings("prod"))
    assert message.startswith(str(config / "prod.toml") + ": not UTF-8 text (byte 0xe9 at offset ")
    assert message.endswith("allowed: a UTF-8 TOML file, save it as UTF-8")


# ---------------------------------------------------------------------------- issue 30's bad inputs


def test_a_misspelt_environment_gets_a_did_you_mean():
    assert error_of(lambda: load_settings("prdo")).startswith(
        "unknown environment 'prdo' (did you mean 'prod'?); choose one of dev, prod, staging")


def test_an_environment_file_that_is_a_directory_is_named(config):
    (config / "dev.toml").unlink()
    (config / "dev.toml").mkdir()
    assert error_of(lambda: load_settings("dev")) == (
        f"{config / 'dev.toml'}: a directory, not a file; allowed: a TOML file named <env>.toml (move the directory "
        "out of the configuration folder)")


def test_an_unquoted_dotted_recipe_table_is_told_to_quote_the_name(config):
    with (config / "staging.toml").open("a") as f:
        f.write("\n[recipes.qwen3.6-35b-vlm]\ntp_size = 1\n")
    assert error_of(lambda: load_settings("staging")) == (
        f"{config / 'staging.toml'}: [recipes.qwen3.6-35b-vlm] is read as nested tables, because dots in a TOML key "
        'separate tables; allowed: the recipe name in quotes, [recipes."qwen3.6-35b-vlm"] '
        "(--set recipes.qwen3.6-35b-vlm.KEY=VALUE needs none)")


@pytest.mark.parametrize("override, setting", [
    ("costs.rates={ cpu = nan }", "costs.rates.cpu = nan"),
    ("costs.rates={ H100 = inf }", "costs.rates.H100 = inf"),
    ("costs.gpu_hourly_usd={ H100 = -inf }", "costs.gpu_hourly_usd.H100 = -inf"),
    ("cold_start.image_pull_gbps=inf", "cold_start.image_pull_gbps = inf"),
])
def test_nan_and_inf_are_no_setting_s_value(override, setting):
    """TOML reads nan and inf as floats: a rate of nan printed `$nan/h` in plan."""
    assert error_of(lambda: load_settings("prod", overrides=parse_overrides([override]))) == (
        f"--set: {setting}: not a finite number; allowed: a number such as 2.5 (nan and inf are no setting's value)")


# ---------------------------------------------------------------------------- settings that say where they go
# (issue 29 item 2: a deployed switch in a deployed section, a plan-only figure on the control side, one field for
# GPUs and tensor parallelism, one place for a region; an old name is refused naming the new place)

MOVED_CASES = [
    (("cold_start", "gpu_snapshot"), "true", "startup.gpu_snapshot"),
    (("cold_start", "refuse_on_cache_miss"), "true", "startup.refuse_on_cache_miss"),
    (("caches", "volume_read_gbps"), "2.0", "cold_start.volume_read_gbps"),
    (("recipes", "qwen3-8b-low-latency", "tp_size"), "2", 'recipes."qwen3-8b-low-latency".gpu_count'),
    (("recipes", "qwen3-8b-low-latency", "compute_region"), '"us-east"', "placement.compute_region"),
    (("recipes", "qwen3-8b-low-latency", "routing_region"), '"us-east"', "placement.routing_region"),
]


@pytest.mark.parametrize("path, value, new", MOVED_CASES)
def test_an_old_setting_name_is_refused_naming_its_new_place(config, monkeypatch, path, value, new):
    *table, key = path
    header = ".".join(f'"{p}"' if i == 1 else p for i, p in enumerate(table))
    old = ".".join(f'"{p}"' if i == 1 and path[0] == "recipes" else p for i, p in enumerate(path))
    with (config / "staging.toml").open("a") as f:
        f.write(f"\n[{header}]\n{key} = {value}\n")
    from_file = error_of(lambda: load_settings("staging"))
    assert from_file.startswith(f"{config / 'staging.toml'}: {old} has moved to {new} (")
    assert from_file.endswith("; set it there")
    (config / "staging.toml").write_text((REPO / "environments" / "staging.toml").read_text())
    dotted = ".".join(path)
    assert error_of(lambda: load_settings("dev", overrides=parse_overrides([f"{dotted}={value}"]))).startswith(
        f"--set: {old} has moved to {new}")
    if path[0] != "recipes":  # a variable cannot name a recipe (its name has dots and dashes)
        monkeypatch.setenv("INFRA_" + "__".join(path).upper(), value)
        assert error_of(lambda: load_settings("dev")).startswith(
            f"INFRA_{'__'.join(path).upper()}: {old} has moved to {new}")


def test_each_setting_is_in_the_section_that_says_where_it_goes():
    """A switch the container reads is in a Deployment part; a figure only plan reads is not."""
    from infra.runtime.deployment import Caches, Deployment, Placement, Startup
    from infra.runtime.recipes.base import Recipe

    assert {"gpu_snapshot", "refuse_on_cache_miss"} <= set(Startup.model_fields)
    assert Deployment.model_fields["startup"].annotation is Startup
    assert "volume_read_gbps" not in Caches.model_fields and "volume_read_gbps" in type(
        load_settings("dev").cold_start).model_fields
    assert not {"tp_size", "compute_region", "routing_region"} & set(Recipe.model_fields)
    assert {"compute_region", "routing_region"} == set(Placement.model_fields)
