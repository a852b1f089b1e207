"""How tasks.py's functions become commands: typed flags, one-line errors, quiet pipes.

pyinvoke infers a flag's type from its default and shows only STRING and INT in `--help`; a number given as junk ends in
a traceback. `command` instead reads each task's annotations: `int` and `float` flags are parsed as such before the task
runs (junk is one line: the flag, the value, what is allowed), every valued flag shows a placeholder (`--set=KEY=VALUE`,
`--min=INT`, `--duration=SECONDS`), and `list[str]` flags repeat. Errors meant for people (`UserError`) are one line
with secrets scrubbed, a traceback only with --debug; Ctrl-C or Ctrl-D at a prompt is "aborted"
(infra/runtime/errors.Aborted); output into a closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import ast
import difflib
import functools
import os
import sys
import traceback
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Exit, Task, task
from invoke.exceptions import ParseError
from invoke.parser import Argument, ParserContext
from invoke.parser.parser import ParseMachine

from infra.runtime.errors import UserError
from infra.runtime.secrets import scrub, shown

# Placeholders by flag; a flag not named here shows its type (INT, NUMBER, STRING).
PLACEHOLDERS = {
    "env": "ENV", "from_": "ENV", "to": "ENV", "recipe": "RECIPE", "set_": "KEY=VALUE", "compare": "FILE|RELEASE",
    "url": "URL", "output": "FILE", "plot": "FILE.png", "concurrency": "N[,N...]", "label": "TEXT", "reason": "TEXT",
    "write_requests": "FILE.jsonl", "shape": "tiny|real|model",
    "model": "NAME", "temperature": "NUMBER|server", "version": "VERSION", "wheel": "FILE",
    "duration": "SECONDS", "timeout": "SECONDS", "wait": "SECONDS",
}
REPO = Path(__file__).resolve().parents[1]  # the checkout these tasks come from, where a user can cd back to
SIGPIPE_EXIT = 141  # what a shell reports for a writer whose reader went away (128 + SIGPIPE), as git does


class Flag(Argument):
    """An argument parsed to its annotated type at parse time, with a placeholder for --help."""

    def __init__(self, *, parse: Callable[[str], Any] | None, placeholder: str, **opts: Any):
        super().__init__(**opts)
        self.parse = parse
        self.placeholder = placeholder

    def set_value(self, value: Any, cast: bool = True) -> None:
        if cast and self.parse is not None and isinstance(value, str):
            try:
                value = self.parse(value)
            except ValueError:
                raise ParseError(f"error: --{self.name.replace('_', '-').rstrip('-')} {shown(value)}: expected "
                                 f"{'a whole number' if self.parse is int else 'a number'}") from None
            self.raw_value, self._value = value, value
            return
        super().set_value(value, cast)


class TypedTask(Task):
    """A pyinvoke task whose flags follow the function's annotations (see the module docstring)."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        hints = typing.get_type_hints(self.body)
        out = []
        for arg in super().get_arguments(ignore_unknown_help):
            kind = _plain(hints.get(arg.attr_name or arg.name))
            if kind is bool or kind is None:
                out.append(arg)
                continue
            label = PLACEHOLDERS.get(arg.attr_name or arg.name) or {int: "INT", float: "NUMBER"}.get(kind, "STRING")
            out.append(Flag(parse={int: int, float: float}.get(kind), placeholder=label, names=arg.names,
                            kind=list if kind is list else int if kind is int else str, default=arg.default,
                            help=arg.help, attr_name=arg.attr_name))
        return out


def _plain(hint: Any) -> type | None:
    """int | None -> int, list[str] -> list; None for a hint this module leaves to pyinvoke."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    origin = typing.get_origin(hint) or hint
    return origin if origin in (bool, int, float, str, list) else None


def _help_for(self: ParserContext, flag: str) -> tuple[str, str]:
    """pyinvoke's help line for a flag, with a Flag's own placeholder in place of STRING/INT or nothing."""
    names, text = _pyinvoke_help_for(self, flag)
    arg = self.flags[flag]
    if isinstance(arg, Flag):
        names = ", ".join(f"{name}={arg.placeholder}" for name in sorted(self.names_for(flag), key=len))
    return names, text


# No public way to show a placeholder: invoke's Program builds plain ParserContexts (Collection.to_contexts, even from
# a module's own `ns`) whose help_for hard-codes STRING/INT, so it is wrapped here, once; when invoke changes,
# tests/test_cli.py::test_help_shows_types_and_placeholders fails.
_pyinvoke_help_for = ParserContext.help_for
ParserContext.help_for = _help_for  # type: ignore[method-assign]

# The grammar's flags a task may lack, and why it lacks them: said instead of pyinvoke's "No idea what ... is!".
WHY_NOT = {
    "--dry-run": "{task} changes nothing, so there is nothing to dry-run",
    "--yes": "{task} asks no question",
    "--force": "{task} has no check to override",
    "--env": "{task} names its environments with --from and --to",
}


def unknown_token(context: ParserContext | None, token: str, tasks: list[str]) -> str:
    """pyinvoke's "No idea what 'X' is!" as one line for people: the task, the token, why or a close match, and what
    is allowed (a task's flags, or the tasks)."""
    if context is None or not context.name:
        close = difflib.get_close_matches(token, tasks, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"error: no task named {shown(token)}{hint}; `invoke --list` shows them: {', '.join(sorted(tasks))}"
    flags = sorted(name for name in context.flags if name.startswith("--") and name != "--debug") + ["--debug"]
    task = context.name
    if not token.startswith("-"):
        return (f"error: invoke {task}: unexpected {shown(token)}: values follow a flag, e.g. --env prod; "
                f"allowed: {', '.join(flags)}")
    name = token.split("=", 1)[0]
    if name in WHY_NOT:
        hint = f" ({WHY_NOT[name].format(task=task)})"
    else:
        close = difflib.get_close_matches(name, flags, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
    return f"error: invoke {task}: no flag {shown(name)}{hint}; allowed: {', '.join(flags)}"


def _error(self: ParseMachine, msg: str) -> None:
    if msg.startswith("No idea what ") and msg.endswith(" is!"):
        token = ast.literal_eval(msg.removeprefix("No idea what ").removesuffix(" is!"))
        msg = unknown_token(self.context, token, list(self.contexts))
    _pyinvoke_error(self, msg)


# No public way to reword a parse error: invoke's Program prints the parser's ParseError itself, before any task
# runs; when invoke changes, tests/test_guards.py::test_a_flag_a_task_lacks_is_one_line_saying_why fails.
_pyinvoke_error = ParseMachine.error
ParseMachine.error = _error  # type: ignore[method-assign]


def command(**kwargs: Any) -> Callable[[Callable], Task]:
    """@command(help=...): @task for this project: typed flags, long names only, --set repeatable, one-line errors."""
    return lambda fn: task(klass=TypedTask, auto_shortflags=False, iterable=["set_", "compare"], **kwargs)(_errors(fn))


def _errors(fn):
    """One-line errors for people, tracebacks only with --debug; secrets scrubbed from both; closed pipes quiet."""

    @functools.wraps(fn)
    def wrapper(c, *args, debug: bool = False, **kwargs):
        try:
            os.getcwd()
        except FileNotFoundError:  # relative paths (--output, --compare, --wheel) would mean nothing, and writes fail
            raise Exit(f"error: the current directory no longer exists (deleted, or replaced by a new one of the same "
                       f"name); allowed: a directory that exists: `cd {REPO}` and run it again", code=1) from None
        try:
            result = fn(c, *args, debug=debug, **kwargs)
            sys.stdout.flush()  # inside the try: a reader that went away is noticed here, not at exit
            return result
        except Exit:
            raise
        except BrokenPipeError:
            # nothing more to write, no complaint at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=SIGPIPE_EXIT) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except Exception as err:
            if debug:
                print(scrub(traceback.format_exc()), file=sys.stderr, end="")
            if isinstance(err, UserError):
                raise Exit(scrub(f"error: {err}"), code=err.exit_code) from None
            hint = "" if debug else " (run with --debug for the traceback)"
            raise Exit(scrub(f"error: {type(err).__name__}: {err}{hint}"), code=1) from None

    return wrapper
