"""Each release's cold starts, read back from what its server containers recorded (infra/runtime/startup.py).

A server container writes its start's timeline into the `sglang-starts` Modal Dict, in a bucket named by its app and
its deployment's digest (remote.py `starts_bucket`), so a release's manifest entry alone finds its bucket. Releases
that deployed the very same thing (a redeploy at another commit, a rollback) share a bucket: each start goes to the
newest of them deployed before it started, with DEPLOY_SLACK_SECONDS of slack (a deploy's first containers start
moments before its manifest entry is written). Modal expires Dict entries after 7 days and a bucket keeps
STARTS_KEPT starts, so a replaced release's summary is frozen into its manifest entry (`cold_starts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from infra.runtime import remote as remote_module
from infra.runtime import timeline
from infra.runtime.remote import Remote
from infra.runtime.timeline import StartRecord, StartSummary

if TYPE_CHECKING:
    from infra.perf.releases import Release

DEPLOY_SLACK_SECONDS = 60
SHOWN_STARTS = 5  # per release in `invoke status`: the newest
WINDOW = ("starts of the last 7 days at most (Modal Dict entries expire 7 days after their last access), the newest "
          f"{remote_module.STARTS_KEPT} per deployment; a replaced release's summary is kept in its manifest")


def bucket_of(release: Release) -> str:
    return remote_module.starts_bucket(release.app_name, release.deployment_digest)


def attribute(records: Iterable[StartRecord], releases: list[Release]) -> dict[str, list[StartRecord]]:
    """Records of one bucket -> the release (of those sharing it) each belongs to: the newest deployed before it
    started, give or take DEPLOY_SLACK_SECONDS; newest records first."""
    by_time = sorted(releases, key=lambda r: r.deployed_at)
    out: dict[str, list[StartRecord]] = {r.release_id: [] for r in releases}
    for record in sorted(records, key=lambda x: x.started_at, reverse=True):
        started = record.started_at + DEPLOY_SLACK_SECONDS
        owner = next((r for r in reversed(by_time) if r.deployed_at <= started), by_time[0])
        out[owner.release_id].append(record)
    return out


def read(remote: Remote, environment: str, releases: list[Release]) -> dict[str, list[StartRecord]]:
    """release_id -> its recorded starts, newest first (one read per bucket; records as their containers wrote them,
    read tolerantly: `StartRecord.read`)."""
    buckets: dict[str, list[Release]] = {}
    for release in releases:
        buckets.setdefault(bucket_of(release), []).append(release)
    out: dict[str, list[StartRecord]] = {}
    for bucket, sharing in buckets.items():
        out |= attribute([StartRecord.read(r) for r in remote.recent_starts(environment, bucket)], sharing)
    return out


def frozen_summary(remote: Remote, environment: str, release: Release, replaced_at: float,
                   history: Iterable[Release] = ()) -> StartSummary:
    """What a release that is being replaced leaves in its manifest: the summary of its starts up to now (told
    apart from those of the releases in `history` that deployed the same thing)."""
    rid = release.release_id
    starts = read(remote, environment, [release, *(r for r in history if r.release_id != rid)]).get(rid, [])
    summary = timeline.summarise(r for r in starts if r.started_at <= replaced_at)
    return summary.model_copy(update={"frozen_at": replaced_at})


def summaries(recorded: dict[str, list[StartRecord]], releases: list[Release]) -> dict[str, StartSummary]:
    """release_id -> its cold-start summary: the one frozen in its manifest entry, else from the live records."""
    return {r.release_id: r.cold_starts or timeline.summarise(recorded.get(r.release_id, [])) for r in releases}


def summary_text(summary: StartSummary | None) -> str:
    if not summary or not summary.starts:
        return "no starts recorded"
    text = f"{summary.starts} start(s)"
    if summary.median_s is not None:
        text += f", ready in {summary.median_s:.1f} s median, {summary.worst_s:.1f} s worst"
    if summary.failed or summary.refused:
        text += f", {summary.failed} failed, {summary.refused} refused"
    if summary.with_misses:
        text += f", {summary.with_misses} with compile-cache misses"
    return text + (" (kept in the manifest)" if summary.frozen_at else "")


def status_lines(releases: list[Release], recorded: dict[str, list[StartRecord]], summary: dict[str, StartSummary], *,
                 d_env: str, recipe: str) -> tuple[list[str], list[str]]:
    """`invoke status`'s cold-start section (per release: summary, then the current one's newest starts) and its
    warnings (starts that compiled: cache misses; starts refused or failed)."""
    lines = [f"  cold starts ({WINDOW}):"]
    warnings = []
    for i, release in enumerate(releases):
        rid = release.release_id
        lines.append(f"    {rid}: {summary_text(summary.get(rid))}")
        starts = recorded.get(rid, [])
        if i > 0:
            continue  # the releases before: their summary; what to act on is the current one's
        lines += [f"      {timeline.describe(r)}" for r in starts[:SHOWN_STARTS]]
        if missed := [r for r in starts if r.misses]:
            caches = Counter()
            for r in missed:
                caches.update({name: m.files for name, m in r.misses.items()})
            what = ", ".join(f"{name} {n} files" for name, n in sorted(caches.items()))
            warnings.append(f"  WARNING {rid}: {len(missed)} of {len(starts)} recorded start(s) compiled while "
                            f"starting (compile-cache misses: {what}); rerun `invoke compile --env {d_env} --recipe "
                            f"{recipe} --recompile` for this key")
        if refused := sum(r.outcome == "refused" for r in starts):
            warnings.append(f"  WARNING {rid}: {refused} start(s) refused to go ready on a cache miss "
                            "(startup.refuse_on_cache_miss): no replica serves until the compile stage is rerun")
    return lines, warnings
