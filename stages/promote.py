"""`invoke promote --from staging --to prod`: the release that passed staging, and nothing else, goes to prod.

Refuses, changing nothing, when staging has no release, its smoke test did not pass, it was deployed from a dirty
tree, or this checkout is not the commit staging runs (`--from-manifest` re-runs the promotion from a worktree of
that commit); then where the target has a gate (infra/perf/gate.py), when the release, measured on the source's
endpoint, misses an objective or the regression budget (`--skip-gate --reason` promotes unmeasured, recorded).
Deploys the same release with the target's own scaling, region and auth and smoke-tests it; a failure rolls the
target back to its previous version (Modal keeps app versions), recorded, exit non-zero. Then it bakes (docs/bake.md):
a sustained breach rolls back the same way. The whole promotion holds the target's release lock, so a concurrent
one is refused and the gate's baseline cannot change under it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from infra.control import bake_policy, coldstarts, costs, gitinfo, objectives, plan
from infra.control.bake_policy import Bake, BakeOff
from infra.control.gitinfo import GitInfo
from infra.control.resolve import gate_for, resolve
from infra.control.settings import Settings
from infra.perf import bake, client, gate, ledger, qualify, smoketest
from infra.perf.bench import BenchTarget
from infra.perf.gate import GateRecord
from infra.perf.releases import Origin, Release, ReleaseStore
from infra.runtime.deployment import Deployment
from infra.runtime.errors import ConfigError, Refused, StageError
from stages import show
from stages.common import Context, StageResult, apply_schedule, confirm_or_refuse, endpoint, result
from stages.deploy import deploy_and_record
from stages.rollback import roll_back_to

STAGE = "promote"


@dataclass(frozen=True)
class Options:
    recipe: str
    from_manifest: bool = False  # re-run from a git worktree of the commit the source runs
    skip_gate: gate.Override | None = None  # --skip-gate --reason: promote unmeasured; who, where and why are recorded
    record_baseline: bool = False  # --record-baseline: measure the target after promoting (also gate.record_baseline)


@dataclass(frozen=True)
class Promoted:
    release_id: str
    version: int | None
    url: str | None
    promoted_from: Origin
    gate: gate.GateRecord | None = None  # the gate's verdict, table and override (the measurement is in the manifest)
    bake: Bake | None = None  # the bake's verdict (kept, or off with who and why)


def check_direction(source: Settings, target: Settings) -> None:
    """Releases move one way: each environment names the one it takes them from (release.promote_from)."""
    if source.env == target.env:
        raise ConfigError(f"promote --from {source.env} --to {target.env}: source and target are the same environment; "
                          "promote moves a release between two environments (e.g. --from staging --to prod)")
    allowed = target.release.promote_from
    if allowed != source.env:
        path = (f"--from {allowed} --to {target.env}" if allowed
                else f"none: {target.env} is deployed by `invoke pipeline`")
        raise Refused(f"promote --from {source.env} --to {target.env}: {target.env} takes releases only from "
                      f"{allowed or 'no environment'} (release.promote_from in environments/{target.env}.toml); "
                      f"allowed: {path}; nothing changed")


def check_source(source_env: str, target_env: str, release: Release | None, recipe: str) -> Release:
    if release is None:
        raise Refused(f"{source_env} has no release of {recipe}: run `invoke pipeline --env {source_env}` first; "
                      "nothing changed")
    if not release.smoke_passed:
        why = (f"its smoke test failed ({release.smoke.error})" if release.smoke
               else "it has not been smoke-tested")
        raise Refused(f"{source_env}'s current release of {recipe} ({release.release_id}, {release.tag}) is not "
                      f"validated: {why}; run `invoke smoke --env {source_env}`; nothing changed")
    if release.dirty:
        raise Refused(f"{source_env}'s release {release.release_id} was deployed from a dirty tree ({release.tag}); "
                      f"{target_env} takes only committed releases; nothing changed")
    return release


def run(source: Context, target: Context, options: Options, *, confirm=input, clock: bake.Clock | None = None,
        pace: bake.Pace = bake.Pace()) -> StageResult[Promoted]:
    """`clock` and `pace`: what the bake reads time from and how often it probes (tests shorten both)."""
    src_env, dst_env, recipe = source.settings.env, target.settings.env, options.recipe
    check_direction(source.settings, target.settings)
    gating = gate_for(target.settings, recipe)
    policy = target.settings.release
    bake_off = bake_policy.off_reason(dst_env, policy.bake_minutes, policy.bake_off_reason)
    bake_policy.check_minutes(dst_env, policy.bake_minutes, smoketest.deadline_for(resolve(target.settings, recipe)))
    if target.dry_run:  # offline: no credentials, no manifest read
        d = resolve(target.settings, recipe)
        measure = f"measure it on {src_env} (the gate), then " if gating.enabled and not options.skip_gate else ""
        priced = bake.cost(d, policy.bake_minutes, plan.replica_cost(d, costs.rates_for(target.settings.costs)))
        baking = (f", then bake it there for {policy.bake_minutes:g} min: {priced.text()}"
                  if policy.bake_minutes else f" (bake off: {bake_off})")
        return result(STAGE, d, "dry-run", f"promote (dry run, {dst_env}/{recipe}): would take {src_env}'s current "
                                           f"smoke-tested release, {measure}deploy it to {d.app_name} "
                                           f"(Modal environment {d.modal.environment}) and smoke-test it there{baking}")
    target.remote.require_credentials()  # before the question: a "yes" is never followed by "credentials missing"
    if target.settings.release.guarded:  # asked before anything remote, like every local precondition
        confirm_or_refuse(target, f"promoting to guarded environment '{dst_env}'",
                          f"Promote {recipe} from {src_env} to {dst_env}? [y/N] ", confirm)
    store = ReleaseStore(target.remote)
    d_src = resolve(source.settings, recipe)
    release = check_source(src_env, dst_env, store.read(d_src).current, recipe)
    git = gitinfo.read(target.repo)
    if git.commit != release.commit or git.dirty:
        if options.from_manifest:
            return _from_worktree(target, src_env, dst_env, recipe, release, options)
        here = f"{git.commit[:12]}{' with uncommitted changes' if git.dirty else ''}"
        raise Refused(f"this checkout is at {here} but {src_env} runs {release.commit[:12]}: `git checkout "
                      f"{release.commit}` or pass --from-manifest to promote from a worktree of that commit; nothing "
                      "changed")
    d = resolve(target.settings, recipe).with_recipe(release.deployment.recipe)  # whole: what staging ran prod runs

    origin = Origin(env=src_env, release_id=release.release_id, commit=release.commit, version=release.version)
    with store.locked(d, "promote"):
        manifest = store.read(d)
        previous = manifest.current
        gated = _gate(source, target, d_src.with_recipe(d.recipe), release, previous, gating, options)
        _qualify(target, d_src, d, release, previous, gated)
        manifest, promoted = deploy_and_record(target, d, store, manifest, GitInfo(release.commit, False, None),
                                               kind="promote", promoted_from=origin, gate=gated)
        if promoted is None:
            version = f"v{previous.version}" if previous and previous.version else "its current version"
            return result(STAGE, d, "unchanged", f"promote: no change, {dst_env}/{recipe} already runs {release.tag} "
                                                 f"({version})")
        apply_schedule(target, d)
        try:
            outcome = smoketest.check(d, promoted.url, say=target.say)
        except StageError as err:
            manifest = store.update_current(d, manifest, smoke=smoketest.SmokeResult.failed(promoted.url, str(err)))
            rolled = _roll_back(target, d, store, manifest, previous, reason=f"automatic rollback: {err}")
            raise StageError(STAGE, f"{dst_env} smoke test failed ({err}); {rolled}") from None
        manifest = store.update_current(d, manifest, smoke=outcome)
        title = f"{recipe} {promoted.release_id} v{promoted.version} in {dst_env}"
        baked = _bake(target, d, store, manifest, promoted, previous, gating, bake_off, title, clock, pace)
        baseline = _record_baseline(target, d, store, manifest, promoted, gating, options)
    verdict = f"gate {gated.verdict}, " if gated else ""
    return result(STAGE, d, "ran", f"promoted {release.tag} from {src_env} to {dst_env} as v{promoted.version}: "
                                   f"{promoted.url} ({verdict}smoke passed, first token {outcome.ttft:.2f} s; "
                                   f"{baked.line()}){baseline}",
                  Promoted(promoted.release_id, promoted.version, promoted.url, origin,
                           gated.model_copy(update={"measurement": None}) if gated else None, baked))


def _qualify(ctx: Context, d_src: Deployment, d: Deployment, release: Release, previous: Release | None,
             gated: GateRecord | None) -> None:
    """The candidate beside the target's current release on every recorded figure (infra/perf/qualify.py): printed,
    and in the CI job summary, before it is deployed. It decides nothing: the gate did."""
    rates = costs.rates_for(ctx.settings.costs)
    starts_now = coldstarts.read(ctx.remote, d.modal.environment, [previous]).get(previous.release_id, []) \
        if previous else []
    starts_new = coldstarts.read(ctx.remote, d_src.modal.environment, [release]).get(release.release_id, [])
    table = qualify.qualify(
        release, previous, gated, target_concurrency=d.recipe.target_concurrency,
        hourly_candidate=plan.replica_cost(d, rates),
        hourly_current=costs.price(ledger.container_of(previous), rates) if previous else None,
        candidate_starts=starts_new, current_starts=starts_now,
        title=f"{d.recipe.name} {release.release_id} {d_src.env} → {d.env}")
    ctx.say(qualify.render_text(table))
    gate.write_job_summary(qualify.render_markdown(table))


def _bake(ctx: Context, d: Deployment, store: ReleaseStore, manifest, promoted: Release, previous: Release | None,
          gating: objectives.Gate, off_reason: str | None, title: str, clock: bake.Clock | None,
          pace: bake.Pace) -> Bake:
    """Probe the promoted release on the target for `bake_minutes` and record the verdict on it. A sustained breach
    rolls back to `previous` (as a failed smoke test does) and raises; so does Ctrl-C, which leaves it in place."""
    minutes = ctx.settings.release.bake_minutes
    back = previous is not None and previous.version is not None
    if minutes <= 0:
        off = gate.skip_override(off_reason) if off_reason else None
        verdict = Bake(verdict=bake_policy.OFF, off=BakeOff(**off.to_data()) if off else None)
    else:
        verdict = bake.run(promoted.url, d.recipe.gate_workload, model=d.recipe.model,
                           objs=bake.objectives_for(gating, d.recipe.target_concurrency), minutes=minutes,
                           cold_start_s=float(smoketest.deadline_for(d)),
                           headers=client.endpoint_headers(d, promoted.url), clock=clock, pace=pace, say=ctx.say)
    if verdict.verdict == bake_policy.ROLLED_BACK:
        if back:
            verdict.rolled_back_to = previous.version
        else:
            verdict.verdict = bake_policy.BREACHED
    ctx.say(bake.render_text(verdict, title))
    gate.write_job_summary(bake.render_markdown(verdict, title))
    manifest = store.update_current(d, manifest, bake=verdict)
    env, name = d.env, d.recipe.name
    if verdict.verdict == bake_policy.ROLLED_BACK:
        entry = roll_back_to(ctx, d, store, manifest, previous, note=verdict.line())
        raise StageError(STAGE, f"{verdict.line()}; {env}/{name} returned to v{previous.version} ({previous.tag}) "
                                f"as v{entry.version}")
    if verdict.verdict == bake_policy.BREACHED:
        raise StageError(STAGE, f"{verdict.line()}; v{promoted.version} stays deployed in {env} (roll forward or "
                                "stop the app)")
    if verdict.verdict == bake_policy.INTERRUPTED:
        raise StageError(STAGE, interrupted(verdict, d, promoted, previous.version if back else None))
    return verdict


def interrupted(verdict: Bake, d: Deployment, promoted: Release, previous_version: int | None) -> str:
    """What Ctrl-C during the bake says: the promoted release stays, and how to return to the one before."""
    to = (f"`invoke rollback --env {d.env} --recipe {d.recipe.name}` returns to v{previous_version}"
          if previous_version else "there is no release before it")
    return (f"bake interrupted ({verdict.reason}): {d.env}/{d.recipe.name} keeps v{promoted.version} ({promoted.tag}), "
            f"promoted and smoke-tested but not baked; {to}")


def _gate(source: Context, target: Context, served: Deployment, release: Release, current: Release | None,
          gating: objectives.Gate, options: Options) -> gate.GateRecord | None:
    """The target's gate on `release`, served by the source as `served`: its record, or Refused (nothing changed)."""
    src, dst = source.settings.env, target.settings.env
    title = f"{served.recipe.name} {release.release_id} {src} → {dst}"
    if not gating.enabled:
        if options.skip_gate:
            target.say(f"--skip-gate: {dst} has no promotion gate (gate.enabled = false); nothing to skip")
        return None
    if options.skip_gate:
        return gate.skip(options.skip_gate, title, say=target.say)
    url = release.url or endpoint(source, served, STAGE)
    # The source's endpoint, with the source's proxy credentials where it asks for them: nowhere else.
    headers = client.endpoint_headers(served, url)
    target.say(f"promotion gate: measuring {release.release_id} on {src} ({url}) with the {served.recipe.name} gate "
               "workload...")
    where = BenchTarget(env=src, recipe=served.recipe.name, app=served.app_name, release_id=release.release_id)
    try:
        evaluation, record = gate.check(gating, served, url, current, headers=headers, where=where, title=title,
                                        say=target.say, progress=show.progress_bars())
    except StageError as err:
        raise StageError(STAGE, f"the promotion gate could not measure {release.release_id} on {src}: {err}; nothing "
                                "changed") from None
    if not evaluation.passed:
        raise Refused(f"the promotion gate refused {title}: {'; '.join(evaluation.reasons)}; nothing changed "
                      '(table above; `--skip-gate --reason "..."` promotes anyway and records who and why)')
    return record


def _record_baseline(ctx: Context, d: Deployment, store: ReleaseStore, manifest, promoted: Release,
                     gating: objectives.Gate, options: Options) -> str:
    """After a promotion, when asked: the gate workload on the target itself, recorded as its `measurement`."""
    if not (options.record_baseline or (gating.enabled and gating.record_baseline)):
        return ""
    headers = client.endpoint_headers(d, promoted.url)  # the target's own endpoint
    ctx.say(f"measuring {d.env} itself with the gate workload, to record as its baseline...")
    where = BenchTarget(env=d.env, recipe=d.recipe.name, app=d.app_name, release_id=promoted.release_id)
    try:
        measurement = gate.measure_release(d, promoted.url, headers=headers, where=where, say=ctx.say,
                                           targets=objectives.resolve(gating, d.recipe.target_concurrency))
    except StageError as err:  # the promotion stands; only its baseline is missing
        return f"; baseline NOT recorded: {err}"
    store.update_current(d, manifest, measurement=measurement)
    return f"; {d.env}'s baseline recorded"


def _roll_back(ctx: Context, d: Deployment, store: ReleaseStore, manifest, previous: Release | None,
               reason: str) -> str:
    """Return the target to the version it ran before; record that. Returns a sentence for the error."""
    if previous is None or previous.version is None:
        return "no previous version to roll back to: the failed release stays deployed (roll forward or stop the app)"
    rollback = roll_back_to(ctx, d, store, manifest, previous, note=reason)
    return f"rolled back to v{previous.version} ({previous.tag}) as v{rollback.version}"


def _from_worktree(ctx: Context, src_env: str, dst_env: str, recipe: str, release: Release,
                   options: Options) -> StageResult:
    """Re-run this promotion from a git worktree of the release's commit: its code, its pinned values, its gate."""
    flags = (["--skip-gate", "--reason", options.skip_gate.reason] if options.skip_gate else []) + (
        ["--record-baseline"] if options.record_baseline else [])
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        tree = os.path.join(tmp, "tree")
        added = subprocess.run(["git", "worktree", "add", "--detach", tree, release.commit], cwd=ctx.repo,
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise Refused(f"cannot check out {release.commit[:12]} (the commit {src_env} runs): {added.stderr.strip()}")
        try:
            ctx.say(f"promoting from a worktree of {release.commit[:12]} (the commit {src_env} runs)...")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.getenv("PYTHONPATH", "")]))
            done = subprocess.run([sys.executable, "-m", "invoke", "promote", "--from", src_env, "--to", dst_env,
                                   "--recipe", recipe, "--yes", *(["--dry-run"] if ctx.dry_run else []), *flags],
                                  cwd=tree, env=env, text=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ctx.repo, capture_output=True)
    if done.returncode != 0:
        raise StageError(STAGE, f"promotion from the worktree of {release.commit[:12]} failed (exit {done.returncode})")
    return StageResult(STAGE, dst_env, recipe, "ran", f"promoted {release.tag} from {src_env} to {dst_env} (from its "
                                                      "own commit)")
