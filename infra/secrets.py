"""Secret values are never printed, logged, written to a manifest or put in an exception.

Settings only ever hold secret *names* (a Modal Secret called "huggingface-secret");
the values live in Modal, or in the caller's environment for local use. Anything
that reaches a terminal or a file passes through `scrub`, which replaces every
secret value present in the environment with a mask.
"""

from __future__ import annotations

import os

# Environment variables whose values are credentials.
SECRET_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_KEY", "MODAL_SECRET")
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words


def mask(value: str | None) -> str:
    """'hf_abcdef123' -> 'hf_…(masked)'; keeps a prefix that says what kind of token it is, nothing more."""
    if not value:
        return "not set"
    prefix = value.split("_", 1)[0] + "_" if "_" in value[:4] else ""
    return f"{prefix}…(masked)"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    values = [environ.get(name, "") for name in SECRET_VARIABLES]
    return sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def scrub(text: str, environ: dict[str, str] | None = None) -> str:
    for value in secret_values(environ):
        text = text.replace(value, "****")
    return text


def local_credentials(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Which credentials this machine has, masked: for `plan` and error messages."""
    environ = os.environ if environ is None else environ
    return {name: mask(environ.get(name)) for name in SECRET_VARIABLES}
