"""The Deployment: the resolved recipe beside the environment's parts, and its exact JSON round trip."""

from __future__ import annotations

import json
import sys

import pytest
from pydantic import ValidationError

from infra.control.resolve import resolve
from infra.control.settings import load_settings, parse_overrides
from infra.runtime.deployment import Deployment
from infra.runtime.recipes import RECIPES
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
        "recipes.qwen3-8b-low-latency.target_concurrency=4", "placement.compute_region=us-west",
        f'recipes.qwen3-8b-low-latency.draft_revision="{"b" * 40}"']))
    d = resolve(s, "qwen3-8b-low-latency")
    assert d.recipe == RECIPES["qwen3-8b-low-latency"].model_copy(update=dict(target_concurrency=4,
        speculative=RECIPES["qwen3-8b-low-latency"].speculative.model_copy(update=dict(draft_revision="b" * 40))))
    # A region is the environment's alone ([placement]): a promotion, which carries the recipe, cannot carry it.
    assert d.placement.compute_region == "us-west" and "compute_region" not in d.recipe.model_dump()
    assert d.scaling.min_containers == 1 and d.server.port == 8000 and d.auth.proxy_auth


def test_data_written_before_a_field_with_a_default_existed_still_reads():
    data = json.loads(deployment("prod").to_json())
    del data["scaling"]["schedule"]  # a manifest written before schedules existed
    assert Deployment.read(data).scaling.schedule == []


def test_reading_tolerates_keys_a_newer_version_wrote_and_writing_forbids_them():
    data = json.loads(deployment("prod").to_json())
    data["scaling"]["surprise"] = 1
    data["recipe"]["added_later"] = {"x": 1}
    assert Deployment.read(data) == deployment("prod")
    with pytest.raises(ValidationError) as err:
        Deployment.model_validate_json(json.dumps(data))
    assert {(e["type"], e["loc"][-1]) for e in err.value.errors()} == {("extra_forbidden", "surprise"),
                                                                       ("extra_forbidden", "added_later")}


@pytest.mark.parametrize("mangle, loc", [
    (lambda data: data["recipe"].pop("model"), ("recipe", "model")),
    (lambda data: data.update(recipe="qwen3-8b-low-latency"), ("recipe",)),
])
def test_data_that_is_not_a_deployment_is_refused_by_name(mangle, loc):
    data = json.loads(deployment("prod").to_json())
    mangle(data)
    with pytest.raises(ValidationError) as err:
        Deployment.read(data)
    assert err.value.errors()[0]["loc"] == loc


def test_a_container_reads_back_exactly_what_was_resolved_without_the_laptops_checks(monkeypatch):
    """The server image has no cron library: the JSON baked into a container is read without re-checking crons."""
    d = resolve(load_settings("prod", overrides=parse_overrides([SCHEDULE])), "qwen3-8b-low-latency")
    monkeypatch.setitem(sys.modules, "cronsim", None)  # as in the SGLang image: `import cronsim` fails
    assert Deployment.from_json(d.to_json()) == d
    with pytest.raises(ImportError):  # where it is resolved, the same data is checked, with cronsim
        Deployment.model_validate_json(d.to_json())
