"""Release manifests: what runs in each environment, where every teammate and CI job sees the same thing.

One JSON document per environment and recipe, `releases/<recipe>.json` on the
`releases_volume` in that environment's Modal Environment. A Volume, not a Dict:
Modal Dict entries expire after 7 days without access, and a prod release that
nobody touched for a week must still be on record. Writes replace the whole
document in one upload (readers see the old or the new one), and happen under a
lock (a Modal Dict entry created only if absent), so two promotions cannot
interleave; the second is refused.

Manifests hold resolved settings with secrets masked: they never contain a token,
only the names of Modal Secrets. Reading what another version of this package wrote:
unknown keys are tolerated when reading (a newer version's fields), forbidden when
writing; fields added since take their defaults.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from infra.control import coldstarts
from infra.control.bake_policy import Bake
from infra.runtime.deployment import Deployment
from infra.runtime.errors import Refused
from infra.runtime.remote import Remote
from infra.runtime.secrets import scrub

HISTORY_LIMIT = 50
LOCK_TTL_SECONDS = 3 * 60 * 60  # longer than any deploy + smoke; a crashed holder's lock then expires


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_id: str
    env: str
    recipe: str
    kind: str  # deploy | promote | rollback
    commit: str
    dirty: bool
    tag: str
    app_name: str
    modal_environment: str
    image: str
    model: str
    model_revision: str
    draft_model: str | None
    draft_revision: str | None
    deployment: dict  # the resolved Deployment (no secret values exist in it)
    version: int | None = None
    url: str | None = None
    app_id: str | None = None
    deployed_at: float = Field(default_factory=time.time)
    deployed_by: str = Field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    smoke: dict | None = None  # {"passed": bool, "ttft": s, "total": s, "at": t, "error": "..."}
    promoted_from: dict | None = None  # {"env": "staging", "release_id": "..."}
    rolled_back_to: int | None = None
    note: str | None = None
    # The promotion gate's record (infra/perf/gate.py `record`): verdict, measurement on the source, the table, or the
    # override that skipped it. A rollback entry keeps the one of the release it returns to: same bits, same figures.
    gate: dict | None = None
    measurement: dict | None = None  # the gate workload measured on this environment after going live (record_baseline)
    # Its server containers' cold starts (infra/control/coldstarts.py), summarised when the next release replaced it:
    # the live records expire on Modal after a week, this stays. None while it is current.
    cold_starts: dict | None = None
    # The bake's verdict after it was promoted (infra/control/bake_policy.py): kept, rolled back and why, interrupted,
    # or off with who and why. None: not promoted, or promoted before bakes existed.
    bake: Bake | None = None
    # The GPU acceptance suite run against what this release runs (`invoke gpu-test`, stages/gpu_test.py): per shape
    # (tiny, real, model) its verdict, every test's outcome, the numbers it measured, the GPU and SGLang it ran on.
    acceptance: dict | None = None

    @property
    def smoke_passed(self) -> bool:
        return bool(self.smoke and self.smoke.get("passed"))

    def summary(self) -> str:
        smoke = "smoke passed" if self.smoke_passed else ("smoke FAILED" if self.smoke else "not smoke-tested")
        dirty = "-dirty" if self.dirty else ""
        version = f"v{self.version}" if self.version else "v?"
        origin = f", promoted from {self.promoted_from['env']}" if self.promoted_from else ""
        return (
            f"{self.release_id} {version} {self.kind} of {self.commit[:12]}{dirty} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.deployed_at))}Z by {self.deployed_by}: "
            f"{smoke}{origin}"
        )


def _user() -> str:
    try:
        return os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except Exception:  # no passwd entry in some CI containers
        return "unknown"


def new_release_id() -> str:
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:6]


def rollback_entry(target: Release, version: int | None, note: str) -> Release:
    """The manifest entry for a rollback: what `target` ran, recorded as a new version of its own."""
    return target.model_copy(update=dict(
        release_id=new_release_id(), kind="rollback", version=version, rolled_back_to=target.version,
        deployed_at=time.time(), promoted_from=None, note=note,
        cold_starts=None,  # its own starts, not the ones `target` had: summarised when it is replaced in turn
        bake=None,  # a rollback is not baked; the verdict that caused it stays on the release it replaced
    ))


class Stopped(BaseModel):
    """`invoke stop` took the recipe's apps down: when, by whom, which. The next release (a deploy, promotion or
    rollback: `ReleaseStore.record`) starts them again and clears it."""

    model_config = ConfigDict(extra="forbid")

    at: float = Field(default_factory=time.time)
    by: str = Field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    apps: list[str]  # "<name> (<app id>)"
    release_id: str | None = None  # the current release when it was stopped


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env: str
    recipe: str
    current: Release | None = None
    history: list[Release] = Field(default_factory=list)  # newest first, current included
    revision: int = 0
    stopped: Stopped | None = None  # set by `invoke stop` until the next release

    def to_json(self) -> str:
        return scrub(json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.model_validate_json(text, extra="ignore")

    def previous(self) -> Release | None:
        return self.history[1] if len(self.history) > 1 else None


class ReleaseStore:
    """Reads and writes one environment's manifests through the Modal boundary."""

    def __init__(self, remote: Remote):
        self.remote = remote

    @staticmethod
    def _path(recipe: str) -> str:
        return f"releases/{recipe}.json"

    def read(self, d: Deployment) -> Manifest:
        raw = self.remote.read_file(d.modal.environment, d.caches.releases_volume, self._path(d.recipe.name))
        return Manifest.from_json(raw.decode()) if raw else Manifest(env=d.env, recipe=d.recipe.name)

    def write(self, d: Deployment, manifest: Manifest, expected_revision: int) -> Manifest:
        """Write `manifest` if nobody wrote since `expected_revision` (checked under the lock)."""
        latest = self.read(d)
        if latest.revision != expected_revision:
            raise Refused(
                f"release manifest for {d.env}/{d.recipe.name} changed while we worked "
                f"(revision {expected_revision} -> {latest.revision}); nothing recorded, re-run to see the new state"
            )
        manifest.revision = expected_revision + 1
        self.remote.write_file(d.modal.environment, d.caches.releases_volume, self._path(d.recipe.name),
                               manifest.to_json().encode())
        return manifest

    def record(self, d: Deployment, manifest: Manifest, release: Release) -> Manifest:
        """Make `release` current, keeping a bounded history; the release it replaces keeps its cold-start summary."""
        expected = manifest.revision
        history = [r for r in manifest.history if r.release_id != release.release_id]
        if (replaced := manifest.current) is not None and replaced.cold_starts is None:
            summary = self._cold_starts(d, replaced, release.deployed_at, manifest.history)
            history = [r.model_copy(update={"cold_starts": summary}) if r.release_id == replaced.release_id else r
                       for r in history]
        updated = Manifest(
            env=manifest.env,
            recipe=manifest.recipe,
            current=release,
            history=([release] + history)[:HISTORY_LIMIT],
            revision=manifest.revision,
        )
        return self.write(d, updated, expected)

    def _cold_starts(self, d: Deployment, release: Release, replaced_at: float, history: list[Release]) -> dict | None:
        """The replaced release's cold starts, summarised; None (and a deploy that goes on) when they cannot be read."""
        try:
            return coldstarts.frozen_summary(self.remote, d.modal.environment, release, replaced_at, history)
        except Exception as err:  # noqa: BLE001 - a summary is never a reason to fail a release
            print(f"warning: the cold starts of {release.release_id} could not be read ({type(err).__name__}: {err}); "
                  "its manifest entry keeps none", file=sys.stderr)
            return None

    def update_current(self, d: Deployment, manifest: Manifest, **changes) -> Manifest:
        """Amend the current release (e.g. its smoke result) in place."""
        assert manifest.current is not None
        for key, value in changes.items():
            setattr(manifest.current, key, value)
        manifest.history = [manifest.current] + [r for r in manifest.history
                                                 if r.release_id != manifest.current.release_id]
        return self.write(d, manifest, manifest.revision)

    def endpoint(self, d: Deployment) -> str | None:
        """The deployed endpoint's URL: what the current release recorded, else what Modal reports for the app."""
        current = self.read(d).current
        return (current.url if current else None) or self.remote.server_url(d)

    @contextlib.contextmanager
    def locked(self, d: Deployment, action: str) -> Iterator[str]:
        """Hold the release lock of this environment and recipe; refuse if someone else does."""
        name = f"{d.env}/{d.recipe.name}"
        holder = f"{action} by {_user()}@{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        current = self.remote.acquire_lock(d.modal.environment, name, holder, LOCK_TTL_SECONDS)
        if current is not None:
            since = time.strftime("%H:%M:%S", time.gmtime(current.get("since", 0)))
            raise Refused(
                f"{action} refused: another release operation on {name} is in progress "
                f"({current.get('holder')}, since {since}Z); nothing changed, retry when it finishes"
            )
        try:
            yield holder
        finally:
            self.remote.release_lock(d.modal.environment, name, holder)
