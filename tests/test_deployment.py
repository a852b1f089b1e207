"""The Deployment: the resolved recipe beside the environment's parts, and its exact JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra.runtime.deployment import DecodeError, Deployment
from infra.runtime.recipes import RECIPES
from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from tests.conftest import deployment

SCHEDULE = ('scaling.schedule=[{name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI", '
            'timezone="America/New_York", min_containers=2}]')


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_json_round_trip_is_exact(env, recipe):
    d = resolve(load_settings(env, overrides=parse_overrides([SCHEDULE] if env == "prod" else [])), recipe)
    again = Deployment.from_json(d.to_json())
    assert again == d and again.to_json() == d.to_json()
    assert isinstance(again.recipe.extra_flags, tuple) and all(isinstance(f, tuple) for f in again.recipe.extra_flags)


def test_the_recipe_is_the_resolved_recipe_and_the_rest_is_the_environments():
    s = load_settings("prod", overrides=parse_overrides([
        "recipes.qwen3-8b-low-latency.target_concurrency=4", "recipes.qwen3-8b-low-latency.compute_region=us-west",
        f'recipes.qwen3-8b-low-latency.draft_revision="{"b" * 40}"']))
    d = resolve(s, "qwen3-8b-low-latency")
    assert d.recipe == dataclasses.replace(
        RECIPES["qwen3-8b-low-latency"], target_concurrency=4,
        speculative=dataclasses.replace(RECIPES["qwen3-8b-low-latency"].speculative, draft_revision="b" * 40))
    # A region is the environment's even where a recipe table sets it: a promotion must not carry it.
    assert d.placement.compute_region == "us-west" and d.recipe.compute_region == "us-east"
    assert d.scaling.min_containers == 1 and d.server.port == 8000 and d.auth.proxy_auth


def test_data_written_before_a_field_with_a_default_existed_still_decodes():
    data = json.loads(deployment("prod").to_json())
    del data["scaling"]["schedule"]  # a manifest written before schedules existed
    assert Deployment.from_dict(data).scaling.schedule == ()


@pytest.mark.parametrize("mangle, message", [
    (lambda data: data["recipe"].pop("model"), "deployment.recipe: missing field 'model'"),
    (lambda data: data["scaling"].update(surprise=1), "deployment.scaling: unknown field(s) surprise"),
    (lambda data: data.update(recipe="qwen3-8b-low-latency"), "deployment.recipe: expected an object, got str"),
])
def test_data_that_is_not_a_deployment_is_refused_by_name(mangle, message):
    data = json.loads(deployment("prod").to_json())
    mangle(data)
    with pytest.raises(DecodeError) as err:
        Deployment.from_dict(data)
    assert str(err.value) == message
