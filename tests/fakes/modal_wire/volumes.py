"""Volumes: lookup and creation by name, files written in one batch and read back, in both Volume versions.

What real Modal does, and the fake copies:
- `VolumeGetOrCreate` finds a Volume by name in one Environment; it creates one only when asked
  (`create_if_missing=True`); otherwise an unknown name is NOT_FOUND. The response says which
  filesystem version the Volume has, and the client picks its upload protocol from that:
  - v1: each file's content goes to the content store by sha256 (`MountPutFile`, see images.py),
    then `VolumePutFiles` lists path, hash and mode.
  - v2: `VolumePutFiles2` lists each file's 8 MiB blocks by sha256; the server answers with the
    blocks it lacks and an HTTP URL for each; the client PUTs them there and repeats the call
    with the PUT responses. Nothing is visible until the whole batch is in.
- Reads are `VolumeGetFile2` in both versions: the server answers with one HTTP URL per block,
  which the client GETs. A path that is not a file is NOT_FOUND (the client raises FileNotFoundError).
- `disallow_overwrite_existing_files` (a batch upload without `force=True`) refuses to replace a
  file with ALREADY_EXISTS.

Files are kept as real files under `<root>/volumes/<environment>/<name>/`, replaced atomically,
so readers see the old or the new content; the job bodies the fake runs use those directories
as their caches. Commits, reloads and background commits are not modelled (a container's
writes are visible at once).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from google.protobuf.empty_pb2 import Empty
from grpclib import GRPCError, Status
from modal._utils.blob_utils import BLOCK_SIZE
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import NAME_RE, Volume, new_id

DEFAULT_VOLUME_VERSION = api_pb2.VOLUME_FS_VERSION_V2


def _inside(volume: Volume, path: str) -> Path:
    """The local path of a file in the Volume; a path that escapes it is INVALID_ARGUMENT."""
    relative = PurePosixPath("/" + path.lstrip("/"))
    if ".." in relative.parts:
        raise GRPCError(Status.INVALID_ARGUMENT, f"invalid path {path!r}")
    return volume.root.joinpath(*relative.parts[1:])


def _write(target: Path, data: bytes, mode: int | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.upload")
    tmp.write_bytes(data)
    if mode:
        os.chmod(tmp, mode & 0o777)
    os.replace(tmp, target)


class VolumesMixin:
    async def VolumeGetOrCreate(self, stream) -> None:
        request: api_pb2.VolumeGetOrCreateRequest = await stream.recv_message()
        environment = self.state.environment(request.environment_name)
        if not NAME_RE.match(request.deployment_name):
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid Volume name {request.deployment_name!r}")
        volume = next((v for v in self.state.volumes.values()
                       if v.environment == environment and v.name == request.deployment_name), None)
        if volume is None:
            if request.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"Volume '{request.deployment_name}' not found in environment "
                                                  f"'{environment}'")
            version = request.version or self.wire.volume_version or DEFAULT_VOLUME_VERSION
            root = self.state.root / "volumes" / environment / request.deployment_name
            root.mkdir(parents=True, exist_ok=True)
            volume = Volume(new_id("vo"), environment, request.deployment_name, version, root)
            self.state.volumes[volume.volume_id] = volume
        await stream.send_message(api_pb2.VolumeGetOrCreateResponse(
            volume_id=volume.volume_id, version=volume.version,
            metadata=api_pb2.VolumeMetadata(version=volume.version, name=volume.name),
        ))

    # ------------------------------------------------------------------ reading

    async def VolumeGetFile2(self, stream) -> None:
        """One URL per block of the file as it is now (the blocks are content-addressed, so a later write
        does not change what this read returns)."""
        request: api_pb2.VolumeGetFile2Request = await stream.recv_message()
        volume = self.state.volume(request.volume_id)
        target = _inside(volume, request.path)
        if not target.is_file():
            raise GRPCError(Status.NOT_FOUND, f"No such file: {request.path}")
        data = target.read_bytes()
        start = request.start
        end = len(data) if not request.len else min(len(data), start + request.len)
        urls = []
        for block_start in range(start - start % BLOCK_SIZE, end, BLOCK_SIZE):
            block = data[block_start:block_start + BLOCK_SIZE]
            sha = hashlib.sha256(block).hexdigest()
            self.state.blocks[sha] = block
            lo, hi = max(start, block_start) - block_start, min(end, block_start + BLOCK_SIZE) - block_start
            urls.append(f"{self.wire.http_url}/block/get/{sha}/{lo}/{hi - lo}")
        await stream.send_message(api_pb2.VolumeGetFile2Response(
            get_urls=urls, size=len(data), start=start, len=end - start,
        ))

    # ------------------------------------------------------------------ writing, v1

    async def VolumePutFiles(self, stream) -> None:
        request: api_pb2.VolumePutFilesRequest = await stream.recv_message()
        volume = self.state.volume(request.volume_id)
        if volume.version == api_pb2.VOLUME_FS_VERSION_V2:
            raise GRPCError(Status.FAILED_PRECONDITION, "VolumePutFiles on a v2 Volume (use VolumePutFiles2)")
        writes = []
        for f in request.files:
            if f.sha256_hex not in self.state.files:
                raise GRPCError(Status.FAILED_PRECONDITION, f"{f.filename}: content {f.sha256_hex} was never uploaded")
            writes.append((_inside(volume, f.filename), self.state.files[f.sha256_hex], f.mode if f.HasField("mode")
                           else None))
        self._write_batch(writes, request.disallow_overwrite_existing_files)
        await stream.send_message(Empty())

    # ------------------------------------------------------------------ writing, v2

    async def VolumePutFiles2(self, stream) -> None:
        request: api_pb2.VolumePutFiles2Request = await stream.recv_message()
        volume = self.state.volume(request.volume_id)
        if volume.version != api_pb2.VOLUME_FS_VERSION_V2:
            raise GRPCError(Status.FAILED_PRECONDITION, "VolumePutFiles2 on a v1 Volume (use VolumePutFiles)")
        missing = []
        for file_index, f in enumerate(request.files):
            for block_index, block in enumerate(f.blocks):
                sha = block.contents_sha256.hex()
                if sha not in self.state.blocks:
                    missing.append(api_pb2.VolumePutFiles2Response.MissingBlock(
                        file_index=file_index, block_index=block_index, put_url=f"{self.wire.http_url}/block/put/{sha}",
                    ))
                elif block.HasField("put_response") and block.put_response != f"stored:{sha}".encode():
                    raise GRPCError(Status.INVALID_ARGUMENT, f"{f.path}: block {block_index} has a put_response the "
                                                             "server never gave")
        if missing:
            await stream.send_message(api_pb2.VolumePutFiles2Response(missing_blocks=missing))
            return
        writes = []
        for f in request.files:
            data = b"".join(self.state.blocks[b.contents_sha256.hex()] for b in f.blocks)[: f.size]
            if len(data) != f.size:
                raise GRPCError(Status.INVALID_ARGUMENT, f"{f.path}: blocks hold {len(data)} bytes, size says {f.size}")
            writes.append((_inside(volume, f.path), data, f.mode if f.HasField("mode") else None))
        self._write_batch(writes, request.disallow_overwrite_existing_files)
        await stream.send_message(api_pb2.VolumePutFiles2Response())

    def _write_batch(self, writes: list[tuple[Path, bytes, int | None]], disallow_overwrite: bool) -> None:
        if disallow_overwrite:
            for target, _, _ in writes:
                if target.exists():
                    raise GRPCError(Status.ALREADY_EXISTS, f"{target.name}: file already exists")
        for target, data, mode in writes:
            _write(target, data, mode)
