"""Objectives as settings (infra/control/objectives.py, loaded by infra/control/settings.py): validation that names
the file, the key, the value and what is allowed; the merge of an environment's gate with a recipe's; levels
resolved against a target concurrency; what `plan` shows."""

from __future__ import annotations

import json
import math
import shutil
import tomllib

import pytest

from infra.control import objectives
from infra.control.objectives import METRICS, TARGET, Gate, GateOverrides, Objective
from infra.control.resolve import gate_for, resolve
from infra.control.settings import knobs_given, load_settings, parse_overrides
from infra.runtime.errors import ConfigError
from tests.conftest import REPO

PROD = (REPO / "environments" / "prod.toml").read_text()
WITHOUT_GATE = PROD[: PROD.index("# The promotion gate")]  # prod.toml before its gate tables

# The entries proposed for environments/prod.toml (the target of promotions); kept here so they stay valid.
PROD_EXAMPLE = """
[gate]
enabled = true
regression_budget = 0.10
objectives = [
  { metric = "ttft_p90_ms", level = 1, max = 500 },
  { metric = "tpot_p50_ms", level = 1, max = 12 },
  { metric = "ttft_p90_ms", level = "target", max = 1500 },
  { metric = "tpot_p50_ms", level = "target", max = 25 },
  { metric = "output_tokens_per_s", level = "target", min = 1000 },
  { metric = "error_rate", level = "target", max = 0.0 },
]

[recipes."qwen3.6-35b-vlm".gate]
objectives = [
  { metric = "ttft_p90_ms", level = 1, max = 1200 },
  { metric = "ttft_p90_ms", level = "target", max = 3000 },
  { metric = "output_tokens_per_s", level = "target", min = 600 },
]
"""


def toml(value) -> str:
    """A value as a TOML literal (inline tables, lists, inf and nan included): what a user would write."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(map(toml, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


@pytest.fixture
def prod_with(tmp_path, monkeypatch):
    """prod's settings, loaded by the settings loader from a copy of environments/ whose prod.toml has this gate."""
    config = tmp_path / "environments"
    shutil.copytree(REPO / "environments", config)
    monkeypatch.setenv("INFRA_CONFIG_DIR", str(config))
    monkeypatch.chdir(tmp_path)  # sources are named relative to here: environments/prod.toml

    def load(gate: dict | None = None, *, recipe: dict | None = None):
        tables = [("[gate]", gate), ('[recipes."qwen3.6-35b-vlm".gate]', recipe)]
        text = WITHOUT_GATE + "".join(f"\n{head}\n" + "".join(f"{k} = {toml(v)}\n" for k, v in data.items())
                                      for head, data in tables if data is not None)
        (config / "prod.toml").write_text(text)
        return load_settings("prod")

    return load


@pytest.fixture
def error(prod_with):
    def message(data: dict, *, recipe: bool = False) -> str:
        with pytest.raises(ConfigError) as info:
            prod_with(recipe=data) if recipe else prod_with(data)
        text = str(info.value)
        assert "\n" not in text
        return text

    return message


def one(**objective) -> dict:
    return {"objectives": [objective]}


def test_prod_toml_gates_promotions_with_the_proposed_entries():
    data = tomllib.loads(PROD_EXAMPLE)
    settings = load_settings("prod")
    env, vlm = settings.gate, settings.recipes["qwen3.6-35b-vlm"].gate
    assert env == Gate(**data["gate"]) and vlm == GateOverrides(**data["recipes"]["qwen3.6-35b-vlm"]["gate"])
    assert gate_for(settings, "qwen3.6-35b-vlm") == objectives.effective(env, vlm)
    assert gate_for(settings, "qwen3-8b-low-latency") == env
    # Dev and staging receive no promotions: no gate.
    assert not load_settings("staging").gate.enabled and not load_settings("dev").gate.enabled
    assert env.enabled and env.regression_budget == 0.10 and not env.record_baseline
    assert [(o.metric, o.level, o.limit)
            for o in env.objectives][:2] == [("ttft_p90_ms", 1, 500), ("tpot_p50_ms", 1, 12)]

    merged = objectives.effective(env, vlm)
    # Same keys replaced in place; the environment's others kept; nothing new, so no additions.
    assert [(o.metric, o.level, o.limit) for o in merged.objectives] == [
        ("ttft_p90_ms", 1, 1200), ("tpot_p50_ms", 1, 12), ("ttft_p90_ms", TARGET, 3000),
        ("tpot_p50_ms", TARGET, 25), ("output_tokens_per_s", TARGET, 600), ("error_rate", TARGET, 0.0)]
    assert merged.enabled and merged.regression_budget == 0.10
    assert objectives.effective(env, None) is env


def test_a_recipe_adds_objectives_and_overrides_scalars():
    env = Gate(enabled=True, regression_budget=0.1, objectives=[Objective(metric="ttft_p90_ms", level=1, max=500)])
    recipe = GateOverrides(regression_budget=0.2, enabled=False,
                           objectives=[Objective(metric="e2e_p99_s", level=4, max=3),
                                       Objective(metric="ttft_p90_ms", level=TARGET, max=900)])
    merged = objectives.effective(env, recipe)
    assert (merged.enabled, merged.regression_budget, merged.record_baseline) == (False, 0.2, False)
    # "target" and 1 are different keys as written: the recipe's target objective is added, not a replacement.
    assert [o.key for o in merged.objectives] == [("ttft_p90_ms", 1), ("e2e_p99_s", 4), ("ttft_p90_ms", TARGET)]
    # Unset recipe values keep the environment's.
    assert objectives.effective(env, GateOverrides()) == env


@pytest.mark.parametrize("data, expected", [
    (one(metric="ttft_p95_ms", level=1, max=5),
     "environments/prod.toml: gate.objectives[0].metric = 'ttft_p95_ms': unknown metric 'ttft_p95_ms' "
     "(did you mean 'ttft_p99_ms'?); allowed: ttft_p50_ms, ttft_p90_ms, ttft_p99_ms, itl_p50_ms,"),
    (one(metric="ttft_p90_ms", level=0, max=5),
     "environments/prod.toml: gate.objectives[0].level = 0: level 0 is not a concurrency; allowed: a positive whole "
     "number, or 'target' (the recipe's target_concurrency)"),
    (one(metric="ttft_p90_ms", level="targte", max=5), "gate.objectives[0].level = 'targte': level 'targte' is not a "
                                                       "concurrency"),
    (one(metric="ttft_p90_ms", level=True, max=5), ("gate.objectives[0].level = ",
                                                    ": level True is not a concurrency")),
    (one(metric="ttft_p90_ms", level=2.5, max=5), "gate.objectives[0].level = 2.5: level 2.5 is not a concurrency"),
    (one(metric="ttft_p90_ms", level=1, min=5),
     "gate.objectives[0]: ttft_p90_ms is lower-is-better: give its limit as 'max', not 'min' (min = 5.0)"),
    (one(metric="output_tokens_per_s", level=1, max=5),
     "gate.objectives[0]: output_tokens_per_s is higher-is-better: give its limit as 'min', not 'max' (max = 5.0)"),
    (one(metric="tpot_p50_ms", level=1),
     "gate.objectives[0]: objective tpot_p50_ms at level 1 has no limit; allowed: max = <ms> (time per output token, "
     "p50)"),
    (one(metric="ttft_p90_ms", level=1, max=0), "ttft_p90_ms max = 0.0 is not a usable limit; allowed: a finite number "
                                                "> 0"),
    (one(metric="ttft_p90_ms", level=1, max=float("inf")), "ttft_p90_ms max = inf is not a usable limit"),
    (one(metric="output_tokens_per_s", level=1, min=-1), "output_tokens_per_s min = -1.0 is not a usable limit; "
                                                         "allowed: a finite number >= 0"),
    (one(metric="error_rate", level=1, max=5), "gate.objectives[0]: error_rate max = 5.0 is a fraction of requests; "
                                               "allowed: 0..1 (0.01 is 1%)"),
    (one(metric="ttft_p90_ms", level=1, max="fast"), ("gate.objectives[0].max = 'fast': ", "expected a number")),
    (one(metric="ttft_p90_ms", level=1, max=5, limit=3),
     "environments/prod.toml: unknown setting 'gate.objectives[0].limit' (allowed here: metric, level, max, min)"),
    (one(level=1, max=5), "environments/prod.toml: required setting 'gate.objectives[0].metric' is missing"),
    ({"objectives": [{"metric": "ttft_p90_ms", "level": 1, "max": 5}, {"metric": "tpot_p50_ms", "level": 1, "max": 9},
                     {"metric": "ttft_p90_ms", "level": 1, "max": 7}]},
     "environments/prod.toml: gate.objectives: objective ttft_p90_ms at level 1 is given twice (objectives[0] and "
     "objectives[2]); allowed: one limit per metric and level"),
    ({"regression_budget": 1.5},
     "environments/prod.toml: gate.regression_budget = 1.5: regression budget 1.5 is not a fraction between 0 and 1; "
     "allowed: 0..1, e.g. 0.10 for 10% worse"),
    ({"regression_budget": -0.05}, "gate.regression_budget = -0.05: regression budget -0.05 is not a fraction between "
                                   "0 and 1"),
    ({"regression_budget": float("nan")}, "gate.regression_budget = nan: regression budget nan is not a fraction"),
    ({"regression_bugdet": 0.1},
     "environments/prod.toml: unknown setting 'gate.regression_bugdet'; did you mean 'regression_budget'? "
     "(allowed here: enabled, regression_budget, record_baseline, objectives)"),
    ({"enabled": "sometimes"}, ("gate.enabled = 'sometimes': ", "expected true or false")),
    ({"objectives": {"metric": "ttft_p90_ms"}}, ("gate.objectives: ", "expected a list")),
])
def test_bad_gate_settings_are_one_line_naming_the_key_the_value_and_what_is_allowed(error, data, expected):
    message = error(data)
    assert all(part in message for part in ((expected,) if isinstance(expected, str) else expected)), message


def test_every_metric_is_listed_when_the_name_is_unknown(error):
    message = error(one(metric="latency", level=1, max=5))
    assert message.endswith("allowed: " + ", ".join(METRICS))


def test_recipe_overrides_are_validated_alike_and_named_by_their_own_key(error):
    message = error({"regression_budget": 2}, recipe=True)
    assert message.startswith("environments/prod.toml: recipes.qwen3.6-35b-vlm.gate.regression_budget = 2: ")
    assert "objectives[1]" in error({"objectives": [{"metric": "error_rate", "level": 1, "max": 0},
                                                    {"metric": "error_rate", "level": 1, "max": 0.1}]}, recipe=True)
    message = error({"enable": True}, recipe=True)
    assert message == ("environments/prod.toml: unknown setting 'recipes.qwen3.6-35b-vlm.gate.enable'; did you mean "
                       "'enabled'? (allowed here: enabled, regression_budget, record_baseline, objectives)")


def test_other_sources_are_named_too(monkeypatch):
    with pytest.raises(ConfigError, match=r"^--set: gate.objectives\[0\].metric = 'ttft': unknown metric"):
        load_settings("prod", overrides=parse_overrides(['gate.objectives=[{ metric = "ttft", level = 1, max = 5 }]']))
    monkeypatch.setenv("INFRA_GATE__REGRESSION_BUDGET", "2")
    with pytest.raises(ConfigError, match="^INFRA_GATE__REGRESSION_BUDGET: gate.regression_budget = 2: regression "
                                          "budget"):
        load_settings("prod")


def test_the_budget_accepts_its_whole_range(prod_with):
    assert prod_with({"regression_budget": 0}).gate.regression_budget == 0
    assert prod_with({"regression_budget": 1}).gate.regression_budget == 1
    assert prod_with().gate == Gate()  # defaults: off, 10%, no objectives
    assert Gate().regression_budget == objectives.DEFAULT_REGRESSION_BUDGET == 0.10 and not Gate().enabled


def test_levels_resolve_against_the_target_concurrency():
    gate = Gate(objectives=[Objective(metric="ttft_p90_ms", level=1, max=500),
                            Objective(metric="ttft_p90_ms", level=TARGET, max=900),
                            Objective(metric="output_tokens_per_s", level=32, min=10)])
    targets = objectives.resolve(gate, 10)
    assert [(t.metric, t.concurrency, t.limit, t.level_label) for t in targets] == [
        ("ttft_p90_ms", 1, 500, "1"), ("ttft_p90_ms", 10, 900, "10 (target)"), ("output_tokens_per_s", 32, 10, "32")]
    assert objectives.levels(targets, 10) == (1, 10, 32)
    assert objectives.levels((), 1) == (1,)
    assert [t.limit_text() for t in targets] == ["≤ 500.0 ms", "≤ 900.0 ms", "≥ 10.0 tok/s"]
    assert targets[0].met_by(500) and not targets[0].met_by(500.1)
    assert targets[2].met_by(10) and not targets[2].met_by(9.9)


def test_a_number_and_target_landing_on_the_same_level_are_refused():
    gate = Gate(objectives=[Objective(metric="ttft_p90_ms", level=10, max=500),
                            Objective(metric="ttft_p90_ms", level=TARGET, max=900)])
    with pytest.raises(ConfigError, match=r"^gate.objectives: ttft_p90_ms at level 10 and at level 'target' are both "
                                          r"concurrency 10 \(target_concurrency = 10\); allowed: one limit per metric"):
        objectives.resolve(gate, 10)
    assert len(objectives.resolve(gate, 8)) == 2  # a recipe with another target has no collision


def test_metrics_read_the_bench_report_in_their_own_units():
    from tests.fakes import bench_reports

    lv = bench_reports.level(4, ttft=0.2, tpot=0.01, tokens=11, ok=8, failed=2)
    values = {name: m.read(lv) for name, m in METRICS.items()}
    assert values["ttft_p90_ms"] == pytest.approx(200) and values["e2e_p50_s"] == pytest.approx(0.3)
    assert values["tpot_p50_ms"] == pytest.approx(10) and values["itl_p99_ms"] == pytest.approx(10)
    assert values["error_rate"] == pytest.approx(0.2)
    # 8 requests of 11 tokens in two rounds of 0.3 s.
    assert values["output_tokens_per_s"] == pytest.approx(88 / 0.6)
    assert values["requests_per_s"] == pytest.approx(8 / 0.6)
    assert values["output_tokens_per_s_per_user_p50"] == pytest.approx(11 / 0.3)
    assert [m for m in METRICS.values() if not m.budgeted] == [METRICS["error_rate"]]
    nothing = bench_reports.level(4, ttft=0.2, tpot=0.01, ok=0, failed=3)
    assert METRICS["ttft_p90_ms"].read(nothing) is None and METRICS["output_tokens_per_s"].read(nothing) is None
    assert METRICS["error_rate"].read(nothing) == 1.0


def test_plan_shows_the_effective_gate_of_a_recipe():
    data = tomllib.loads(PROD_EXAMPLE)
    env = Gate(**data["gate"])
    assert objectives.describe(objectives.to_plan(env, 10)) == [
        "gate: on; regression budget 10% against the target's current release",
        "  ttft_p90_ms ≤ 500.0 ms at concurrency 1",
        "  tpot_p50_ms ≤ 12.00 ms at concurrency 1",
        "  ttft_p90_ms ≤ 1500.0 ms at concurrency 10 (target)",
        "  tpot_p50_ms ≤ 25.00 ms at concurrency 10 (target)",
        "  output_tokens_per_s ≥ 1000.0 tok/s at concurrency 10 (target)",
        "  error_rate ≤ 0.0% at concurrency 10 (target)",
        "  measured at concurrency 1, 10",
    ]
    plan = objectives.to_plan(env, 10).model_dump(mode="json", exclude_unset=True)  # as `plan --json` shows it
    assert plan["enabled"] and plan["regression_budget"] == 0.1 and plan["record_baseline"] is False
    assert plan["objectives"][2] == {"metric": "ttft_p90_ms", "level": "target", "concurrency": 10, "max": 1500}
    assert plan["objectives"][4] == {"metric": "output_tokens_per_s", "level": "target", "concurrency": 10, "min": 1000}
    off = objectives.describe(objectives.to_plan(Gate(), 10))
    assert off == ["gate: off (promotions into this environment are not measured)"]
    lone = Gate(enabled=True, record_baseline=True, objectives=[Objective(metric="ttft_p90_ms", level=4, max=300)])
    described = objectives.describe(objectives.to_plan(lone, 10))
    assert described[0].endswith("; the target is measured after promotion")
    assert described[-2:] == ["  error_rate ≤ 0.0% at every measured level (no error_rate objective given)",
                              "  measured at concurrency 1, 4, 10"]


def test_a_recipes_gate_is_not_part_of_what_is_deployed(prod_with):
    """[recipes."<name>".gate] configures promotions: the recipe (whose own field is gate_workload) and every other
    part of the Deployment stay as they are, so changing objectives neither redeploys nor shows as drift."""
    before = {name: resolve(load_settings("prod"), name) for name in ("qwen3-8b-low-latency", "qwen3.6-35b-vlm")}
    settings = prod_with({"enabled": True, "objectives": [{"metric": "ttft_p90_ms", "level": 1, "max": 400}]},
                         recipe={"regression_budget": 0.2,
                                 "objectives": [{"metric": "ttft_p90_ms", "level": 1, "max": 900}]})
    assert {name: resolve(settings, name) for name in before} == before
    assert knobs_given(settings.recipes["qwen3.6-35b-vlm"]) == {}
    vlm = gate_for(settings, "qwen3.6-35b-vlm")
    assert (vlm.regression_budget, [o.limit for o in vlm.objectives]) == (0.2, [900])
    assert [o.limit for o in gate_for(settings, "qwen3-8b-low-latency").objectives] == [400]


def test_plan_shows_each_recipes_gate_in_text_and_stable_json(tmp_path):
    from infra.control import plan

    settings = load_settings("prod")
    plans = [plan.plan_for(settings, resolve(settings, name)) for name in settings.serves]
    assert [p.gate for p in plans] == [objectives.to_plan(gate_for(settings, name), 10) for name in settings.serves]
    assert plans[1].gate.objectives[0].model_dump(exclude_unset=True) == {"metric": "ttft_p90_ms", "level": 1,
                                                                          "concurrency": 1, "max": 1200}
    assert plans[1].gate.levels == [1, 10]
    assert json.loads(plan.to_json(plans))[0]["gate"] == plans[0].gate.model_dump(mode="json", exclude_unset=True)
    assert plan.to_json(plans) == plan.to_json(plans)
    text = plan.render(plans).splitlines()
    start = text.index("Gate           on; regression budget 10% against the target's current release")
    assert text[start + 1: start + 3] == ["               ttft_p90_ms ≤ 500.0 ms at concurrency 1",
                                          "               tpot_p50_ms ≤ 12.00 ms at concurrency 1"]
    assert "               output_tokens_per_s ≥ 600.0 tok/s at concurrency 10 (target)" in text  # the VLM's own
    dev = load_settings("dev")
    assert "Gate           off (promotions into this environment are not measured)" in plan.render(
        [plan.plan_for(dev, resolve(dev, "qwen3-8b-low-latency"))]).splitlines()
