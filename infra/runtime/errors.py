"""Errors meant for people: a `UserError` reaches the terminal as one line (no traceback unless `--debug`): what is
wrong, the value, what is allowed, and where it helps, what to run next."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, missing credentials, a refused action."""

    exit_code = 1


class ConfigError(UserError):
    """Settings or recipe values that cannot be deployed."""


class StageError(UserError):
    """A stage ran and failed (remote job error, smoke test failure...)."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage} failed: {message}")
        self.stage = stage


class Refused(UserError):
    """An action was refused before anything was changed (guards, locks, validation of a release)."""


class Aborted(UserError):
    """The user said no, or closed the prompt (Ctrl-D, Ctrl-C): nothing was done."""
