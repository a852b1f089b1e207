"""Moving a recipe to another SGLang, modal client, model or draft revision: the migration, and its edit.

An upgrade is a hand edit followed by hope unless something reads what moved. The flag tables (sglang_versions.json)
say what every tabled SGLang version accepts, renames, deprecates and drops; a recipe's own flags walk through every
tabled version up to the target, one step at a time: a renamed or deprecated-for-another flag is rewritten, a no-op
is dropped, one removed with no successor is refused naming the version (only a person can say what the recipe
loses). Derived flags follow infra/runtime/sglang_args.py; the image tag moves with the version (its pattern kept);
new revisions are pinned to commits. The change is written to the recipe's own source file, read as a diff.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

from infra.control import sglang_flags
from infra.control.costs import Shown
from infra.control.plan_record import DeploymentPlan
from infra.runtime import compile_cache
from infra.runtime.errors import ConfigError
from infra.runtime.recipes.base import COMMIT_RE, Recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO / "infra" / "runtime" / "recipes"
PYPROJECT = REPO / "pyproject.toml"
MODAL_PIN = re.compile(r'"modal==([^"]+)"')
VERSION_RE = re.compile(r"\d+(?:\.\d+)+(?:\.post\d+)?")


class FlagChange(Shown):
    """One thing the migration moved, and why (what SGLang's table says)."""

    what: str  # e.g. "--mamba-scheduler-strategy"
    before: str | None
    after: str | None
    why: str


class Migration(Shown):
    """A recipe moved to new versions: the recipe after, what changed, what a person must decide."""

    recipe: str
    sglang: tuple[str, str]  # (from, to)
    steps: tuple[str, ...]  # the tabled versions walked, in order
    changes: tuple[FlagChange, ...]
    refused: tuple[str, ...]  # what the migration could not do, one line each
    flag_names: tuple[str | None, ...]  # each of the recipe's extra_flags at the new version (None: dropped)


def versions_between(old: str, new: str) -> list[str]:
    """Tabled SGLang versions after `old` up to and including `new`, oldest first."""
    low, high = sglang_flags.version_key(old), sglang_flags.version_key(new)
    return [v for v in sglang_flags.supported_versions() if low < sglang_flags.version_key(v) <= high]


def _flag_through(flag: str, value: str | None, old: str,
                  steps: list[str]) -> tuple[str | None, list[FlagChange], str | None]:
    """Walk one recipe flag through `steps`: its name at the last step (None: dropped), the changes, a refusal."""
    changes: list[FlagChange] = []
    current, previous = flag, old
    for version in steps:
        flags = sglang_flags.flags(version)
        if current not in flags:
            last = sglang_flags.flag_spec(previous, current) or {}
            if last.get("ignored"):
                changes.append(FlagChange(what=current, before=current, after=None,
                                      why=f"SGLang {previous} already ignored it; {version} removed it"))
                return None, changes, None
            successors = sglang_flags.History(previous, version).successors(current)
            if not successors:
                return current, changes, (f"{current}: SGLang {version} removed it with no successor (it was still "
                                          f"in {previous}); allowed: drop it from the recipe's extra_flags, or stay "
                                          f"below {version}")
            if len(successors) > 1 or _takes_value(version, successors[0]) != (value is not None):
                return current, changes, (f"{current}: SGLang {version} replaced it by {' and '.join(successors)}, "
                                          "which take(s) other values; edit the recipe's extra_flags by hand")
            changes.append(FlagChange(what=current, before=current, after=successors[0],
                                  why=f"SGLang {version} renamed it (it has no {current})"))
            current = successors[0]
        previous = version
    final = sglang_flags.flags(previous).get(current, {})
    if final.get("ignored"):
        changes.append(FlagChange(what=current, before=current, after=None,
                                  why=f"SGLang {previous} ignores it (a no-op)"))
        return None, changes, None
    instead = final.get("replaced_by", []) if "deprecated" in final else []
    if len(instead) == 1 and _takes_value(previous, instead[0]) == (value is not None):
        changes.append(FlagChange(what=current, before=current, after=instead[0],
                              why=f"SGLang {previous} deprecates it in favour of {instead[0]}"))
        current = instead[0]
    return current, changes, None


def _takes_value(version: str, flag: str) -> bool:
    return not (sglang_flags.flag_spec(version, flag) or {}).get("switch")


def migrate(recipe: Recipe, *, sglang: str | None = None, image: str | None = None,
            model_revision: str | None = None, draft_revision: str | None = None) -> tuple[Recipe, Migration]:
    """The recipe at the new versions, and what moved. Nothing is written; `ConfigError` for bad input."""
    old = recipe.sglang_version
    new = sglang or old
    if sglang is not None:
        if not VERSION_RE.fullmatch(sglang):
            raise ConfigError(f"--sglang {sglang!r} is not a version; allowed: a release such as 0.5.17 or "
                              "0.5.10.post1")
        sglang_flags.table(sglang)  # a missing table is one line naming how to add it
        if sglang_flags.version_key(sglang) < sglang_flags.version_key(old):
            raise ConfigError(f"--sglang {sglang}: recipe '{recipe.name}' runs {old} already, a newer version; "
                              f"allowed: a tabled version above {old} "
                              f"({', '.join(versions_between(old, '99')) or 'none'})")
    steps = versions_between(old, new)
    changes: list[FlagChange] = []
    refused: list[str] = []
    names: list[str | None] = []
    for flag, value in recipe.extra_flags:
        name, moved, refusal = _flag_through(flag, value, old, steps) if steps else (flag, [], None)
        changes += moved
        refused += [refusal] if refusal else []
        names.append(name)
    flags = tuple((name, value) for name, (_flag, value) in zip(names, recipe.extra_flags) if name is not None)
    update: dict = {}
    if new != old:
        update |= {"sglang_version": new, "sglang_image": image or moved_image(recipe.sglang_image, old, new)}
        changes.append(FlagChange(what="sglang_version", before=old, after=new, why="asked"))
        changes.append(FlagChange(what="sglang_image", before=recipe.sglang_image, after=update["sglang_image"],
                              why="given with --image" if image else f"the tag's version moved from v{old} to v{new}"))
    if flags != recipe.extra_flags:
        update["extra_flags"] = flags
    moved_recipe = recipe.model_copy(update=update) if update else recipe
    for label, value, current in (("model_revision", model_revision, recipe.model_revision),
                                  ("draft_revision", draft_revision, recipe.draft_revision)):
        if value is None:
            continue
        if not COMMIT_RE.match(value):
            raise ConfigError(f"--{label.replace('_', '-')} {value!r} is not a commit; allowed: a 40-hex commit id "
                              "(the Hub's resolution of a branch is pinned by `invoke upgrade` without --dry-run)")
        if label == "draft_revision" and not recipe.draft_model:
            raise ConfigError(f"--draft-revision: recipe '{recipe.name}' has no draft model; allowed: leave it out")
        changes.append(FlagChange(what=label, before=current, after=value, why="pinned to a commit"))
    moved_recipe = moved_recipe.with_revisions(model_revision, draft_revision)
    known = {c.name for c in compile_cache.applicable(old)}
    for entry in (c for c in compile_cache.applicable(new) if c.name not in known):
        changes.append(FlagChange(what=f"cache {entry.name}", before=None, after=f"{entry.variable} -> {entry.folder}/",
                              why=f"compiled into from SGLang {entry.since}: {entry.why}"))
    migration = Migration(recipe=recipe.name, sglang=(old, new), steps=tuple(steps), changes=tuple(changes),
                          refused=tuple(refused), flag_names=tuple(names))
    return moved_recipe, migration


def moved_image(tag: str, old: str, new: str) -> str:
    """The image tag at the new version, its pattern kept (lmsysorg/sglang:v0.5.6.post2-cu129-amd64-runtime)."""
    marker = f"v{old}"
    if marker not in tag:
        raise ConfigError(f"sglang_image {tag!r} does not name v{old}, so its tag for {new} cannot be derived; "
                          "allowed: give the new tag with --image")
    return tag.replace(marker, f"v{new}", 1)


# ---------------------------------------------------------------------------- the recipe's source


def recipe_file(name: str) -> Path:
    """The module that defines recipe `name` (its `RECIPE = Recipe(name=...)`)."""
    for path in sorted(RECIPES_DIR.glob("*.py")):
        if f'name="{name}"' in path.read_text():
            return path
    raise ConfigError(f"--recipe {name!r}: no file under {RECIPES_DIR} defines it")


def edit_source(source: str, before: Recipe, after: Recipe, flag_names: tuple[str | None, ...]) -> str:
    """The recipe module's text with the fields that differ rewritten in place (comments and layout kept) and a
    dropped flag's line removed; `flag_names` is each of `before.extra_flags` at the new version. Only one-line
    literals are rewritten: anything else is refused, so the file is never half-edited."""
    tree = ast.parse(source)
    call = next(n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id == "RECIPE" for t in n.targets))
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line, start column, end column, new literal)
    drops: list[int] = []

    def literal(node: ast.AST | None, text: str) -> None:
        if not (isinstance(node, ast.Constant) and node.lineno == node.end_lineno):
            shown = ast.unparse(node) if node is not None else "a missing keyword"
            raise ConfigError(f"cannot rewrite {shown} in the recipe's source: not a one-line literal; edit it by hand")
        edits.append((node.lineno - 1, node.col_offset, node.end_col_offset, '"' + text + '"'))

    def value(owner: ast.Call, name: str) -> ast.AST | None:
        keyword = next((k for k in owner.keywords if k.arg == name), None)
        return keyword.value if keyword else None

    for field in ("sglang_image", "sglang_version", "model_revision"):
        if getattr(before, field) != getattr(after, field):
            literal(value(call, field), getattr(after, field))
    if before.draft_revision != after.draft_revision:
        literal(value(value(call, "speculative"), "draft_revision"), after.draft_revision)
    if any(name != flag for name, (flag, _v) in zip(flag_names, before.extra_flags)):
        for element, name, (flag, _v) in zip(value(call, "extra_flags").elts, flag_names, before.extra_flags):
            if name is None:
                drops.extend(range(element.lineno - 1, element.end_lineno))
            elif name != flag:
                literal(element.elts[0], name)
    for line, start, end, text in sorted(edits, reverse=True):
        lines[line] = lines[line][:start] + text + lines[line][end:]
    for line in sorted(drops, reverse=True):
        del lines[line]
    return "".join(lines)


def unified_diff(path: Path, before: str, after: str) -> str:
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))


def modal_pin(text: str) -> str:
    match = MODAL_PIN.search(text)
    if not match:
        raise ConfigError(f"{PYPROJECT.name}: no \"modal==X\" pin found; the project pins modal exactly")
    return match.group(1)


def move_modal(text: str, version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise ConfigError(f"--modal {version!r} is not a version; allowed: a release such as 1.6.5")
    return MODAL_PIN.sub(f'"modal=={version}"', text, count=1)


# ---------------------------------------------------------------------------- plan, before and after


class Side(Shown):
    """What `plan` says of one side of an upgrade: the figures a reviewer weighs."""

    image: str
    sglang_version: str
    launch_command: tuple[str, ...]
    compile_command: tuple[str, ...]
    caches: tuple[str, ...]  # "name (VARIABLE)" for every cache this version compiles into
    compile_key: str  # the kernel fingerprint: a new one means the first start recompiles unless `invoke compile` ran
    cold_start_seconds: float | None  # cached, after `invoke compile`
    uncached_cold_start_seconds: float | None
    cold_start_basis: str
    replica_usd_per_hour: float
    compile_job_usd: float | None
    refused: str | None = None  # the plan refused this side (a flag the version lacks): the reason


class Report(Shown):
    """`invoke upgrade`'s result: the migration, the files it changes (as diffs), and `plan` on both sides."""

    schema_version: int = 1
    env: str
    migration: Migration
    diffs: dict[str, str]  # path -> unified diff
    written: bool
    before: Side
    after: Side | None

    @property
    def recompiles(self) -> bool:
        return self.after is not None and self.after.compile_key != self.before.compile_key


def side(plan: DeploymentPlan, d, refused: str | None = None) -> Side:
    """One side from `plan`'s own figures for deployment `d` (infra/control/plan.py)."""
    from infra.runtime import kernels

    cold, cost = plan.cold_start, plan.cost
    basis = "; ".join([f"{cold.profile.name}, measured on {cold.profile.measured_on}", *cold.caveats])
    return Side(
        image=d.recipe.sglang_image, sglang_version=d.recipe.sglang_version,
        launch_command=tuple(plan.launch_command), compile_command=tuple(plan.compile_command),
        caches=tuple(f"{c.name} ({c.variable})" for c in compile_cache.applicable(d.recipe.sglang_version)),
        compile_key=kernels.kernel_fingerprint(d), cold_start_seconds=cold.estimate_seconds,
        uncached_cold_start_seconds=cold.uncached_estimate_seconds, cold_start_basis=basis,
        replica_usd_per_hour=round(cost.replica.usd, 4), compile_job_usd=cost.compile_job.usd, refused=refused,
    )


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.1f} s"


def rows(report: Report) -> list[tuple[str, str, str]]:
    """(figure, before, after) for the side-by-side table."""
    b, a = report.before, report.after
    if a is None:
        return [("plan", "as today", "refused: see above")]

    def money(v: float | None) -> str:
        return "unknown" if v is None else f"${v:,.2f}"

    key_after = a.compile_key + ("  (new key: the first start recompiles; run `invoke compile`)"
                                 if report.recompiles else "  (unchanged)")
    return [
        ("image", b.image, a.image),
        ("SGLang", b.sglang_version, a.sglang_version),
        ("caches", ", ".join(c.split(" ")[0] for c in b.caches), ", ".join(c.split(" ")[0] for c in a.caches)),
        ("compile key", b.compile_key, key_after),
        ("cold start", f"{_seconds(b.cold_start_seconds)} cached, {_seconds(b.uncached_cold_start_seconds)} uncached",
         f"{_seconds(a.cold_start_seconds)} cached, {_seconds(a.uncached_cold_start_seconds)} uncached"),
        ("replica", f"{money(b.replica_usd_per_hour)}/h", f"{money(a.replica_usd_per_hour)}/h"),
        ("compile job", money(b.compile_job_usd), money(a.compile_job_usd)),
    ]


def _command_diff(name: str, before: tuple[str, ...], after: tuple[str, ...]) -> list[str]:
    """The command's flags that differ, one flag and its value a line: "launch  - --x 1" / "launch  + --y 1"."""
    def one_flag_a_line(argv: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for word in argv:
            if word.startswith("--") or not out:
                out.append(word)
            else:
                out[-1] += f" {word}"
        return out

    diff = list(difflib.unified_diff(one_flag_a_line(before), one_flag_a_line(after), lineterm="", n=0))[2:]
    changed = [f"{name}  {line[0]} {line[1:]}" for line in diff if line[:1] in "+-"]
    return changed or [f"{name}: unchanged"]


def _command_diffs(before: Side, after: Side) -> list[str]:
    return (_command_diff("launch", before.launch_command, after.launch_command)
            + _command_diff("compile", before.compile_command, after.compile_command))


def render(report: Report) -> str:
    m = report.migration
    head = f"upgrade {m.recipe}"
    if m.sglang[0] != m.sglang[1]:
        head += f": SGLang {m.sglang[0]} -> {m.sglang[1]} (through {', '.join(m.steps)})"
    lines = [head, "changes:"]
    lines += [f"  {c.what}: {c.before or '(none)'} -> {c.after or '(dropped)'}  ({c.why})"
              for c in m.changes] or ["  none"]
    lines.append("could not:")
    lines += [f"  {r}" for r in m.refused] or ["  nothing: every flag moved"]
    if report.after is not None and report.after.refused:
        lines.append(f"  plan after: {report.after.refused}")
    lines.append(f"plan ({report.env}), before | after:")
    table = rows(report)
    width = max(len(r[1]) for r in table)
    lines += [f"  {label:<12} {before:<{width}} | {after}" for label, before, after in table]
    if report.after is not None:
        lines.append(f"  cold start basis: {report.after.cold_start_basis}")
        lines += ["  " + line for line in _command_diffs(report.before, report.after)]
    for path, diff in report.diffs.items():
        lines.append(f"{'written' if report.written else 'would write'}: {path}")
        lines += ["  " + line for line in diff.rstrip("\n").splitlines()]
    if not report.diffs:
        lines.append("nothing to write: the recipe is already there")
    return "\n".join(lines)


def markdown(report: Report) -> str:
    """The pull request's body: what moved, what a person must decide, plan before and after, the diffs."""
    m = report.migration
    out = [f"## Upgrade `{m.recipe}`", ""]
    if m.sglang[0] != m.sglang[1]:
        out += [f"SGLang {m.sglang[0]} → {m.sglang[1]}, migrated through every tabled version: "
                f"{', '.join(m.steps)}.", ""]
    out += ["| what | before | after | why |", "|---|---|---|---|"]
    out += [f"| `{c.what}` | `{c.before or '-'}` | `{c.after or 'dropped'}` | {c.why} |" for c in m.changes]
    out += ["", "### What the migration could not do", ""]
    out += [f"- {r}" for r in m.refused] or ["Nothing: every flag moved."]
    out += ["", f"### `invoke plan --env {report.env}`, before and after", "", "| figure | before | after |",
            "|---|---|---|"]
    out += [f"| {label} | {before} | {after} |" for label, before, after in rows(report)]
    if report.after is not None:
        out += ["", f"Cold start basis: {report.after.cold_start_basis}.", "", "```"]
        out += _command_diffs(report.before, report.after)
        out += ["```"]
    for path, diff in report.diffs.items():
        out += ["", f"### `{path}`", "", "```diff", diff.rstrip("\n"), "```"]
    out += ["", "Merging runs the staging pipeline; promotion to prod then reports this release against prod's "
            "current one (latency, goodput, cold start phase by phase, $/M output tokens, `invoke gpu-test`).", ""]
    return "\n".join(out)
