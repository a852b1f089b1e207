"""Secret values are never printed, logged, written to a manifest or put in an exception.

Settings hold only secret *names*; the values live in Modal or the caller's environment. `scrub`, applied to all that
reaches a terminal or a file, masks the values of the credential variables set here, whatever they look like, and any
text shaped like a credential (CREDENTIAL_SHAPES), wherever it came from: a token pasted into `--set`, an SDK error.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

# Environment variables whose values are credentials.
SECRET_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_KEY",
                    "MODAL_SECRET")
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words

# The credentials this project meets, by prefix; the body must be long and token-like, so "sk-learn" is left alone.
CREDENTIAL_SHAPES: dict[str, str] = {
    "hf_": "Hugging Face token",
    "api_org_": "Hugging Face organisation token",
    "ak-": "Modal token id",
    "as-": "Modal token secret",
    "wk-": "Modal proxy auth key",
    "ws-": "Modal proxy auth secret",
    "sk-": "OpenAI-style API key",
}
_CREDENTIAL = re.compile(
    r"(?<![A-Za-z0-9])(" + "|".join(re.escape(p) for p in CREDENTIAL_SHAPES)
    + r")(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{16,}"
)


def looks_like_credential(value: object) -> bool:
    """True when `value` contains something shaped like a token (see CREDENTIAL_SHAPES)."""
    return isinstance(value, str) and bool(_CREDENTIAL.search(value))


def credential_kind(value: str) -> str | None:
    match = _CREDENTIAL.search(value)
    return CREDENTIAL_SHAPES[match.group(1)] if match else None


def mask(value: str | None) -> str:
    """'hf_abcdef123' -> 'hf_…(masked)': a prefix that says what kind of token it is, nothing more."""
    if not value:
        return "not set"
    match = re.match(r"[A-Za-z]{2,3}[_-]", value)
    return f"{match.group(0) if match else ''}…(masked)"


def mask_credentials(text: str) -> str:
    """Every credential-shaped substring of `text`, masked to its prefix."""
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)}…(masked)", text)


MAX_SHOWN = 60  # characters of a value an error message repeats; the rest is counted, not printed


def shown(value: object) -> str:
    """A value for an error message: its repr (control characters escaped), masked when it looks like a
    credential, and cut to MAX_SHOWN characters with the length said when it is longer."""
    text = mask_credentials(repr(value)) if looks_like_credential(value) else repr(value)
    if len(text) > MAX_SHOWN:
        size = len(value) if isinstance(value, str | bytes | list | dict) else len(str(value))
        text = f"{text[:MAX_SHOWN]}… ({size} characters)" if isinstance(
            value, str | bytes | int) else f"{text[:MAX_SHOWN]}…"
    return text


def plain(text: str) -> str:
    """A name for a message (a variable, a setting, a file): as it is when short and printable, else `shown`."""
    return text if text.isprintable() and len(text) <= MAX_SHOWN and not looks_like_credential(text) else shown(text)


def scrub(text: str, environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    values = {v for v in (environ.get(name, "") for name in SECRET_VARIABLES) if len(v) >= MIN_SECRET_LENGTH}
    for value in sorted(values, key=len, reverse=True):  # longest first: a value inside another is masked whole
        text = text.replace(value, "****")
    return mask_credentials(text)


def local_credentials(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Which credentials this machine has, masked, for `plan` and error messages: a Modal token counts as set in the
    environment or in Modal's config file (`modal token new` writes ~/.modal.toml), as the Modal client reads it."""
    environ = os.environ if environ is None else environ
    found = {name: mask(environ.get(name)) for name in SECRET_VARIABLES}
    for name, key in (("MODAL_TOKEN_ID", "token_id"), ("MODAL_TOKEN_SECRET", "token_secret")):
        if not environ.get(name) and (value := _modal_config_value(key, environ)):
            found[name] = f"{mask(value)} (from the Modal config file)"
    return found


def _modal_config_value(key: str, environ) -> str | None:
    """The active profile's `key` in Modal's config file (MODAL_CONFIG_PATH), without importing modal."""
    path = Path(environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # Modal's own rule (modal/config.py): MODAL_PROFILE, else the profile marked active, else "default".
    active = next((n for n, p in profiles.items() if isinstance(p, dict) and p.get("active") is True), "default")
    profile = profiles.get(environ.get("MODAL_PROFILE") or active)
    return profile.get(key) if isinstance(profile, dict) else None
