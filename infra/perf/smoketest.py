"""The smoke test: one streamed chat completion that proves a deployed endpoint answers.

It behaves like the reference documents' client (retry 503s and timeouts until a deadline, sticky Modal-Session-Id,
proxy-auth headers, an image for the vision recipe) and returns what it measured. `invoke smoke`, `invoke try` and
`invoke promote` all use it; only the smoke stage records the result on the release.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from pydantic import Field

from infra.perf import client
from infra.runtime import lifecycle
from infra.runtime.deployment import Deployment
from infra.runtime.errors import StageError
from infra.runtime.model import Stored

STAGE = "smoke"
DEADLINE_SLACK = 120  # seconds beyond a full cold start before we give up on the first token


class SmokeResult(Stored):
    """One smoke test, as the release it tested records it (`Release.smoke`) and `invoke smoke --json` prints it.
    A failed one has `passed` false and its `error`; manifests written before the measurements were kept have
    only `passed`, `ttft`, `total`, `at` (and `error`): the rest defaults."""

    passed: bool
    checked: str | None = None  # what the reply had to contain (the answer, or reasoning where the recipe accepts it)
    reasoning_chars: int | None = None
    url: str | None = None
    ttft: float | None = None
    total: float | None = None
    output_tokens: int | None = None
    attempts: int | None = None
    reply: str | None = None
    at: float | None = None
    error: str | None = Field(default=None, exclude_if=lambda v: v is None)

    @classmethod
    def failed(cls, url: str | None, error: str) -> SmokeResult:
        return cls(passed=False, url=url, error=error, at=time.time())


def payload(d: Deployment) -> dict:
    s = d.recipe.smoke
    messages: list[dict] = []
    if s.system_prompt:
        messages.append({"role": "system", "content": s.system_prompt})
    content: list[dict] = [{"type": "text", "text": s.prompt}]
    if s.with_image:
        content.insert(0, {"type": "image_url", "image_url": {"url": lifecycle.warmup_image_data_url()}})
    messages.append({"role": "user", "content": content})
    return client.chat_payload(messages, model=d.recipe.model, max_tokens=s.max_tokens, **s.extra_body)


def deadline_for(d: Deployment) -> float:
    """Long enough for a replica to start from zero."""
    return d.recipe.startup_timeout + DEADLINE_SLACK


def check(d: Deployment, url: str, *, deadline: float | None = None, say: Callable[[str], None] = print,
          echo: bool = False) -> SmokeResult:
    """Stream one completion from `url`, the deployment's own endpoint; return its measurements or raise
    StageError('smoke', ...)."""
    deadline = deadline or deadline_for(d)
    headers = client.endpoint_headers(d, url)

    def retrying(attempt: int, err: client.EndpointError) -> None:
        if attempt == 1 or attempt % 30 == 0:
            say(f"waiting for a replica ({err.kind}: {err}); retrying until {deadline:g} s have passed...")

    started, echoed = time.time(), (lambda t: print(t, end="", flush=True)) if echo else None
    try:
        result = asyncio.run(client.probe(url, payload(d), deadline_seconds=deadline, on_retry=retrying,
                                          headers=headers, on_text=echoed))
    except client.EndpointError as err:
        raise StageError(STAGE, f"{d.env}/{d.recipe.name} at {url}: {err}") from None
    if echo:
        print()
    text, checked = answer_of(d, result)
    if not text.strip():
        if result.reasoning.strip():
            raise StageError(STAGE, f"{d.env}/{d.recipe.name} at {url}: the stream carried only reasoning_content "
                                    f"({len(result.reasoning)} characters) and no answer: the answer path was not "
                                    "exercised (turn thinking off in the recipe's smoke extra_body, e.g. "
                                    "chat_template_kwargs.enable_thinking=false, or set accept_reasoning_only)")
        raise StageError(STAGE, f"{d.env}/{d.recipe.name} at {url}: the stream ended without any text or reasoning "
                                "text")
    return SmokeResult(passed=True, checked=checked, reasoning_chars=len(result.reasoning), url=url,
                       ttft=round(result.ttft or 0.0, 3), total=round(result.total, 3),
                       output_tokens=result.output_tokens, attempts=result.attempts, reply=text[:200], at=started)


def answer_of(d: Deployment, result: client.StreamResult) -> tuple[str, str]:
    """The text that must be there, and a line saying what was checked.

    With a reasoning parser SGLang splits a reply into reasoning_content and content; a
    reply of reasoning alone proves the model ran, not that answers reach the user."""
    smoke = d.recipe.smoke
    if smoke.accept_reasoning_only:
        return result.text or result.reasoning, "content or reasoning_content (the recipe accepts reasoning alone)"
    kwargs = smoke.extra_body.get("chat_template_kwargs")
    thinking = f" with chat_template_kwargs {json.dumps(kwargs, sort_keys=True)}" if kwargs else ""
    return result.text, f"answer text in content{thinking}"
