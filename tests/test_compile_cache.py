"""The compile-cache root: which variables, which key, and moving trees between the Volume and local disk
without ever half-publishing or writing to the shared copy. Real files, real copies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra.runtime import compile_cache
from infra.runtime.recipes import RECIPES, qwen3_6_35b_vlm, qwen3_8b_low_latency

KEY = compile_cache.cache_key(
    sglang_image="lmsysorg/sglang:v0.5.6.post2-cu129-amd64-runtime", gpu_type="H100!", tp_size=2,
    server_args=["--model-path", "Qwen/Qwen3-8B-FP8", "--tp-size", "2"], model="Qwen/Qwen3-8B-FP8",
    model_revision="220b46e3b2180893580a4454f21f22d3ebb187d3", draft_model="Tengyunw/qwen3_8b_eagle3",
    draft_revision="0123456789abcdef0123456789abcdef01234567",
)


def compiled_tree(root, marker: str = "a") -> None:
    """What a compile job leaves in its local root: a kernel in every cache."""
    compile_cache.prepare(root)
    for c in compile_cache.CACHES:
        (root / c.folder / "sub").mkdir(parents=True, exist_ok=True)
        (root / c.folder / "sub" / f"kernel-{marker}.bin").write_bytes(os.urandom(512))


def listing(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_every_variable_points_under_the_root():
    env = compile_cache.environment("/fixed/root")
    for c in compile_cache.CACHES:
        assert env[c.variable] == f"/fixed/root/{c.folder}"
    assert env["CUDA_CACHE_MAXSIZE"] == str(4 * 1024**3)  # the driver's default (256 MiB) would evict
    assert len({c.folder for c in compile_cache.CACHES}) == len(compile_cache.CACHES)


def test_which_caches_matter_for_which_sglang_version():
    old = {c.name for c in compile_cache.applicable("0.5.6.post2")}
    new = {c.name for c in compile_cache.applicable("0.5.10.post1")}
    assert "sglang" not in old and "sglang" in new  # piecewise CUDA graphs (torch.compile) by default from 0.5.10
    assert new == {c.name for c in compile_cache.CACHES} == {c.name for c in compile_cache.applicable("0.5.11")}
    assert old == new - {"sglang"}


RECIPE_MODULES = {"qwen3-8b-low-latency": qwen3_8b_low_latency, "qwen3.6-35b-vlm": qwen3_6_35b_vlm}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_says_which_caches_apply_to_its_sglang_version(name):
    doc = RECIPE_MODULES[name].__doc__
    assert RECIPE_MODULES[name].RECIPE is RECIPES[name]
    assert f"Compiled caches (infra/runtime/compile_cache.py) for SGLang {RECIPES[name].sglang_version}" in doc
    for c in compile_cache.applicable(RECIPES[name].sglang_version):
        assert c.name in doc, (name, c.name)


@pytest.mark.parametrize("field, value", [
    ("sglang_image", "lmsysorg/sglang:v0.5.7-cu129-amd64-runtime"), ("gpu_type", "H200"), ("tp_size", 1),
    ("server_args", ["--model-path", "Qwen/Qwen3-8B-FP8", "--tp-size", "2", "--cuda-graph-max-bs", "8"]),
    ("model_revision", "f" * 40), ("draft_revision", "e" * 40), ("draft_model", None),
])
def test_the_fingerprint_changes_with_everything_the_key_holds(field, value):
    assert compile_cache.fingerprint(KEY | {field: value}) != compile_cache.fingerprint(KEY)


def test_publish_then_restore_at_the_fixed_path(tmp_path):
    local, volume = tmp_path / "local", tmp_path / "volume"
    compiled_tree(local)
    result = compile_cache.publish(local, volume, KEY)
    fp = compile_cache.fingerprint(KEY)
    tree = compile_cache.published_dir(volume, fp)
    assert result.published == str(tree) and result.already_there is False
    assert result.caches["total"].files == result.files == len(compile_cache.CACHES)
    assert json.loads((tree / "key.json").read_text())["key"] == KEY
    assert [p.name for p in tree.parent.iterdir()] == [fp]  # no temporary folder left

    # A new container: nothing local, then its key's tree copied in; the Volume untouched.
    fresh = tmp_path / "container" / "root"
    before = listing(volume)
    restored = compile_cache.restore(volume, fp, fresh)
    assert restored.restored is True and restored.files == len(compile_cache.CACHES)
    assert restored.bytes == 512 * len(compile_cache.CACHES)
    kernel = Path("triton", "sub", "kernel-a.bin")
    assert (fresh / kernel).read_bytes() == (tree / kernel).read_bytes()
    assert not (fresh / "key.json").exists()
    assert listing(volume) == before


def test_restore_without_a_published_tree_starts_empty_and_says_why(tmp_path):
    local = tmp_path / "root"
    compiled_tree(local, "stale")  # whatever was on local disk goes: it may be from another key
    result = compile_cache.restore(tmp_path / "volume", "0" * 16, local)
    assert result.restored is False and "no published compile cache" in result.reason
    assert sorted(p.name for p in local.iterdir()) == sorted(c.folder for c in compile_cache.CACHES)
    assert list(local.rglob("*.bin")) == []


def test_restore_refuses_a_tree_whose_key_file_is_missing_or_names_another_key(tmp_path):
    volume = tmp_path / "volume"
    fp = compile_cache.fingerprint(KEY)
    tree = compile_cache.published_dir(volume, fp)
    compiled_tree(tree)  # a tree copied by hand, without key.json: incomplete as far as we know
    assert compile_cache.restore(volume, fp, tmp_path / "a").restored is False
    (tree / "key.json").write_text(json.dumps({"fingerprint": "somethingelse"}))
    result = compile_cache.restore(volume, fp, tmp_path / "b")
    assert result.restored is False and "names 'somethingelse'" in result.reason


def test_a_second_publish_of_the_same_key_keeps_the_first_tree(tmp_path):
    volume = tmp_path / "volume"
    compiled_tree(tmp_path / "one", "first")
    compiled_tree(tmp_path / "two", "second")
    compile_cache.publish(tmp_path / "one", volume, KEY)
    again = compile_cache.publish(tmp_path / "two", volume, KEY)
    tree = compile_cache.published_dir(volume, compile_cache.fingerprint(KEY))
    assert again.already_there is True
    assert (tree / "triton" / "sub" / "kernel-first.bin").exists() and not list(tree.rglob("kernel-second.bin"))
    assert [p.name for p in tree.parent.iterdir()] == [tree.name]


def test_a_forced_publish_replaces_the_tree_whole(tmp_path):
    """`invoke compile --force` (after a start missed the caches): the new tree replaces the old one, nothing left
    aside."""
    volume = tmp_path / "volume"
    compiled_tree(tmp_path / "one", "first")
    compiled_tree(tmp_path / "two", "second")
    compile_cache.publish(tmp_path / "one", volume, KEY)
    again = compile_cache.publish(tmp_path / "two", volume, KEY, replace=True)
    tree = compile_cache.published_dir(volume, compile_cache.fingerprint(KEY))
    assert again.already_there is False
    assert (tree / "triton" / "sub" / "kernel-second.bin").exists() and not list(tree.rglob("kernel-first.bin"))
    assert [p.name for p in tree.parent.iterdir()] == [tree.name]
    assert compile_cache.restore(volume, compile_cache.fingerprint(KEY), tmp_path / "local").restored is True
