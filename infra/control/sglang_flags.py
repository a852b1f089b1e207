"""SGLang's flags per version, and the check that a recipe's command lines use only what its version accepts.

`check_flags` holds both command lines (infra/runtime/sglang_args.py) against the table of the recipe's SGLang
version in sglang_versions.json (read from the published wheel by `invoke sglang-flags`): names, and values against
SGLang's own choices and types, so a typo fails at `plan` rather than 18 s into a cold start on a GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError
from infra.runtime.sglang_args import compile_command, flag_values, launch_command

TABLE_PATH = Path(__file__).parent / "sglang_versions.json"  # written by `invoke sglang-flags`
_VERSION = re.compile(r"(\d+(?:\.\d+)*)(?:\.post(\d+))?")


@cache
def _versions() -> dict:
    return json.loads(TABLE_PATH.read_text())["versions"]


def reload() -> None:
    """Read sglang_versions.json again: `invoke upgrade` has just added a version's table to it."""
    _versions.cache_clear()


def version_key(version: str) -> tuple:
    """Release order of SGLang's version strings: 0.5.6.post2 < 0.5.10 < 0.5.10.post1 < 0.5.11."""
    match = _VERSION.fullmatch(version)
    if not match:
        return ((), 0, 0)
    release, post = match.groups()
    return (tuple(int(n) for n in release.split(".")), 1 if post else 0, int(post or 0))


def supported_versions() -> list[str]:
    return sorted(_versions(), key=version_key)


def table(version: str) -> dict:
    """SGLang `version`'s committed table: its flags, endpoints and wheel."""
    try:
        return _versions()[version]
    except KeyError:
        raise ConfigError(f"sglang_version = {version!r} has no flag table; known versions: "
                          f"{', '.join(supported_versions())} (add it with `invoke sglang-flags --version {version}`)"
                          ) from None


def flags(version: str) -> dict:
    """What SGLang `version` declares of each flag, by name (an alias says so with `alias_of`)."""
    return table(version)["flags"]


def known_flags(version: str) -> frozenset[str]:
    return frozenset(flags(version))


def flag_spec(version: str, flag: str) -> dict | None:
    """What SGLang `version` declares for `flag`, through an alias to the flag it spells."""
    declared = flags(version)
    entry = declared.get(flag)
    return declared[entry["alias_of"]] if entry and "alias_of" in entry else entry


def has_endpoint(version: str, path: str) -> bool:
    return path in _versions().get(version, {}).get("endpoints", [])


# --------------------------------------------------------------------------- a version's flags against another's


@dataclass(frozen=True)
class FlagDiff:
    """How SGLang `new`'s flags differ from `old`'s: `renamed` maps an old flag to those that replace it, as SGLang
    declared it (see `History`); `removed` and `added` are the rest."""

    old: str
    new: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    renamed: dict[str, tuple[str, ...]]


class History:
    """SGLang's renames between two versions, as it declared them in every known version from the
    older to the newer: a deprecated flag's `replaced_by`, or an alias, followed link by link (0.5.14
    declared --cuda-graph-max-bs an alias of --cuda-graph-max-bs-decode; 0.5.20 dropped it)."""

    def __init__(self, a: str, b: str):
        low, high = sorted((version_key(a), version_key(b)))
        self.tables = [flags(v) for v in supported_versions() if low <= version_key(v) <= high]

    def declared(self, flag: str) -> list[str]:
        """Every flag SGLang named as `flag`'s replacement, nearest first (the newest word on each link)."""
        chain, frontier = [], [flag]
        while frontier:
            name = frontier.pop(0)
            for table in reversed(self.tables):
                entry = table.get(name, {})
                if named := entry.get("replaced_by") or ([entry["alias_of"]] if "alias_of" in entry else []):
                    fresh = [n for n in named if n != flag and n not in chain]
                    chain += fresh
                    frontier += fresh
                    break
        return chain

    def successors(self, flag: str) -> tuple[str, ...]:
        """The newer version's flags that replace the older's `flag`, preferring ones it does not deprecate
        in turn; without a notice, a new name for the same setting (argparse dest)."""
        old, new = self.tables[0], self.tables[-1]
        present = [f for f in self.declared(flag) if f in new]
        live = [f for f in present if "deprecated" not in new[f]]
        if live or present:
            return tuple(live or present)
        dest = old.get(flag, {}).get("dest", _dest(flag))
        return tuple(f for f in self._new_by_dest.get(dest, ()) if f not in old)

    def predecessors(self, flag: str) -> tuple[str, ...]:
        """The older version's flags that SGLang later renamed to the newer's `flag`."""
        return self._renamed_from.get(flag, ())

    @cached_property
    def _new_by_dest(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for flag, entry in self.tables[-1].items():
            if "alias_of" not in entry and "negates" not in entry:
                out.setdefault(entry.get("dest", _dest(flag)), []).append(flag)
        return out

    @cached_property
    def _renamed_from(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for old in sorted(self.tables[0]):
            for new in self.successors(old):
                out[new] = out.get(new, ()) + (old,)
        return out


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def diff_versions(old: str, new: str) -> FlagDiff:
    """Removed, added and renamed flags from SGLang `old` to SGLang `new` (either may be the newer)."""
    before, after = known_flags(old), known_flags(new)
    history = History(old, new)
    related = history.successors if version_key(new) >= version_key(old) else history.predecessors
    renamed = {flag: r for flag in sorted(before - after) if (r := related(flag))}
    targets = {f for r in renamed.values() for f in r}
    return FlagDiff(old, new, removed=tuple(sorted(before - after - set(renamed))),
                    added=tuple(sorted(after - before - targets)), renamed=renamed)


def describe(version: str) -> list[str]:
    """What the committed table holds for `version`, and how it differs from the previous known version."""
    tabled = table(version)
    deprecated = sum("deprecated" in entry for entry in tabled["flags"].values())
    lines = [f"SGLang {version}: {len(tabled['flags'])} flags ({deprecated} deprecated), "
             f"{len(tabled['endpoints'])} endpoints, from {tabled['wheel']}"]
    if older := [v for v in supported_versions() if version_key(v) < version_key(version)]:
        diff = diff_versions(older[-1], version)
        lines.append(f"since {older[-1]}: {len(diff.removed)} removed, {len(diff.added)} added, "
                     f"{len(diff.renamed)} renamed")
        lines += [f"  {old} -> {' and '.join(new)}" for old, new in diff.renamed.items()]
    return lines


def missing_flag(version: str, flag: str) -> str:
    """Why SGLang `version` lacks `flag` and what to write instead, from the other known versions:
    'renamed to --y; removed after X', 'removed after X', 'added after X', an abbreviation, or unknown."""
    having = [v for v in supported_versions() if flag in flags(v)]
    older = [v for v in having if version_key(v) < version_key(version)]
    newer = [v for v in having if version_key(v) > version_key(version)]
    generic = f"full flag names that SGLang {version} declares (infra/control/sglang_versions.json)"
    if older and (successors := History(older[-1], version).successors(flag)):
        named = " and ".join(successors)
        return f"SGLang {version} has no {flag} (renamed to {named}; removed after {older[-1]}); allowed: {named}"
    if older:
        return f"SGLang {version} has no {flag} (removed after {older[-1]}, with no successor); allowed: leave it out"
    if newer and (earlier := History(version, newer[0]).predecessors(flag)):
        named = " and ".join(earlier)
        return (f"SGLang {version} has no {flag} (added after {version}, first in {newer[0]}; {version} calls it "
                f"{named}); allowed: {named}")
    if newer:
        return f"SGLang {version} has no {flag} (added after {version}, first in {newer[0]}); allowed: {generic}"
    if spelled := sorted(f for f in flags(version) if f.startswith(flag)):
        return (f"SGLang {version} has no {flag} (argparse would read it as an abbreviation, which breaks the day "
                f"a new flag shares the prefix); allowed: {' or '.join(spelled[:3])}")
    return f"SGLang {version} has no {flag} (no known SGLang version has it); allowed: {generic}"


# --------------------------------------------------------------------------- checking a recipe's command lines

_JSON_TYPES = ("json.loads", "json_list_type", "orjson.loads")
_HUMAN_INT = re.compile(r"\d+(?:\.\d+)?(?:k|M|G|T)|\d+(?:Ki|Mi|Gi|Ti)")


def _human_readable_int(value: str) -> int:
    """SGLang's human_readable_int: 131072, 128k, 25.6k, 1Mi."""
    return 0 if _HUMAN_INT.fullmatch(value.strip()) else int(value)


# Converters SGLang uses whose accepted values are known here; others are not checked.
_CONVERTERS: dict[str, tuple[Callable[[str], object], str]] = {
    "int": (int, "a whole number"),
    "float": (float, "a number"),
    "human_readable_int": (_human_readable_int, "a whole number, optionally with k, M, G, T, Ki, Mi, Gi or Ti"),
    **{name: (json.loads, "JSON text") for name in _JSON_TYPES},
}


def _check_value(where: str, version: str, flag: str, value: str | None, spec: dict) -> None:
    if spec.get("switch"):
        if value is not None:
            raise ConfigError(f"{where}: {flag} {value!r}: SGLang {version} declares {flag} a switch that takes no "
                              f"value; allowed: ({flag!r}, None)")
        return
    kind = spec.get("type", "str")
    converter, described = _CONVERTERS.get(kind, (None, "text"))
    choices = spec.get("choices")
    allowed = ", ".join(map(str, choices)) if choices else described
    if value is None:
        if spec.get("nargs") in ("?", "*"):
            return
        raise ConfigError(f"{where}: {flag} without a value: SGLang {version} needs one; allowed: {allowed}")
    parsed: object = value
    if converter is not None:
        try:
            parsed = converter(value)
        except ValueError:
            raise ConfigError(f"{where}: {flag} {value!r} is not {described} (SGLang {version} reads it with "
                              f"{kind}); allowed: {allowed}") from None
    # argparse compares the converted value; a converter of SGLang's own (parse_cuda_graph_backend_arg,
    # ...) may rewrite it first, so its choices are left to SGLang.
    if choices and kind in ("str", "int", "float") and parsed not in choices:
        raise ConfigError(f"{where}: {flag} {value!r} is not accepted by SGLang {version}; allowed: {allowed}")


def _check_argv(d: Deployment, argv: list[str], declared: dict) -> None:
    where, version = f"recipe '{d.recipe.name}'", d.recipe.sglang_version
    given: dict[str, tuple[str, str | None]] = {}
    for flag, value in flag_values(argv):
        entry = declared.get(flag)
        if entry is None:
            raise ConfigError(f"{where}: {missing_flag(version, flag)}")
        spec = declared[entry["alias_of"]] if "alias_of" in entry else entry
        if "refused" in spec:
            raise ConfigError(f"{where}: SGLang {version} refuses {flag}: {spec['refused']}")
        if spec.get("ignored"):
            instead = " or ".join(spec.get("replaced_by", [])) or "nothing (remove it)"
            raise ConfigError(f"{where}: SGLang {version} ignores {flag} ({spec['deprecated']}); allowed: {instead}")
        _check_value(where, version, flag, value, spec)
        canonical = entry.get("alias_of") or entry.get("negates") or flag
        dest = declared[canonical].get("dest", _dest(canonical))
        if dest in given:
            first = given[dest][0]
            twice = f"{flag} is given twice" if first == flag else f"{first} and {flag} set the same SGLang setting"
            raise ConfigError(f"{where}: {twice} ({given[dest][1]!r}, then {value!r}); allowed: once "
                              "(argparse would keep the last silently)")
        given[dest] = (flag, value)


def check_flags(d: Deployment) -> None:
    """Refuse, offline, what the recipe's SGLang version would refuse or ignore: unknown or abbreviated names (saying
    where a moved flag went), values outside its choices or types, a switch given a value or a valued flag none,
    flags it drops as deprecated, and a setting given twice."""
    tabled = table(d.recipe.sglang_version)
    _check_argv(d, launch_command(d)[3:], tabled["flags"])
    _check_argv(d, compile_command(d)[3:], {**tabled["flags"], **tabled.get("compile_deep_gemm_extra_flags", {})})


def deprecation_warnings(d: Deployment) -> list[str]:
    """Flags the recipe passes that SGLang still honours but has deprecated (for `plan`)."""
    out = []
    for flag, _value in flag_values(launch_command(d)[3:]):
        spec = flag_spec(d.recipe.sglang_version, flag) or {}
        if "deprecated" in spec:
            instead = f"; use {' or '.join(spec['replaced_by'])}" if spec.get("replaced_by") else ""
            out.append(f"SGLang {d.recipe.sglang_version} deprecates {flag} ({spec['deprecated']}){instead}")
    return out
