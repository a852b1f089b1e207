"""The sentinel's Modal app: `sglang-sentinel-<env>`, one Function that Modal runs every `[sentinel] interval_seconds`.

Deployed by `invoke sentinel --env ENV`. Like infra/runtime/app.py, Modal imports it on the deploying machine and in
every container, both reading the same `SentinelSpec` from `INFRA_SENTINEL`: the container finds what was deployed.
"""

from __future__ import annotations

import os

import modal

from infra.runtime import modal_objects, remote, sentinel, spec

watched = sentinel.SentinelSpec.model_validate_json(os.environ[sentinel.SPEC_VARIABLE])
options = spec.sentinel_app(watched)

app = modal.App(**options["app"])
PROXY_AUTH = {"Modal-Key": "MODAL_KEY", "Modal-Secret": "MODAL_SECRET"}  # header -> the Secret's variable


@app.function(**modal_objects.options(options["function"]))
def probe() -> list[dict]:
    """One probe (or a recorded skip) per served recipe, into the `sglang-sentinel` Dict of this Modal Environment."""
    headers = {header: os.environ[name] for header, name in PROXY_AUTH.items() if os.environ.get(name)}
    done = sentinel.run(watched, remote.ModalRemote(), headers)
    return [p.model_dump(mode="json") for p in done]
