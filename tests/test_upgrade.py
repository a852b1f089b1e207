"""`invoke upgrade`: flags migrated across every tabled SGLang version, the recipe rewritten, plan both sides."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess

import pytest

from infra.control import sglang_flags, upgrade
from infra.control.resolve import resolve
from infra.control.settings import load_settings
from infra.runtime import compile_cache, sglang_args
from infra.runtime.errors import ConfigError
from infra.runtime.recipes import RECIPES
from tests.conftest import REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def later_versions(version: str) -> list[str]:
    return [v for v in sglang_flags.supported_versions()
            if sglang_flags.version_key(v) > sglang_flags.version_key(version)]


PAIRS = [(name, v) for name, r in RECIPES.items() for v in later_versions(r.sglang_version)]


@pytest.mark.parametrize(("name", "version"), PAIRS, ids=[f"{n}-{v}" for n, v in PAIRS])
def test_every_recipe_migrates_to_every_newer_tabled_version_and_plan_accepts_it(name, version):
    recipe = RECIPES[name]
    moved, migration = upgrade.migrate(recipe, sglang=version)
    assert migration.refused == ()
    assert moved.sglang_version == version and f"v{version}" in moved.sglang_image
    assert migration.steps[-1] == version and list(migration.steps) == upgrade.versions_between(
        recipe.sglang_version, version)
    d = resolve(load_settings("prod", None, {}), name, base=moved)  # check_flags: every flag and value accepted
    assert sglang_flags.deprecation_warnings(d) == []  # nothing left that the new version deprecates
    flags = dict(sglang_args.flag_values(sglang_args.launch_command(d)[3:]))
    for flag in flags:
        assert flag in sglang_flags.known_flags(version)


VERSIONS = sglang_flags.supported_versions()
ALL_PAIRS = [(a, b) for i, a in enumerate(VERSIONS) for b in VERSIONS[i + 1:]]


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=[f"{a}-{b}" for a, b in ALL_PAIRS])
def test_every_tabled_version_pair_migrates_the_8b_recipe_as_it_would_stand_on_the_older(old, new):
    """The low-latency recipe as it would be written for `old` (its flags, spelled as `old` spells them), moved to
    `new`: nothing refused, and what comes out is what `new` accepts and does not deprecate."""
    base = RECIPES["qwen3-8b-low-latency"]
    image = f"lmsysorg/sglang:v{old}-cu129-amd64-runtime"
    at_old = base.model_copy(update={"sglang_version": old, "sglang_image": image})
    settings = load_settings("prod", None, {})
    resolve(settings, base.name, base=at_old)  # the starting point is valid for `old`
    moved, migration = upgrade.migrate(at_old, sglang=new)
    assert migration.refused == () and migration.steps[-1] == new
    d = resolve(settings, base.name, base=moved)
    assert sglang_flags.deprecation_warnings(d) == []


@pytest.mark.parametrize("version", sglang_flags.supported_versions())
def test_flags_the_project_derives_are_spelled_as_each_tabled_version_declares_them(version):
    for old in sglang_args.RENAMED:
        spelled = sglang_args.spelled(old, version)
        spec = sglang_flags.flags(version).get(spelled)
        assert spec is not None, f"SGLang {version} has no {spelled}"
        assert "deprecated" not in spec, f"SGLang {version} deprecates {spelled}: {spec['deprecated']}"


def test_a_flag_removed_without_a_successor_is_refused_naming_the_version_that_removed_it():
    recipe = RECIPES["qwen3-8b-low-latency"].model_copy(update={
        "sglang_version": "0.5.11", "sglang_image": "lmsysorg/sglang:v0.5.11-cu129-amd64-runtime",
        "extra_flags": (("--enable-metrics", None), ("--enable-nan-detection", None))})
    moved, migration = upgrade.migrate(recipe, sglang="0.5.17")
    assert migration.refused == ("--enable-nan-detection: SGLang 0.5.17 removed it with no successor (it was still in "
                                 "0.5.11); allowed: drop it from the recipe's extra_flags, or stay below 0.5.17",)
    assert ("--enable-nan-detection", None) in moved.extra_flags  # kept for a person to decide, not dropped silently


def test_a_flag_the_old_version_ignores_is_dropped_and_a_deprecated_alias_is_rewritten():
    recipe = RECIPES["qwen3.6-35b-vlm"].model_copy(update={
        "sglang_version": "0.5.11", "sglang_image": "lmsysorg/sglang:v0.5.11-cu130-runtime",
        "extra_flags": (("--enable-piecewise-cuda-graph", None), ("--mamba-scheduler-strategy", "extra_buffer"))})
    moved, migration = upgrade.migrate(recipe, sglang="0.5.17")
    assert moved.extra_flags == (("--mamba-radix-cache-strategy", "extra_buffer"),)
    assert migration.flag_names == (None, "--mamba-radix-cache-strategy")
    why = {c.what: c.why for c in migration.changes}
    assert why["--enable-piecewise-cuda-graph"] == "SGLang 0.5.11 already ignored it; 0.5.17 removed it"
    assert "deprecates it in favour of --mamba-radix-cache-strategy" in why["--mamba-scheduler-strategy"]
    # Two versions on, the alias is gone: the same flag is then renamed, not deprecated.
    _, later = upgrade.migrate(recipe, sglang="0.5.23")
    assert "0.5.23 renamed it" in {c.what: c.why for c in later.changes}["--mamba-scheduler-strategy"]


def test_the_cache_layout_change_is_named_a_new_cache_and_a_new_compile_key():
    recipe = RECIPES["qwen3-8b-low-latency"]
    assert recipe.sglang_version == "0.5.6.post2"
    moved, migration = upgrade.migrate(recipe, sglang="0.5.17")
    change = next(c for c in migration.changes if c.what == "cache sglang")
    assert change.after == "SGLANG_CACHE_DIR -> sglang/" and "0.5.10.post1" in change.why
    assert [c.name for c in compile_cache.applicable("0.5.17")] == [c.name for c in compile_cache.CACHES]
    settings = load_settings("prod", None, {})
    from infra.runtime.kernels import kernel_fingerprint
    assert kernel_fingerprint(resolve(settings, recipe.name)) != kernel_fingerprint(
        resolve(settings, recipe.name, base=moved))


def test_the_edited_source_defines_exactly_the_migrated_recipe(tmp_path):
    recipe = RECIPES["qwen3.6-35b-vlm"]
    moved, migration = upgrade.migrate(recipe, sglang="0.5.23", model_revision=COMMIT)
    path = upgrade.recipe_file(recipe.name)
    edited = upgrade.edit_source(path.read_text(), recipe, moved, migration.flag_names)
    (tmp_path / "recipe.py").write_text(edited)
    assert runpy.run_path(str(tmp_path / "recipe.py"))["RECIPE"] == moved
    diff = upgrade.unified_diff(path, path.read_text(), edited)
    assert '-        ("--mamba-scheduler-strategy", "extra_buffer"),' in diff
    assert '+        ("--mamba-radix-cache-strategy", "extra_buffer"),' in diff
    assert f'+    model_revision="{COMMIT}",' in diff


def test_a_dropped_flag_loses_its_line_and_the_file_still_defines_the_recipe(tmp_path):
    recipe = RECIPES["qwen3.6-35b-vlm"]
    source = upgrade.recipe_file(recipe.name).read_text()
    source = source.replace('("--enable-metrics", None),', '("--enable-piecewise-cuda-graph", None),', 1)
    source = source.replace('"0.5.10.post1"', '"0.5.11"').replace("v0.5.10.post1", "v0.5.11")
    (tmp_path / "before.py").write_text(source)
    old = runpy.run_path(str(tmp_path / "before.py"))["RECIPE"]
    moved, migration = upgrade.migrate(old, sglang="0.5.17")
    (tmp_path / "after.py").write_text(upgrade.edit_source(source, old, moved, migration.flag_names))
    assert runpy.run_path(str(tmp_path / "after.py"))["RECIPE"] == moved
    assert "--enable-piecewise-cuda-graph" not in (tmp_path / "after.py").read_text()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sglang": "0.5.99"}, "sglang_version = '0.5.99' has no flag table; known versions:"),
    ({"sglang": "latest"}, "--sglang 'latest' is not a version; allowed: a release such as 0.5.17"),
    ({"model_revision": "main"}, "--model-revision 'main' is not a commit"),
])
def test_bad_input_is_one_line_naming_the_value(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        upgrade.migrate(RECIPES["qwen3.6-35b-vlm"], **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_downgrade_is_refused():
    with pytest.raises(ConfigError, match=r"--sglang 0.5.6.post2: recipe 'qwen3.6-35b-vlm' runs 0.5.10.post1 already"):
        upgrade.migrate(RECIPES["qwen3.6-35b-vlm"], sglang="0.5.6.post2")


def _project(cli):
    project = cli.project
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    return project


def _git(project, *args):
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout


def test_dry_run_is_offline_writes_nothing_and_shows_the_migration_and_plan_diff(cli):
    project = _project(cli)
    done = cli("upgrade", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--sglang", "0.5.17", "--dry-run",
               MODAL_SERVER_URL="http://127.0.0.1:9", HF_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "upgrade qwen3-8b-low-latency: SGLang 0.5.6.post2 -> 0.5.17 (through 0.5.10.post1, 0.5.11, 0.5.17)" in out
    assert "launch  - --cuda-graph-max-bs 20\n  launch  + --cuda-graph-max-bs-decode 20" in out
    assert "(new key: the first start recompiles; run `invoke compile`)" in out
    assert "would write: infra/runtime/recipes/qwen3_8b_low_latency.py" in out
    assert _git(project, "status", "--porcelain", "infra") == ""


def test_upgrade_writes_a_diff_that_plan_accepts(cli):
    project = _project(cli)
    done = cli("upgrade", "--env", "prod", "--recipe", "qwen3.6-35b-vlm", "--sglang", "0.5.17", "--modal", "1.6.5",
               "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)[0]["detail"]
    assert report["written"] is True and report["migration"]["refused"] == []
    diff = _git(project, "diff", "infra/runtime/recipes/qwen3_6_35b_vlm.py")
    assert '+    sglang_version="0.5.17",' in diff and "--mamba-radix-cache-strategy" in diff
    assert '"modal==1.6.5"' in (project / "pyproject.toml").read_text()
    plan = cli("plan", "--env", "prod", "--recipe", "qwen3.6-35b-vlm", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)[0]["sglang_version"] == "0.5.17"
    again = cli("upgrade", "--env", "prod", "--recipe", "qwen3.6-35b-vlm", "--sglang", "0.5.17")
    assert again.returncode == 0 and "nothing to write: the recipe is already there" in again.stdout


def test_a_refused_migration_writes_nothing_unless_forced(cli):
    project = _project(cli)
    path = project / "infra/runtime/recipes/qwen3_8b_low_latency.py"
    path.write_text(path.read_text().replace('("--enable-metrics", None)', '("--enable-nan-detection", None)')
                    .replace('"0.5.6.post2"', '"0.5.11"').replace("v0.5.6.post2", "v0.5.11"))
    _git(project, "commit", "-qam", "a recipe on 0.5.11 with a flag 0.5.17 removed")
    refused = cli("upgrade", "--env", "dev", "--recipe", "qwen3-8b-low-latency", "--sglang", "0.5.17")
    assert refused.returncode != 0
    assert "--enable-nan-detection: SGLang 0.5.17 removed it with no successor" in refused.stderr
    assert _git(project, "status", "--porcelain", "infra") == ""
    forced = cli("upgrade", "--env", "dev", "--recipe", "qwen3-8b-low-latency", "--sglang", "0.5.17", "--force")
    assert forced.returncode == 0, forced.stderr
    assert '+    sglang_version="0.5.17",' in _git(project, "diff")


def test_a_version_without_a_table_gets_one_from_its_wheel_first_and_never_in_a_dry_run(cli, tmp_path):
    from tests.test_sglang_flags import NEW_STYLE, build_wheel

    project = _project(cli)
    index = tmp_path / "index"
    index.mkdir()
    build_wheel(index, "0.5.99", NEW_STYLE)  # a small stand-in for a release nobody tabled yet
    pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}
    table = project / "infra/control/sglang_versions.json"
    offline = cli("upgrade", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--sglang", "0.5.99", "--dry-run", **pip)
    assert offline.returncode == 1 and offline.stderr.startswith(
        "error: --sglang 0.5.99: no flag table for it yet and a dry run is offline; known versions:")
    assert "0.5.99" not in json.loads(table.read_text())["versions"]
    done = cli("upgrade", "--env", "dev", "--recipe", "qwen3.6-35b-vlm", "--sglang", "0.5.99", **pip)
    assert "0.5.99" in json.loads(table.read_text())["versions"]  # read from the wheel pip found
    # The stand-in declares a handful of flags: the recipe's others are refused by name, and the recipe is untouched.
    assert done.returncode == 1 and "SGLang 0.5.99 removed it with no successor" in done.stderr
    assert _git(project, "status", "--porcelain", "infra/runtime") == ""
