"""Stage 5: stream one chat completion from the deployed endpoint and check that text came back.

It behaves like the reference documents' client (retry 503s and timeouts until a
deadline, sticky Modal-Session-Id, proxy-auth headers from the environment, an
image for the vision recipe), prints time to first token and total time, and
records the result on the current release, which is what `promote` checks.
"""

from __future__ import annotations

import asyncio
import json
import time

from infra import client, lifecycle
from infra.deployment import Deployment
from infra.errors import StageError
from infra.releases import ReleaseStore
from stages.common import Context, StageResult

STAGE = "smoke"
DEADLINE_SLACK = 120  # seconds beyond a full cold start before we give up on the first token


def smoke_payload(d: Deployment) -> dict:
    s = d.smoke
    messages: list[dict] = []
    if s.system_prompt:
        messages.append({"role": "system", "content": s.system_prompt})
    content: list[dict] = [{"type": "text", "text": s.prompt}]
    if s.with_image:
        content.insert(0, {"type": "image_url", "image_url": {"url": lifecycle.warmup_image_data_url()}})
    messages.append({"role": "user", "content": content})
    return client.chat_payload(messages, model=d.model, max_tokens=s.max_tokens, **s.extra_body)


def deadline_for(d: Deployment) -> float:
    """Long enough for a replica to start from zero."""
    return d.startup_timeout + DEADLINE_SLACK


def check(ctx: Context, d: Deployment, url: str, deadline: float | None = None, echo: bool = False) -> dict:
    """Stream one completion; return its measurements or raise StageError."""
    deadline = deadline or deadline_for(d)

    def retrying(attempt: int, err: client.EndpointError) -> None:
        if attempt == 1 or attempt % 30 == 0:
            ctx.say(f"waiting for a replica ({err.kind}: {err}); retrying until {deadline:g} s have passed...")

    started = time.time()
    try:
        result = asyncio.run(
            client.probe(url, smoke_payload(d), deadline_seconds=deadline, on_retry=retrying,
                         on_text=(lambda t: print(t, end="", flush=True)) if echo else None)
        )
    except client.EndpointError as err:
        raise StageError(STAGE, f"{d.env}/{d.recipe} at {url}: {err}") from None
    if echo:
        print()
    text, checked = answer_of(d, result)
    if not text.strip():
        if result.reasoning.strip():
            raise StageError(STAGE, f"{d.env}/{d.recipe} at {url}: the stream carried only reasoning_content "
                                    f"({len(result.reasoning)} characters) and no answer: the answer path was not "
                                    "exercised (turn thinking off in the recipe's smoke extra_body, e.g. "
                                    "chat_template_kwargs.enable_thinking=false, or set accept_reasoning_only)")
        raise StageError(STAGE, f"{d.env}/{d.recipe} at {url}: the stream ended without any text or reasoning text")
    return {
        "passed": True,
        "checked": checked,
        "reasoning_chars": len(result.reasoning),
        "url": url,
        "ttft": round(result.ttft or 0.0, 3),
        "total": round(result.total, 3),
        "output_tokens": result.output_tokens,
        "attempts": result.attempts,
        "reply": text[:200],
        "at": started,
    }


def answer_of(d: Deployment, result: client.StreamResult) -> tuple[str, str]:
    """The text that must be there, and a line saying what was checked.

    With a reasoning parser SGLang splits a reply into reasoning_content and content; a
    reply of reasoning alone proves the model ran, not that answers reach the user."""
    if d.smoke.accept_reasoning_only:
        return result.text or result.reasoning, "content or reasoning_content (the recipe accepts reasoning alone)"
    kwargs = d.smoke.extra_body.get("chat_template_kwargs")
    thinking = f" with chat_template_kwargs {json.dumps(kwargs, sort_keys=True)}" if kwargs else ""
    return result.text, f"answer text in content{thinking}"


def endpoint_url(ctx: Context, d: Deployment) -> str:
    entry = ctx.state(d).get("deploy")
    url = (entry or {}).get("result", {}).get("url") if entry else None
    url = url or ctx.remote.server_url(d)
    if not url:
        raise StageError(STAGE, f"no deployed endpoint for {d.app_name} in Modal environment {d.modal_environment}: "
                                f"run `invoke deploy --env {d.env} --recipe {d.recipe}`")
    return url


def record(ctx: Context, d: Deployment, outcome: dict) -> None:
    """Put the smoke result on the current release of this environment (what promotion checks)."""
    store = ReleaseStore(ctx.remote)
    with store.locked(d, "smoke"):
        manifest = store.read(d)
        if manifest.current is not None and manifest.current.url in (None, outcome["url"]):
            store.update_current(d, manifest, smoke=outcome)


def run(ctx: Context, d: Deployment, url: str | None = None, *, deadline: float | None = None) -> StageResult:
    if ctx.dry_run:
        return StageResult(STAGE, d.env, d.recipe, "dry-run", f"smoke (dry run): would stream one completion from {d.app_name}")
    ctx.remote.require_credentials()
    url = url or endpoint_url(ctx, d)
    ctx.say(f"smoke test: streaming one completion from {url}...")
    try:
        outcome = check(ctx, d, url, deadline)
    except StageError as err:
        record(ctx, d, {"passed": False, "url": url, "error": str(err), "at": time.time()})
        raise
    record(ctx, d, outcome)
    return StageResult(
        STAGE, d.env, d.recipe, "ran",
        f"smoke passed: time to first token {outcome['ttft']:.2f} s, total {outcome['total']:.2f} s, "
        f"{outcome['output_tokens']} tokens; checked {outcome['checked']}: {outcome['reply'][:80]!r}",
        outcome,
    )
