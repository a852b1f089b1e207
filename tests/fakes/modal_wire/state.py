"""What the fake control plane remembers: one plain object per Modal object, all held by `WireState`.

Every RPC handler runs on the server's one event loop, so a handler's changes are
atomic between its `await`s, as a real server's are per request. Volume contents
live on local disk (a directory per Volume) so that job bodies run by the fake can
use them as their caches, exactly as a container sees a mounted Volume.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from pathlib import Path

from grpclib import GRPCError, Status
from modal_proto import api_pb2

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A fresh object id shaped like Modal's (prefix, dash, 22 alphanumerics: `ap-...` ids are matched by the CLI)."""
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def content_id(prefix: str, *parts: bytes | str) -> str:
    """An id derived from content: Modal reuses an image or mount whose definition it already has."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    number = int.from_bytes(digest.digest(), "big")
    chars = []
    for _ in range(22):
        number, rest = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[rest])
    return f"{prefix}-" + "".join(chars)


NAME_RE = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")


@dataclass
class Version:
    """One row of an App's deployment history (what `AppDeploymentHistory` returns)."""

    version: int
    deployed_at: float
    tag: str
    client_version: str
    commit_info: api_pb2.CommitInfo | None
    function_ids: dict[str, str]
    class_ids: dict[str, str]
    definition_ids: dict[str, str]
    tags: dict[str, str]
    rollback_version: int = 0


@dataclass
class LogLine:
    """One line a container of an App wrote (what AppFetchLogs, AppCountLogs and AppGetLogs serve)."""

    entry_id: str  # increasing per App: AppGetLogs resumes after the last one a client saw
    at: float  # epoch seconds
    text: str
    file_descriptor: int = api_pb2.FILE_DESCRIPTOR_STDOUT
    task_id: str = "ta-fake"


@dataclass
class App:
    app_id: str
    environment: str
    description: str
    state: int  # api_pb2.AppState
    name: str = ""  # the deployment name, once published as deployed
    tags: dict[str, str] = field(default_factory=dict)
    history: list[Version] = field(default_factory=list)  # oldest first
    live_version: int = 0
    function_ids: dict[str, str] = field(default_factory=dict)  # of the ephemeral run, or the live version
    class_ids: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    heartbeats: int = 0
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stopped_at: float = 0.0
    logs: list[LogLine] = field(default_factory=list)  # oldest first
    running_tasks: int = 0  # containers a test says are up (AppList's n_running_tasks)

    @property
    def live(self) -> Version | None:
        return next((v for v in self.history if v.version == self.live_version), None)


@dataclass
class Function:
    function_id: str
    app_id: str
    tag: str
    definition: api_pb2.Function | None = None
    definition_id: str = ""
    function_type: int = api_pb2.Function.FUNCTION_TYPE_FUNCTION
    autoscaler_override: api_pb2.AutoscalerSettings = field(default_factory=api_pb2.AutoscalerSettings)


@dataclass
class FunctionCall:
    call_id: str
    function_id: str
    outputs: list[api_pb2.FunctionGetOutputsItem] = field(default_factory=list)
    expected: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Volume:
    volume_id: str
    environment: str
    name: str
    version: int  # api_pb2.VolumeFsVersion
    root: Path


@dataclass
class Dict:
    dict_id: str
    environment: str
    name: str
    entries: dict[bytes, bytes] = field(default_factory=dict)  # serialized key -> serialized value


@dataclass
class Secret:
    secret_id: str
    environment: str
    name: str  # "" for an anonymous Secret (`Secret.from_dict`, a Function's `env=`)
    values: dict[str, str]


@dataclass
class Image:
    image_id: str
    definition: api_pb2.Image
    builder_version: str = ""
    built: bool = False
    result: api_pb2.GenericResult | None = None


@dataclass
class Mount:
    mount_id: str
    files: dict[str, str]  # remote path -> sha256


@dataclass
class WireState:
    root: Path
    environments: set[str]
    default_environment: str
    apps: dict[str, App] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    calls: dict[str, FunctionCall] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    dicts: dict[str, Dict] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    mounts: dict[str, Mount] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # the mount file store, by sha256
    blobs: dict[str, bytes] = field(default_factory=dict)
    blocks: dict[str, bytes] = field(default_factory=dict)  # Volume v2 blocks, by sha256 hex
    definitions: dict[str, api_pb2.Function] = field(default_factory=dict)  # by definition id

    def environment(self, name: str) -> str:
        """The Environment a request names ("" is the workspace default); NOT_FOUND for one never created."""
        name = name or self.default_environment
        if name not in self.environments:
            raise GRPCError(Status.NOT_FOUND, f"Environment '{name}' not found")
        return name

    def app(self, app_id: str) -> App:
        if app_id not in self.apps:
            raise GRPCError(Status.NOT_FOUND, f"App '{app_id}' not found")
        return self.apps[app_id]

    def deployed_app(self, environment: str, name: str) -> App | None:
        return next(
            (a for a in self.apps.values() if a.environment == environment and a.name == name
             and a.state == api_pb2.APP_STATE_DEPLOYED),
            None,
        )

    def function(self, function_id: str) -> Function:
        if function_id not in self.functions:
            raise GRPCError(Status.NOT_FOUND, f"Function '{function_id}' not found")
        return self.functions[function_id]

    def live_definition(self, function: Function) -> api_pb2.Function | None:
        """The definition in force: the live version's for a deployed App (a rollback brings an old one back)."""
        live = self.apps[function.app_id].live
        if live is not None and function.function_id in live.definition_ids:
            return self.definitions[live.definition_ids[function.function_id]]
        return function.definition

    def volume(self, volume_id: str) -> Volume:
        if volume_id not in self.volumes:
            raise GRPCError(Status.NOT_FOUND, f"Volume '{volume_id}' not found")
        return self.volumes[volume_id]

    def named_secret(self, environment: str, name: str) -> Secret | None:
        return next((s for s in self.secrets.values() if s.environment == environment and s.name == name), None)

    def define(self, definition: api_pb2.Function) -> str:
        """The definition id of a Function definition: the same definition, the same id.

        The client lists a Function's Mounts in no fixed order (they resolve concurrently), so
        their order does not count.
        """
        canonical = api_pb2.Function()
        canonical.CopyFrom(definition)
        canonical.ClearField("mount_ids")
        canonical.mount_ids.extend(sorted(definition.mount_ids))
        definition_id = content_id("de", canonical.SerializeToString(deterministic=True))
        self.definitions[definition_id] = definition
        return definition_id

    def dict(self, dict_id: str) -> Dict:
        if dict_id not in self.dicts:
            raise GRPCError(Status.NOT_FOUND, f"Dict '{dict_id}' not found")
        return self.dicts[dict_id]
