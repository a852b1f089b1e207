"""Pinning: the exact commit of every model a deployment serves.

The download stage resolves an unpinned revision (a branch, a tag, or the draft model's unset revision, as in the
reference) to a commit and records it twice: on this machine (infra/control/state.py) and as a ref marker on the weights
Volume, so that compile, deploy and try on any machine serve the very bytes that were downloaded. This module reads
those records back; it never resolves anything against the Hub itself.
"""

from __future__ import annotations

from pydantic import ValidationError

from infra.control.state import StageState
from infra.runtime import weights
from infra.runtime.deployment import Deployment
from infra.runtime.errors import Refused
from infra.runtime.model import Stored
from infra.runtime.recipes.base import COMMIT_RE
from infra.runtime.remote import Remote

DOWNLOAD_STAGE = "download"


class RecordedDownload(Stored):
    """One repository of the download stage's Outcome (stages/download.py `Downloads` of weights.Downloaded) as the
    stage state keeps it: what pinning and `plan` read back."""

    repo: str
    commit: str
    size_bytes: int = 0


class RecordedDownloads(Stored):
    downloads: list[RecordedDownload] = []


def recorded_downloads(state: StageState) -> list[RecordedDownload]:
    """What the last successful download on this machine reported (nothing when it recorded another layout)."""
    entry = state.get(DOWNLOAD_STAGE)
    try:
        return RecordedDownloads.read(entry.result).downloads if entry else []
    except ValidationError:
        return []


def recorded(state: StageState) -> dict[str, str]:
    """repo -> commit, as the last successful download on this machine resolved them."""
    return {r.repo: r.commit for r in recorded_downloads(state)}


def pin(d: Deployment, state: StageState, remote: Remote | None, *, required: bool, say=print) -> Deployment:
    """`d` with unpinned revisions replaced by the commits the download stage resolved them to.

    From this machine's stage state when it has them, else (when `remote` is given) from the ref markers the download
    job left on the weights Volume. Environments that require pinned revisions refuse to go on without them; others warn
    and follow the branch. With `remote=None` (a dry run) nothing remote is read.
    """
    unpinned = {repo: ref for repo, ref in d.recipe.repositories() if not COMMIT_RE.match(ref)}
    if not unpinned:
        return d
    known = recorded(state)
    if remote is not None and any(repo not in known for repo in unpinned):
        remote.require_credentials()  # before the Volume read: a missing token is said without contacting Modal
    for repo, ref in unpinned.items():
        if repo not in known and remote is not None:
            raw = remote.read_file(d.modal.cache_environment, d.caches.weights_volume, weights.ref_relpath(repo, ref))
            if raw:
                known[repo] = raw.decode().strip()
    r = d.recipe
    pinned = d.with_recipe(r.with_revisions(
        model_revision=known.get(r.model) if r.model in unpinned else None,
        draft_revision=known.get(r.draft_model) if r.draft_model in unpinned else None,
    ))
    if problems := pinned.recipe.unpinned():
        where = "" if remote is not None else " (a dry run reads no Volume: the revision may be recorded there)"
        message = (f"{'; '.join(problems)} and no download resolved it{where}: "
                   f"run `invoke download --env {d.env} --recipe {r.name}`")
        if required and remote is not None:
            raise Refused(f"environment '{d.env}' requires pinned revisions: {message}")
        say(f"warning: {message}")
    return pinned
