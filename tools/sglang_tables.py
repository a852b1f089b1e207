"""SGLang's command-line flags, read from a published wheel without importing SGLang.

`check_flags` (infra/control/sglang_flags.py) needs, for every SGLang version a recipe may
pin, each flag `python -m sglang.launch_server` accepts and the values it takes.
Importing SGLang to ask argparse would need torch, CUDA and a hundred packages;
the wheel's source is enough, so this module reads it with `ast`:

- up to 0.5.11, `ServerArgs.add_cli_args` calls `parser.add_argument(...)` once per
  flag, with `choices=` naming module constants, some imported from other modules of
  the wheel, some class attributes (`list(ReasoningParser.DetectorMap.keys())`);
- later releases declare most flags as annotated fields of namespace Structs
  (`name: A[T, Arg(...)]`, sglang/srt/arg_groups/fields/), registered by
  `add_cli_args_from_dataclass`, plus a few manual `add_argument` calls.

Both become one entry per long option (keys appear only where they apply):

    {"type": "int", "choices": [...], "default": 8, "nargs": "+", "required": true,
     "switch": true,                    # takes no value (store_true and the like)
     "dest": "tp_size",                 # only where it differs from the flag's own name
     "deprecated": "SGLang's help text", "replaced_by": ["--new-flag"],
     "ignored": true,                   # deprecated and SGLang drops it (a no-op)
     "refused": "SGLang's message",     # deprecated and SGLang stops the launch
     "choices_unresolved": "<expr>"}    # choices SGLang computes at run time
    {"alias_of": "--model-path"}        # a second spelling of another flag
    {"negates": "--foo", "switch": true}  # the --no-foo of argparse.BooleanOptionalAction

`type` is the name of the callable argparse converts the value with ("int",
"float", "str", "json.loads", "human_readable_int", ...). Choices are SGLang's
built-in ones; a plugin may add to them at run time (`add_attention_backend_choices`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from infra.runtime.errors import ConfigError, StageError
from infra.runtime.files import write_atomically
from infra.runtime.secrets import shown

SERVER_ARGS = "sglang.srt.server_args"
HTTP_SERVER = "sglang.srt.entrypoints.http_server"
COMPILE_DEEP_GEMM = "sglang.compile_deep_gemm"

_ZERO_ARG_ACTIONS = {"store_true", "store_false", "store_const", "append_const", "count", "help", "version"}
_ROUTES = {"get", "post", "put", "delete", "patch", "api_route", "add_api_route"}
# How SGLang's help texts mark a retired flag: "[Deprecated] Use --x instead.", "Deprecated alias for --x.",
# "(Deprecated, use --x) ...", "Removed. Use --x ...", and in 0.5.10 "Note: --self is deprecated now."
_RETIRED_HELP = re.compile(r"^\W*(deprecated|removed)\b", re.IGNORECASE)
_FLAG_TOKEN = re.compile(r"--[a-z0-9][a-z0-9-]*(?:\{[a-z0-9,_-]+\}[a-z0-9-]*)?")
_ABSENT = object()  # a keyword argparse was not given (None is a value: nargs=None means one value)


class Unresolved(Exception):
    """An expression whose value is only known when SGLang runs."""


# ---------------------------------------------------------------------------
# The wheel's modules, and an evaluator for the constant expressions in them
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Import:
    module: str
    attr: str | None  # None: the module itself


@dataclass
class _Module:
    name: str
    tree: ast.Module
    names: dict = field(default_factory=dict)  # top-level name -> expression, definition or _Import
    defs: dict = field(default_factory=dict)  # top-level classes and functions, even when rebound later

    def __post_init__(self):
        for node in self.tree.body:
            _bind(node, self.names, self.name)
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                self.defs[node.name] = node


@dataclass(frozen=True)
class _Ref:
    """A module, class or function of the wheel, as an expression's value."""

    module: _Module
    node: ast.ClassDef | ast.FunctionDef | None = None  # None: the module itself


def _bind(node: ast.stmt, names: dict, module_name: str) -> None:
    """Record what one statement binds: assignments, definitions, imports."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                names[target.id] = node.value
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        names[node.target.id] = node.value
    elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
        names[node.name] = node
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # from .x import y
            base = ".".join(module_name.split(".")[: -node.level] + ([base] if base else []))
        for alias in node.names:
            names[alias.asname or alias.name] = _Import(base, alias.name)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name if alias.asname else alias.name.split(".")[0]
            names[alias.asname or top] = _Import(top, None)


class Wheel:
    """The Python modules of one SGLang wheel, parsed on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            head = self.path.read_bytes()[:64]
            looks = "an HTML page" if head.lstrip()[:1] == b"<" else "not a zip archive"
            raise ConfigError(f"{self.path}: not a wheel ({looks}: {shown(head.decode(errors='replace'))}); allowed: "
                              "an sglang-<version>-*.whl as pip downloads it") from None
        self._files = set(self._zip.namelist())
        self._modules: dict[str, _Module | None] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()

    def module(self, name: str) -> _Module | None:
        if name not in self._modules:
            base = name.replace(".", "/")
            path = next((p for p in (f"{base}.py", f"{base}/__init__.py") if p in self._files), None)
            self._modules[name] = path and _Module(name, ast.parse(self._zip.read(path), filename=path))
        return self._modules[name]

    def require(self, name: str) -> _Module:
        module = self.module(name)
        if module is None:
            raise ValueError(f"{self.path.name}: the wheel has no module {name}")
        return module

    def lookup(self, module: _Module, name: str, seen: frozenset = frozenset()):
        """A module-level name's value, following imports into the wheel's other modules."""
        if (module.name, name) in seen:
            raise Unresolved(name)
        bound = module.names.get(name)
        if isinstance(bound, (ast.ClassDef, ast.FunctionDef)):
            return _Ref(module, bound)
        if isinstance(bound, _Import):
            return self.follow(bound, seen | {(module.name, name)})
        if bound is None:
            raise Unresolved(name)
        try:
            return self.eval(bound, _Scope(self, module))
        except Unresolved:
            if name in module.defs:  # 0.5.12+: `ServerArgs = msgspec.defstruct(..., namespace=vars(ServerArgs))`
                return _Ref(module, module.defs[name])
            raise

    def follow(self, imp: _Import, seen: frozenset = frozenset()):
        target = self.module(imp.module)
        if imp.attr is None:
            if target is None:
                raise Unresolved(imp.module)
            return _Ref(target)
        if target is not None and imp.attr in target.names:
            return self.lookup(target, imp.attr, seen)
        submodule = self.module(f"{imp.module}.{imp.attr}")
        if submodule is None:
            raise Unresolved(f"{imp.module}.{imp.attr}")
        return _Ref(submodule)

    def attribute(self, owner, attr: str):
        if isinstance(owner, _Ref) and owner.node is None:
            return self.lookup(owner.module, attr)
        if isinstance(owner, _Ref) and isinstance(owner.node, ast.ClassDef):
            scope = _Scope(self, owner.module, _body_names(owner.node, owner.module))
            if attr in scope.names:
                return scope.value(attr)
            for base in owner.node.bases:  # inherited class attributes
                try:
                    return self.attribute(self.eval(base, _Scope(self, owner.module)), attr)
                except Unresolved:
                    continue
        raise Unresolved(attr)

    def eval(self, node: ast.AST, scope: _Scope):
        return _Evaluator(self, scope).visit(node)


def _body_names(node: ast.ClassDef | ast.FunctionDef, module: _Module) -> dict:
    names: dict = {}
    for stmt in node.body if isinstance(node, ast.ClassDef) else ast.walk(node):
        if isinstance(stmt, ast.stmt) and stmt is not node:
            _bind(stmt, names, module.name)
    return names


@dataclass
class _Scope:
    """Names an expression sees: its function's or class's own, then its module's."""

    wheel: Wheel
    module: _Module
    names: dict = field(default_factory=dict)

    def value(self, name: str):
        bound = self.names.get(name)
        if bound is None:
            return self.wheel.lookup(self.module, name)
        if isinstance(bound, _Import):
            return self.wheel.follow(bound)
        if isinstance(bound, (ast.ClassDef, ast.FunctionDef)):
            return _Ref(self.module, bound)
        outer = _Scope(self.wheel, self.module, {k: v for k, v in self.names.items() if k != name})
        return self.wheel.eval(bound, outer)


class _Evaluator(ast.NodeVisitor):
    """Constants, collections, names, class attributes, `+`, `list(...)`/`sorted(...)`/`.keys()`,
    and calls of the wheel's own argument-less functions that end in `return <expression>`.
    Anything else is Unresolved."""

    def __init__(self, wheel: Wheel, scope: _Scope):
        self.wheel, self.scope = wheel, scope

    def generic_visit(self, node):
        raise Unresolved(ast.unparse(node))

    def visit_Constant(self, node):
        return node.value

    def visit_List(self, node):
        out = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                out += _items(self.visit(elt.value))
            else:
                out.append(self.visit(elt))
        return out

    visit_Tuple = visit_List

    def visit_Set(self, node):
        return set(self.visit_List(node))

    def visit_Dict(self, node):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                out.update(self.visit(value))
                continue
            try:
                out[self.visit(key)] = self.visit(value)
            except Unresolved:
                out[self.visit(key)] = None  # choices only ever need the keys (detector classes as values)
        return out

    def visit_Name(self, node):
        return self.scope.value(node.id)

    def visit_Attribute(self, node):
        return self.wheel.attribute(self.visit(node.value), node.attr)

    def visit_BinOp(self, node):
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(node.op, ast.Add) and isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            return list(left) + list(right)
        if isinstance(node.op, ast.BitOr) and isinstance(left, set) and isinstance(right, set):
            return left | right
        raise Unresolved(ast.unparse(node))

    def visit_UnaryOp(self, node):
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.USub) and isinstance(operand, (int, float)):
            return -operand
        raise Unresolved(ast.unparse(node))

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("keys", "copy") and not node.args:
            owner = self.visit(func.value)
            if isinstance(owner, (dict, list, set)):
                return list(owner) if func.attr == "keys" else owner
        elif (isinstance(func, ast.Name) and func.id in ("list", "tuple", "set", "frozenset", "sorted")
              and len(node.args) == 1 and func.id not in self.scope.names and func.id not in self.scope.module.names):
            items = _items(self.visit(node.args[0]))
            return sorted(items) if func.id == "sorted" else set(items) if "set" in func.id else items
        else:
            target = self.visit(func)
            if isinstance(target, _Ref) and isinstance(target.node, ast.FunctionDef) and not node.args:
                return _returned(self.wheel, target)
        raise Unresolved(ast.unparse(node))


def _items(value) -> list:
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise Unresolved(repr(value))


def _returned(wheel: Wheel, ref: _Ref):
    """What an argument-less function returns, read from its last statement: SGLang's choice
    helpers end in `return list(NAMES)`; earlier returns inside `if`s serve loaded plugins."""
    last = ref.node.body[-1]
    if not isinstance(last, ast.Return) or last.value is None:
        raise Unresolved(ref.node.name)
    return wheel.eval(last.value, _Scope(wheel, ref.module, _body_names(ref.node, ref.module)))


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise Unresolved(repr(value))


def _text(node: ast.AST | None) -> str:
    """A help text's literal parts (an f-string keeps its constant pieces)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return " ".join(node.value.split())
    if isinstance(node, ast.JoinedStr):
        return " ".join("".join(v.value for v in node.values if isinstance(v, ast.Constant)).split())
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return f"{_text(node.left)} {_text(node.right)}".strip()
    return ""


# ---------------------------------------------------------------------------
# Flag declarations -> table entries
# ---------------------------------------------------------------------------


def _dest_from(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _last(node: ast.AST) -> str:
    return ast.unparse(node).split(".")[-1]


@dataclass
class _Flag:
    """One registration, in argparse's terms."""

    names: list[str]
    help: str = ""
    action: str | None = None
    zero_arg_action: bool = False
    nargs: object = _ABSENT
    type: str | None = None
    choices: object = None  # a list, or the source of an expression only SGLang can evaluate
    default: object = _ABSENT
    dest: str | None = None
    required: bool = False
    new_flag: str | None = None
    error_message: str | None = None

    def entry(self) -> dict:
        canonical = self.names[0]
        switch = self.zero_arg_action and self.nargs in (_ABSENT, 0)
        entry: dict = {"switch": True} if switch else {}
        if not switch and self.nargs not in (_ABSENT, None):
            entry["nargs"] = self.nargs
        if self.type and not switch:
            entry["type"] = self.type
        if isinstance(self.choices, list):
            entry["choices"] = self.choices
        elif isinstance(self.choices, str):
            entry["choices_unresolved"] = self.choices
        if self.default not in (_ABSENT, None) and not (switch and self.default is False):
            entry["default"] = self.default
        if self.dest and self.dest != _dest_from(canonical):
            entry["dest"] = self.dest
        if self.required:
            entry["required"] = True
        said = bool(_RETIRED_HELP.search(self.help)) or f"{canonical} is deprecated" in self.help
        if said or (self.action or "").startswith("Deprecated"):
            entry["deprecated"] = self.help if said else f"deprecated (SGLang registers it with {self.action})"
            if self.error_message:
                entry["refused"] = " ".join(str(self.error_message).split())
            elif self.action == "DeprecatedAction":
                entry["ignored"] = True  # SGLang warns and drops it
            if self.new_flag:
                entry["replaced_by"] = [str(self.new_flag)]
        return entry


class _Reader:
    """Collects the flags one module registers, in either declaration style."""

    def __init__(self, wheel: Wheel):
        self.wheel = wheel
        self.flags: list[_Flag] = []
        self.field_defaults: dict[str, object] = {}

    def _try(self, node, scope, default=None):
        if node is None:
            return default
        try:
            return self.wheel.eval(node, scope)
        except Unresolved:
            return default

    def _choices(self, node: ast.AST, scope: _Scope):
        try:
            return _jsonable(_items(self.wheel.eval(node, scope)))
        except Unresolved:
            return ast.unparse(node)

    def _action(self, node: ast.AST, scope: _Scope) -> tuple[str, bool]:
        """The action's name, and whether it takes no value: argparse's own zero-argument actions,
        or an Action class of the wheel whose __init__ defaults nargs to 0 (SGLang's Deprecated*Action)."""
        if isinstance(node, ast.Constant):
            return node.value, node.value in _ZERO_ARG_ACTIONS
        name = _last(node)
        if name == "BooleanOptionalAction":
            return name, True
        ref = self._try(node, scope)
        init = next((s for s in ref.node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None) \
            if isinstance(ref, _Ref) and isinstance(ref.node, ast.ClassDef) else None
        if init is None:
            return name, False
        args = init.args.posonlyargs + init.args.args
        defaults = dict(zip([a.arg for a in args[len(args) - len(init.args.defaults):]], init.args.defaults))
        defaults |= {a.arg: d for a, d in zip(init.args.kwonlyargs, init.args.kw_defaults) if d is not None}
        nargs = defaults.get("nargs")
        return name, isinstance(nargs, ast.Constant) and nargs.value == 0

    # -- style 1: parser.add_argument("--name", ..., type=, choices=, action=, default=) --

    def add_argument(self, call: ast.Call, scope: _Scope) -> None:
        names = [n for n in (self._try(a, scope) for a in call.args) if isinstance(n, str) and n.startswith("--")]
        if not names:
            return
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        flag = _Flag(names=names, help=_text(kw.get("help")))
        if "action" in kw:
            flag.action, flag.zero_arg_action = self._action(kw["action"], scope)
        if "nargs" in kw:
            flag.nargs = self._try(kw["nargs"], scope)
        for key in ("dest", "required", "new_flag", "error_message"):
            setattr(flag, key, self._try(kw.get(key), scope, getattr(flag, key)))
        if "type" in kw:
            flag.type = ast.unparse(kw["type"])
        if "choices" in kw:
            flag.choices = self._choices(kw["choices"], scope)
        if "default" in kw:
            flag.default = self._default(kw["default"], scope)
        self.flags.append(flag)

    def _default(self, node: ast.AST, scope: _Scope):
        if isinstance(node, ast.Call) and _last(node.func) == "_declared_default" and node.args:
            # 0.5.12+: default=_declared_default("field"), the namespace field's own default
            return self.field_defaults.get(self._try(node.args[0], scope), _ABSENT)
        try:
            return _jsonable(self.wheel.eval(node, scope))
        except Unresolved:
            return _ABSENT

    # -- style 2: namespace fields `name: A[T, "help"]` or `name: A[T, Arg(...)]` --

    def namespaces(self, ref: _Ref) -> list[tuple[_Module, ast.AnnAssign]]:
        """The annotated fields of `add_cli_args_from_dataclass(parser, ServerArgs)`: ServerArgs's
        own, and those of the namespace classes its module passes to `collect_input_fields`."""
        classes = [ref]
        for stmt in ref.module.tree.body:
            call = getattr(stmt, "value", None)
            if isinstance(call, ast.Call) and _last(call.func) == "collect_input_fields" and call.args:
                classes += [c for c in self.wheel.eval(call.args[0], _Scope(self.wheel, ref.module))
                            if isinstance(c, _Ref)]
        return [pair for cls in classes for pair in self._fields(cls)]

    def _fields(self, ref: _Ref):
        if not isinstance(ref.node, ast.ClassDef):
            return
        for base in ref.node.bases:
            parent = self._try(base, _Scope(self.wheel, ref.module))
            if isinstance(parent, _Ref):
                yield from self._fields(parent)
        for stmt in ref.node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                yield ref.module, stmt

    def dataclass(self, ref: _Ref) -> None:
        fields = self.namespaces(ref)
        for module, stmt in fields:
            if stmt.value is not None:
                try:
                    self.field_defaults[
                        stmt.target.id] = _jsonable(self.wheel.eval(stmt.value, _Scope(self.wheel, module)))
                except Unresolved:
                    pass
        for module, stmt in fields:
            self._field(module, stmt)

    def _field(self, module: _Module, stmt: ast.AnnAssign) -> None:
        """One field, registered as sglang.srt.arg_groups.arg_utils.add_cli_args_from_dataclass does."""
        scope = _Scope(self.wheel, module)
        ann = stmt.annotation
        if not (isinstance(ann, ast.Subscript) and _last(ann.value) in ("A", "Annotated")):
            return
        parts = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
        meta = None
        for part in parts[1:]:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                meta = {"help": part}
            elif isinstance(part, ast.Call) and _last(part.func) == "Arg":
                meta = {k.arg: k.value for k in part.keywords if k.arg}
            if meta is not None:
                break
        if meta is None or self._try(meta.get("no_cli"), scope, False):
            return
        name = stmt.target.id
        cli_name = self._try(meta.get("cli_name"), scope) or "--" + name.replace("_", "-")
        flag = _Flag(names=[cli_name, *(self._try(meta.get("aliases"), scope) or [])], help=_text(meta.get("help")),
                     dest=name, default=self.field_defaults.get(name, _ABSENT))
        if "action" in meta:
            flag.action, flag.zero_arg_action = self._action(meta["action"], scope)
            for key, value in (self._try(meta.get("action_kwargs"), scope) or {}).items():
                if key in ("nargs", "new_flag", "error_message", "dest"):
                    setattr(flag, key, value)
            self.flags.append(flag)
            return
        inner = _unwrap_optional(parts[0])
        parser = ast.unparse(meta["type_parser"]) if "type_parser" in meta else None
        choices = self._choices(meta["choices"], scope) if "choices" in meta else None
        flag.nargs = self._try(meta.get("nargs"), scope) or _ABSENT
        if _subscript_of(inner, "Literal") is not None:
            literal = [self.wheel.eval(e, scope) for e in _elts(inner.slice)]
            flag.choices = choices if choices is not None else _jsonable(literal)
            flag.type = parser or _scalar(type(literal[0]).__name__ if literal else "str")
        elif _subscript_of(inner, "List", "list") is not None and parser is None:
            flag.type, flag.choices = _scalar(ast.unparse(inner.slice)), choices
            flag.nargs = "+" if flag.nargs is _ABSENT else flag.nargs
        elif ast.unparse(inner) == "bool":
            flag.action, flag.zero_arg_action = "store_true", True
        else:
            flag.type, flag.choices = parser or _scalar(ast.unparse(inner)), choices
        required = self._try(meta.get("required"), scope)
        flag.required = required is True or (required is None and stmt.value is None and flag.action is None)
        self.flags.append(flag)

    def entries(self) -> dict[str, dict]:
        table: dict[str, dict] = {}
        for flag in self.flags:
            canonical = flag.names[0]
            if canonical in table:
                continue  # argparse refuses a second registration; SGLang never ships one
            table[canonical] = flag.entry()
            for alias in flag.names[1:]:
                table.setdefault(alias, {"alias_of": canonical})
            if flag.action == "BooleanOptionalAction":
                table.setdefault("--no-" + canonical[2:], {"negates": canonical, "switch": True})
        _link_replacements(table)
        return dict(sorted(table.items()))


def _elts(node: ast.AST) -> list:
    return node.elts if isinstance(node, ast.Tuple) else [node]


def _subscript_of(node: ast.AST, *names: str):
    return node if isinstance(node, ast.Subscript) and _last(node.value) in names else None


def _unwrap_optional(node: ast.AST) -> ast.AST:
    """X from Optional[X], Union[X, None] and X | None."""
    if _subscript_of(node, "Optional"):
        return node.slice
    members = None
    if _subscript_of(node, "Union"):
        members = _elts(node.slice)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        members = [node.left, node.right]
    if members:
        rest = [m for m in members if ast.unparse(m) != "None"]
        if len(rest) == 1:
            return rest[0]
    return node


def _scalar(name: str) -> str:
    """arg_utils._infer_type_func: int and float convert, everything else stays a string."""
    return name if name in ("int", "float") else "str"


def expand_flags(text: str) -> list[str]:
    """The flags a replacement text names: "--cuda-graph-backend-{decode,prefill}=disabled"
    -> ["--cuda-graph-backend-decode", "--cuda-graph-backend-prefill"]."""
    out = []
    for token in _FLAG_TOKEN.findall(text):
        braces = re.search(r"\{([^}]*)\}", token)
        if braces:
            out += [token[: braces.start()] + part + token[braces.end():] for part in braces.group(1).split(",")]
        else:
            out.append(token)
    return list(dict.fromkeys(out))


def _link_replacements(table: dict[str, dict]) -> None:
    """Name the live flags that replace a deprecated one, as SGLang declares them: its `new_flag=`,
    else the first flag its help text names, else another flag storing to the same dest."""
    by_dest: dict[str, list[str]] = {}
    for name, entry in table.items():
        if "alias_of" not in entry and "negates" not in entry:
            by_dest.setdefault(entry.get("dest", _dest_from(name)), []).append(name)

    def live(flags):
        return [f for f in flags if f in table and "deprecated" not in table[f]]

    for name, entry in table.items():
        if "deprecated" not in entry:
            continue
        declared = live(expand_flags(" ".join(entry.pop("replaced_by", []))))
        mentioned = next((live(expand_flags(t)) for t in _FLAG_TOKEN.findall(entry["deprecated"])
                          if t != name and live(expand_flags(t))), [])
        same_dest = [f for f in live(by_dest.get(entry.get("dest", _dest_from(name)), [])) if f != name]
        if replaced := declared or mentioned or same_dest:
            entry["replaced_by"] = replaced


def _read_flags(wheel: Wheel, module_name: str, function: str | None) -> dict[str, dict]:
    """The flags registered in `function` (by name) of a module, or anywhere in the module."""
    module = wheel.require(module_name)
    roots: list[ast.AST] = [module.tree]
    if function:
        roots = [n for n in ast.walk(module.tree) if isinstance(n, ast.FunctionDef) and n.name == function]
        if not roots:
            raise ValueError(f"{wheel.path.name}: {module_name} defines no {function}()")
    reader = _Reader(wheel)
    for root in roots:
        scope = _Scope(wheel, module, _body_names(root, module) if isinstance(root, ast.FunctionDef) else {})
        for call in sorted((n for n in ast.walk(root) if isinstance(n, ast.Call)),
                           key=lambda n: (n.lineno, n.col_offset)):
            if _last(call.func) == "add_cli_args_from_dataclass" and len(call.args) >= 2:
                reader.dataclass(wheel.eval(call.args[1], scope))
            elif isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument":
                reader.add_argument(call, scope)
    return reader.entries()


def _endpoints(wheel: Wheel) -> list[str]:
    """Paths the HTTP server routes (`@app.get("/x")`, `@app.post`, `@app.api_route`,
    `app.add_api_route`); a path SGLang reads from the environment is left out."""
    paths = set()
    for node in ast.walk(wheel.require(HTTP_SERVER).tree):
        if isinstance(node, ast.Call) and isinstance(node.func,
                                                     ast.Attribute) and node.func.attr in _ROUTES and node.args:
            path = node.args[0]
            if isinstance(path, ast.Constant) and isinstance(path.value, str) and path.value.startswith("/"):
                paths.add(path.value)
    return sorted(paths)


def table_from_wheel(path: Path | str) -> dict:
    """One version's entry of infra/control/sglang_versions.json, read from an SGLang wheel."""
    path = Path(path)
    with Wheel(path) as wheel:
        flags = _read_flags(wheel, SERVER_ARGS, "add_cli_args")
        extra = _read_flags(wheel, COMPILE_DEEP_GEMM, None) if wheel.module(COMPILE_DEEP_GEMM) else {}
        endpoints = _endpoints(wheel)
    return {
        "wheel": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "flags": flags,
        "endpoints": endpoints,
        "compile_deep_gemm_extra_flags": {k: v for k, v in extra.items() if k not in flags},
    }


def version_of_wheel(path: Path | str) -> str:
    """sglang-0.5.11-cp311-cp311-manylinux_2_34_x86_64.whl -> 0.5.11"""
    parts = PurePosixPath(str(path)).name.split("-")
    if len(parts) < 3 or parts[0] != "sglang" or not parts[-1].endswith(".whl"):
        raise ConfigError(f"{shown(str(path))}: not an SGLang wheel; allowed: sglang-<version>-...whl")
    return check_version(parts[1])


# ---------------------------------------------------------------------------
# The committed file
# ---------------------------------------------------------------------------

SOURCE_NOTE = (
    "Generated by `invoke sglang-flags --version X` (tools/sglang_tables.py) from the published wheel's "
    "sglang/srt/server_args.py and its namespace modules, read statically: every long option "
    "`python -m sglang.launch_server` accepts, with its type, choices, default and deprecation; the HTTP "
    "endpoints of sglang/srt/entrypoints/http_server.py; and the extra flags of sglang.compile_deep_gemm. "
    "Do not edit by hand."
)


def render(doc: dict) -> str:
    """The file's text: sorted keys, one line per flag and per endpoint, so a new SGLang
    version or a changed flag shows as a few changed lines in a diff."""

    def block(opening: str, closing: str, lines: list[str], indent: str) -> str:
        inner = ",\n".join(indent + line for line in lines)
        return f"{opening}\n{inner}\n{indent[:-1]}{closing}" if lines else opening + closing

    def version(table: dict) -> str:
        parts = []
        for key, value in sorted(table.items()):
            if isinstance(value, dict):
                rows = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(value.items())]
                parts.append(f"{json.dumps(key)}: " + block("{", "}", rows, "    "))
            elif isinstance(value, list):
                parts.append(f"{json.dumps(key)}: " + block("[", "]", [json.dumps(v) for v in value], "    "))
            else:
                parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
        return block("{", "}", parts, "   ")

    versions = [f"{json.dumps(v)}: {version(t)}" for v, t in sorted(doc["versions"].items())]
    top = [f'"_source": {json.dumps(doc["_source"])}', '"versions": ' + block("{", "}", versions, "  ")]
    return block("{", "}", top, " ") + "\n"


def write_version(path: Path, version: str, table: dict) -> dict:
    """Put one version's table into the committed file, leaving the other versions as they are."""
    doc = json.loads(path.read_text()) if path.exists() else {"versions": {}}
    doc["_source"] = SOURCE_NOTE
    doc["versions"][version] = table
    text = render(doc)
    assert json.loads(text) == doc  # the hand-rolled layout is still the same JSON
    write_atomically(path, text)
    return doc


# SGLang publishes Linux x86-64 CPython wheels since 0.5.11 (pure-Python ones before); every wheel of a
# release carries the same Python source, so elsewhere pip is asked for this one.
_FALLBACK_TAGS = ["--platform", "manylinux_2_34_x86_64", "--python-version", "3.12", "--implementation", "cp"]


def download_wheel(version: str, into: Path) -> Path:
    """`pip download --no-deps` of sglang==version: the wheel alone, nothing installed."""
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            f"sglang=={version}", "--dest", str(into)]
    for extra in ([], _FALLBACK_TAGS):
        result = subprocess.run(base + extra, capture_output=True, text=True)
        wheels = sorted(into.glob(f"sglang-{version}-*.whl"))
        if result.returncode == 0 and wheels:
            return wheels[0]
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise StageError("sglang-flags", f"pip download sglang=={version}: {last}")


VERSION_RE = re.compile(r"\d+(\.\d+)+(\.post\d+)?")  # an SGLang release as PyPI spells it: 0.5.11, 0.5.6.post2


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise ConfigError(f"--version {shown(version)}: not an SGLang release; allowed: a release number such as "
                          "0.5.11 or 0.5.6.post2 (no wildcards or ranges: the table is for exactly one release)")
    return version


def update(path: Path, version: str | None = None, wheel: Path | str | None = None, *,
           write: bool = True) -> tuple[str, dict]:
    """Regenerate one version's table in `path` from `wheel`, or from sglang==version downloaded from PyPI
    (`write=False`: read it, change nothing)."""
    if wheel is None and not version:
        raise ConfigError("sglang-flags: give --version X (downloaded from PyPI), --wheel PATH, or --env ENV")
    if version:
        check_version(version)
    if wheel is not None:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise ConfigError(f"--wheel {shown(str(wheel))}: no such file; allowed: a downloaded "
                              "sglang-<version>-*.whl")
        found = version_of_wheel(wheel)
        if version and version != found:
            raise ConfigError(f"--version {version} does not match --wheel {wheel.name} (version {found})")
        table = table_from_wheel(wheel)
        version = found
    else:
        with tempfile.TemporaryDirectory(prefix="sglang-wheel-") as tmp:
            table = table_from_wheel(download_wheel(version, Path(tmp)))
    if write:
        write_version(path, version, table)
    return version, table
