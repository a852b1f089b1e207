"""The recipe's real model and draft, started as a server container starts them: `invoke gpu-test --shape model`.

Runs only with GPU_SUITE_SHAPE=model and the Deployment in INFRA_DEPLOYMENT (what the gpu_test Function's container
has, infra/runtime/spec.py), with the weights Volume and the published compile caches mounted where the server's
container finds them (after `invoke download` and `invoke compile`). One start through infra/runtime/startup.py, the
function infra/runtime/app.py calls, then:

- the start became ready and its timeline (the record the container writes) shows no compile-cache miss against the
  published caches, and every phase it expects;
- the recipe's smoke test answers with text, as `invoke smoke` checks it;
- speculative decoding accepts more tokens per verify step than the recipe's floor (speculative.min_accept_length).

GPU_SUITE_REPORT, if set, receives the start's record, the smoke outcome and the acceptance length.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.gpu import real_sglang as real


def _reason() -> str | None:
    if real.SHAPE != "model":
        return (f"GPU_SUITE_SHAPE={real.SHAPE}: the real model runs with GPU_SUITE_SHAPE=model "
                "(invoke gpu-test --shape model)")
    if not os.environ.get("INFRA_DEPLOYMENT"):
        return ("needs the recipe's Deployment in INFRA_DEPLOYMENT and its Volumes mounted: "
                "run invoke gpu-test --shape model")
    return real.unavailable_reason()


REASON = _reason()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"real model: {REASON}"),
    pytest.mark.timeout(3600),
]


def report(**values) -> None:
    if path := os.environ.get("GPU_SUITE_REPORT"):
        previous = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        Path(path).write_text(json.dumps(previous | values, indent=1, default=str))


@pytest.fixture(scope="module")
def started():
    from infra.runtime import compile_cache, current, lifecycle, sglang_args, startup, weights
    from infra.runtime.recipes.base import HF_CACHE_PATH, KERNELS_PATH

    d = current.deployment()
    weights.require_downloaded(HF_CACHE_PATH, d)
    records: list[dict] = []
    url = f"http://127.0.0.1:{d.server.port}"
    readiness = lifecycle.Readiness(timeout=d.recipe.readiness_timeout, poll_interval=d.recipe.health_poll_interval,
                                    warmup=d.recipe.warmup, model=d.recipe.model,
                                    startup_budget=d.recipe.startup_timeout)
    done = startup.start(d, sglang_args.launch_command(d), url, readiness, volume_root=KERNELS_PATH,
                         local_root=compile_cache.LOCAL_ROOT, write=records.append, wait_on_ready=30)
    report(start=done.record)
    yield d, url, done.record
    done.server.stop(grace=0)


def test_the_start_from_the_published_caches_is_ready_without_a_cache_miss(started):
    _, _, record = started
    assert record["outcome"] == "ready", record.get("error")
    assert record["restore"]["restored"] is True, f"no published compile caches for this key: {record['restore']}"
    assert record["misses"] == {}, f"the start compiled what the compile job did not publish: {record['misses']}"
    assert record["missing"] == [], f"phases not seen in SGLang's log: {record['missing']}"


def test_the_smoke_test_answers_in_text(started):
    from infra.perf import smoketest

    d, url, _ = started
    outcome = smoketest.check(d, url, deadline=120, say=lambda _msg: None)
    report(smoke=outcome)
    assert outcome["passed"] and outcome["output_tokens"] > 0, outcome


def test_speculative_decoding_accepts_more_than_the_recipes_floor(started):
    d, url, _ = started
    spec = d.recipe.speculative
    if spec is None or spec.min_accept_length is None:
        pytest.skip(f"{d.recipe.name} states no speculative acceptance floor")
    w = d.recipe.warmup
    body = json.dumps({"text": w.prompt, "sampling_params": {"max_new_tokens": 256, "temperature": 0}}).encode()
    req = urllib.request.Request(f"{url}/generate", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        meta = json.loads(resp.read())["meta_info"]
    steps = meta.get("spec_verify_ct") or 0
    accepted = meta["completion_tokens"] / steps if steps else 0.0
    report(speculative={"completion_tokens": meta["completion_tokens"], "spec_verify_ct": steps,
                        "accept_length": round(accepted, 3), "floor": spec.min_accept_length})
    assert steps > 0, "no verify step ran: speculative decoding is off"
    assert accepted > spec.min_accept_length, (
        f"{accepted:.2f} tokens accepted per verify step, floor {spec.min_accept_length}: is the draft model "
        f"{spec.draft_model or '(MTP)'} the right one for {d.recipe.model}?")
