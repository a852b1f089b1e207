"""Release manifests: what runs in each environment, where every teammate and CI job sees the same thing.

One JSON document per environment and recipe, `releases/<recipe>.json` on the `releases_volume` in that
environment's Modal Environment. A Volume, not a Dict: Modal Dict entries expire after 7 days without access, and a
prod release that nobody touched for a week must still be on record. Writes replace the whole document in one upload
(readers see the old or the new one), and happen under a lock (a Modal Dict entry created only if absent), so two
promotions cannot interleave; the second is refused.

Manifests hold resolved settings with secrets masked: they never contain a token, only the names of Modal Secrets.
Reading what another version of this package wrote: unknown keys are tolerated when reading (a newer version's
fields), forbidden when writing; fields added since take their defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, computed_field, model_validator

from infra.control import coldstarts
from infra.control.bake_policy import Bake
from infra.perf.bench import BenchReport
from infra.perf.gate import CiRun, GateRecord, local_user
from infra.perf.smoketest import SmokeResult
from infra.runtime import timeline
from infra.runtime.acceptance import AcceptanceRun
from infra.runtime.deployment import Deployment, startup_lifted
from infra.runtime.errors import ConfigError, Refused
from infra.runtime.model import Stored
from infra.runtime.remote import Remote
from infra.runtime.secrets import scrub

HISTORY_LIMIT = 50
LOCK_TTL_SECONDS = 3 * 60 * 60  # longer than any deploy + smoke; a crashed holder's lock then expires


# ---------------------------------------------------------------- the records


class Origin(Stored):
    """Where a promoted release came from."""

    env: str
    release_id: str
    commit: str | None = None
    version: int | None = None


class Release(Stored):
    """One deploy, promotion or rollback of one recipe in one environment. What can be derived from its deployment
    (environment, recipe, app, image, model and revisions) is, not stored twice; `model_dump` shows it (computed)."""

    release_id: str
    kind: str  # deploy | promote | rollback
    commit: str
    dirty: bool
    tag: str | None
    deployment: Deployment  # the resolved Deployment (no secret values exist in it)
    version: int | None = None
    url: str | None = None
    app_id: str | None = None
    deployed_at: float = Field(default_factory=time.time)
    deployed_by: str = Field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    smoke: SmokeResult | None = None
    promoted_from: Origin | None = None
    rolled_back_to: int | None = None
    note: str | None = None
    # A rollback entry keeps the gate record of the release it returns to: same bits, same figures.
    gate: GateRecord | None = None
    measurement: BenchReport | None = None  # the gate workload measured on this environment after going live
    # Its server containers' cold starts (infra/control/coldstarts.py), summarised when the next release replaced it:
    # the live records expire on Modal after a week, this stays. None while it is current.
    cold_starts: timeline.StartSummary | None = None
    # The bake's verdict after it was promoted. None: not promoted, or promoted before bakes existed.
    bake: Bake | None = None
    # `invoke gpu-test` (stages/gpu_test.py) against what this release runs, per shape (tiny, real, model).
    acceptance: dict[str, AcceptanceRun] | None = None
    _recorded_digest: str | None = PrivateAttr(default=None)

    # ------------------------------------------------ older layouts, one function each (oldest first)

    @staticmethod
    def upgrade_flat_deployment(release: dict[str, Any]) -> dict[str, Any]:
        """Layout 1 (03f1f1d, 2026-11-22): `deployment` was one flat mapping (`deployment.gpu_type`, `recipe` a name,
        `app_name` and `modal_environment` beside them). Each key goes to the section that declares it now; the recipe's
        description and source, which it did not record, say so. tests/fixtures/manifests/v1_flat_deployment.json."""
        d = release["deployment"]
        sections = {name: {k: d[k] for k in field.annotation.model_fields if k in d}
                    for name, field in Deployment.model_fields.items()
                    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}
        unrecorded = "not recorded (a release manifest of the flat deployment layout)"
        sections["recipe"] |= {"name": d["recipe"], "description": unrecorded, "source": unrecorded}
        sections["modal"] |= {"environment": d.get("modal_environment"),
                              "app_prefix": Release._app_prefix(d["app_name"], d["recipe"])}
        return release | {"deployment": {"env": d["env"], "gpu_snapshot": d.get("gpu_snapshot", False), **sections}}

    @staticmethod
    def upgrade_modal_app_name(release: dict[str, Any]) -> dict[str, Any]:
        """Layout 2 (3e8a76f to 3d632f2, 2026-11-23 to 2026-12-01): the nested deployment kept the app's whole name in
        `modal.app_name`; the prefix it was made from is what is deployed now.
        tests/fixtures/manifests/v2_gate_dicts.json."""
        d = release["deployment"]
        modal = dict(d["modal"])
        modal.setdefault("app_prefix", Release._app_prefix(modal.pop("app_name"), d["recipe"]["name"]))
        return release | {"deployment": d | {"modal": modal}}

    @staticmethod
    def upgrade_startup_section(release: dict[str, Any]) -> dict[str, Any]:
        """Layouts 1 to 3 (to issue 29): the deployment's `gpu_snapshot` and `refuse_on_cache_miss` sat beside its
        parts; they are its [startup] part now. Every fixture in tests/fixtures/manifests/ has them there."""
        return release | {"deployment": startup_lifted(release["deployment"])}

    @staticmethod
    def _app_prefix(app_name: str, recipe: str) -> str:
        return app_name.removesuffix("-" + recipe.replace(".", "-"))

    @staticmethod
    def _upgrade(release: dict[str, Any]) -> dict[str, Any]:
        """Each older layout the entry is in, upgraded by its own function, oldest first."""
        d = release.get("deployment")
        if isinstance(d, dict) and isinstance(d.get("recipe"), str):
            release = Release.upgrade_flat_deployment(release)
            d = release["deployment"]
        if isinstance(d, dict) and isinstance(d.get("modal"), dict) and "app_name" in d["modal"]:
            release = Release.upgrade_modal_app_name(release)
        if isinstance(release.get("deployment"), dict):
            release = Release.upgrade_startup_section(release)
        return release

    @model_validator(mode="wrap")
    @classmethod
    def _from_any_layout(cls, data: Any, handler) -> Release:
        if not isinstance(data, dict):
            return handler(data)
        release = handler(cls._upgrade(data))
        if isinstance(data.get("deployment"), dict):
            release._recorded_digest = timeline.deployment_digest(data["deployment"])
        return release

    @property
    def deployment_digest(self) -> str:
        """What its containers filed their starts under: the digest of the deployment as recorded (the container hashed
        that very JSON), not as this version would write it (infra/runtime/timeline.py `deployment_digest`)."""
        return self._recorded_digest or timeline.deployment_digest(self.deployment.to_dict())

    # Derived from the deployment, not stored (manifests that stored them still read); `model_dump` shows them, as
    # `invoke status --json` always did.
    env = computed_field(property(attrgetter("deployment.env")), return_type=str)
    recipe = computed_field(property(attrgetter("deployment.recipe.name")), return_type=str)
    app_name = computed_field(property(attrgetter("deployment.app_name")), return_type=str)
    modal_environment = computed_field(property(attrgetter("deployment.modal.environment")), return_type=str | None)
    image = computed_field(property(attrgetter("deployment.recipe.sglang_image")), return_type=str)
    model = computed_field(property(attrgetter("deployment.recipe.model")), return_type=str)
    model_revision = computed_field(property(attrgetter("deployment.recipe.model_revision")), return_type=str)
    draft_model = computed_field(property(attrgetter("deployment.recipe.draft_model")), return_type=str | None)
    draft_revision = computed_field(property(attrgetter("deployment.recipe.draft_revision")), return_type=str | None)

    @property
    def smoke_passed(self) -> bool:
        return bool(self.smoke and self.smoke.passed)

    def summary(self) -> str:
        smoke = "smoke passed" if self.smoke_passed else ("smoke FAILED" if self.smoke else "not smoke-tested")
        dirty = "-dirty" if self.dirty else ""
        version = f"v{self.version}" if self.version else "v?"
        origin = f", promoted from {self.promoted_from.env}" if self.promoted_from else ""
        return (
            f"{self.release_id} {version} {self.kind} of {self.commit[:12]}{dirty} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.deployed_at))}Z by {self.deployed_by}: "
            f"{smoke}{origin}"
        )


def _user() -> str:
    return CiRun.of().actor or local_user()


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


class Stopped(Stored):
    """`invoke stop` took the recipe's apps down: when, by whom, which. The next release (a deploy, promotion or
    rollback: `ReleaseStore.record`) starts them again and clears it."""

    at: float = Field(default_factory=time.time)
    by: str = Field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    apps: list[str]  # "<name> (<app id>)"
    release_id: str | None = None  # the current release when it was stopped


class Manifest(Stored):
    env: str
    recipe: str
    current: Release | None = None
    history: list[Release] = Field(default_factory=list)  # newest first, current included
    revision: int = 0
    stopped: Stopped | None = None  # set by `invoke stop` until the next release

    def to_json(self) -> str:
        """Strict: what this version writes, without the fields a release derives from its deployment."""
        return scrub(json.dumps(self.model_dump(mode="json", exclude_computed_fields=True), indent=1, sort_keys=True))

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "a release manifest") -> Manifest:
        """Tolerant: keys a newer version wrote are ignored; older layouts are upgraded (`Release`); one line if not."""
        try:
            return cls.read_json(text)
        except ValidationError as err:
            first = err.errors()[0]
            raise ConfigError(f"{where} cannot be read: {'.'.join(map(str, first['loc']))}: {first['msg']} (written by "
                              "a layout this version does not know; allowed: the layouts infra/perf/releases.py "
                              "upgrades)") from None

    def previous(self) -> Release | None:
        return self.history[1] if len(self.history) > 1 else None


class LockEntry(Stored):
    """Who holds a release lock (infra/runtime/remote.py `acquire_lock` writes it), as a refusal names them."""

    holder: str | None = None
    since: float = 0


class ReleaseStore:
    """Reads and writes one environment's manifests through the Modal boundary."""

    def __init__(self, remote: Remote):
        self.remote = remote

    @staticmethod
    def _path(recipe: str) -> str:
        return f"releases/{recipe}.json"

    def read(self, d: Deployment) -> Manifest:
        raw = self.remote.read_file(d.modal.environment, d.caches.releases_volume, self._path(d.recipe.name))
        where = f"releases/{d.recipe.name}.json on Volume {d.caches.releases_volume} ({d.modal.environment})"
        return Manifest.from_json(raw, where) if raw else Manifest(env=d.env, recipe=d.recipe.name)

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
        history = [r for r in manifest.history if r.release_id != release.release_id]
        if (replaced := manifest.current) is not None and replaced.cold_starts is None:
            summary = self._cold_starts(d, replaced, release.deployed_at, manifest.history)
            history = [r.model_copy(update={"cold_starts": summary}) if r.release_id == replaced.release_id else r
                       for r in history]
        updated = Manifest(env=manifest.env, recipe=manifest.recipe, current=release,
                           history=([release] + history)[:HISTORY_LIMIT], revision=manifest.revision)
        return self.write(d, updated, manifest.revision)

    def _cold_starts(self, d: Deployment, release: Release, replaced_at: float,
                     history: list[Release]) -> timeline.StartSummary | None:
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
        held = self.remote.acquire_lock(d.modal.environment, name, holder, LOCK_TTL_SECONDS)
        if held is not None:
            other = LockEntry.read(held)
            raise Refused(
                f"{action} refused: another release operation on {name} is in progress ({other.holder}, since "
                f"{time.strftime('%H:%M:%S', time.gmtime(other.since))}Z); nothing changed, retry when it finishes"
            )
        try:
            yield holder
        finally:
            self.remote.release_lock(d.modal.environment, name, holder)
