"""`invoke upgrade`: move a recipe to another SGLang (or modal client, model or draft revision) and show what follows.

Everything is local: the migration reads the committed flag tables, the plan on both sides is `plan`'s own, and the
change is written to the recipe's source file (and pyproject.toml for --modal) as a diff a reviewer reads. Only three
things reach out, and never in a dry run: the flag table of a version not yet tabled (PyPI, as `invoke sglang-flags`)
and a revision given as a branch (the Hub, resolved to a commit). What the migration cannot decide (a flag removed with
no successor) is refused with the version that removed it; --force writes the rest anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.control import plan as plans
from infra.control import sglang_flags, upgrade
from infra.control.resolve import resolve
from infra.control.settings import Settings
from infra.runtime.errors import ConfigError, Refused, UserError
from infra.runtime.recipes import RECIPES
from infra.runtime.recipes.base import COMMIT_RE
from stages.common import StageResult

STAGE = "upgrade"


@dataclass(frozen=True)
class Options:
    sglang: str | None = None
    modal: str | None = None
    model_revision: str | None = None
    draft_revision: str | None = None
    image: str | None = None  # the new image tag, where it does not follow the old one's pattern


def _table(version: str, dry_run: bool) -> None:
    """Make sure SGLang `version` has a flag table: read it from the published wheel when missing (not offline)."""
    if version in sglang_flags.supported_versions():
        return
    if dry_run:
        raise ConfigError(f"--sglang {version}: no flag table for it yet and a dry run is offline; known versions: "
                          f"{', '.join(sglang_flags.supported_versions())} (run `invoke sglang-flags --version "
                          f"{version}`, or drop --dry-run to read it from PyPI)")
    from tools import sglang_tables

    sglang_tables.update(sglang_flags.TABLE_PATH, version, None, write=True)
    sglang_flags.reload()


def _commit(flag: str, repo: str | None, ref: str | None, dry_run: bool) -> str | None:
    """A revision as a commit: a branch or tag is resolved on the Hub (not offline)."""
    if ref is None or COMMIT_RE.match(ref):
        return ref
    if repo is None:
        return ref  # migrate() refuses it, naming the recipe
    if dry_run:
        raise ConfigError(f"{flag} {ref!r} is not a commit and a dry run is offline; allowed: a 40-hex commit id, "
                          "or drop --dry-run to resolve it on the Hub")
    from infra.runtime import weights

    return weights.commit_of(repo, ref)


def run(settings: Settings, recipe: str, options: Options, *, dry_run: bool, force: bool) -> StageResult:
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe: unknown recipe '{recipe}'; known recipes: {', '.join(RECIPES)}")
    if not any((options.sglang, options.modal, options.model_revision, options.draft_revision)):
        raise ConfigError("upgrade: nothing to move; allowed: --sglang X, --modal X, --model-revision R, "
                          "--draft-revision R (any together)")
    base = RECIPES[recipe]
    if options.sglang:
        _table(options.sglang, dry_run)
    model_revision = _commit("--model-revision", base.model, options.model_revision, dry_run)
    draft_revision = _commit("--draft-revision", base.draft_model, options.draft_revision, dry_run)
    moved, migration = upgrade.migrate(base, sglang=options.sglang, image=options.image,
                                       model_revision=model_revision, draft_revision=draft_revision)
    before_d = resolve(settings, recipe)
    before = upgrade.side(plans.plan_for(settings, before_d), before_d)
    try:
        after_d = resolve(settings, recipe, base=moved)
        after = upgrade.side(plans.plan_for(settings, after_d), after_d)
    except UserError as refusal:
        after = None
        migration = migration.model_copy(update={"refused": migration.refused + (str(refusal),)})
    texts = _new_texts(base, moved, migration, options)
    if upgrade.PYPROJECT in texts:
        pin = upgrade.FlagChange(what="modal", before=upgrade.modal_pin(texts[upgrade.PYPROJECT][0]),
                                 after=options.modal,
                             why="asked: the contract tests (tests/test_modal_contract*.py) qualify it in CI")
        migration = migration.model_copy(update={"changes": migration.changes + (pin,)})
    diffs = {str(p.relative_to(upgrade.REPO)): upgrade.unified_diff(p, old, new) for p, (old, new) in texts.items()}
    refused = bool(migration.refused)
    write = not dry_run and (not refused or force)
    if write:
        for path, (_old, new) in texts.items():
            path.write_text(new)
    report = upgrade.Report(env=settings.env, migration=migration, diffs=diffs, written=write, before=before,
                            after=after)
    if refused and not dry_run and not force:
        raise Refused(upgrade.render(report) + "\nnothing written: the migration could not do the above (--force "
                                               "writes what it could)")
    status = "dry-run" if dry_run else ("ran" if write and diffs else "unchanged")
    return StageResult(STAGE, settings.env, recipe, status, upgrade.render(report), report.model_dump(mode="json"))


def _new_texts(base, moved, migration, options: Options) -> dict[Path, tuple[str, str]]:
    """Every file the upgrade changes: path -> (text now, text after). Computed whole before anything is written."""
    texts: dict[Path, tuple[str, str]] = {}
    path = upgrade.recipe_file(base.name)
    source = path.read_text()
    edited = upgrade.edit_source(source, base, moved, migration.flag_names)
    if edited != source:
        texts[path] = (source, edited)
    if options.modal:
        text = upgrade.PYPROJECT.read_text()
        if upgrade.modal_pin(text) != options.modal:
            texts[upgrade.PYPROJECT] = (text, upgrade.move_modal(text, options.modal))
    return texts
