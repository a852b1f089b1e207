"""Images and Mounts: what `modal.Image...build()` and `add_local_python_source` send, and what they get back.

What real Modal does, and the fake copies:
- `ImageGetOrCreate` names an image by its definition: the same layers (and base images) give
  the same image id, already built; a new one is built while the client follows it with
  `ImageJoinStreaming` (build logs, then a result). Every base image and Secret a layer names
  must exist.
- A Mount's files are uploaded by sha256 into a content store (`MountPutFile`, asked first
  whether the hash exists) and the Mount (`MountGetOrCreate`) lists paths and hashes; a hash
  the store lacks is refused. Modal's own client package is a global Mount found by name.

What the fake cannot tell: nothing is built. No Dockerfile command runs, no registry is
pulled, no package is installed; the build "succeeds" with the local Python's version in
its metadata. Build failures, image sizes and build times are real Modal's to reveal.
"""

from __future__ import annotations

import asyncio
import hashlib
import platform

from google.protobuf.timestamp_pb2 import Timestamp
from grpclib import GRPCError, Status
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import Image, Mount, content_id


def _metadata(builder_version: str) -> api_pb2.ImageMetadata:
    return api_pb2.ImageMetadata(
        python_version_info=f"Python {platform.python_version()}", image_builder_version=builder_version, workdir="/",
    )


def _success() -> api_pb2.GenericResult:
    return api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)


class ImagesMixin:
    async def ImageGetOrCreate(self, stream) -> None:
        request: api_pb2.ImageGetOrCreateRequest = await stream.recv_message()
        definition = request.image
        for base in definition.base_images:
            if base.image_id not in self.state.images:
                raise GRPCError(Status.NOT_FOUND, f"Image '{base.image_id}' not found")
        for secret_id in definition.secret_ids:
            if secret_id not in self.state.secrets:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{secret_id}' not found")
        image_id = content_id("im", definition.SerializeToString(deterministic=True), request.builder_version)
        image = self.state.images.get(image_id)
        if image is None or request.force_build:
            image = self.state.images[image_id] = Image(image_id, definition)
        response = api_pb2.ImageGetOrCreateResponse(image_id=image_id)
        if image.built:
            response.result.CopyFrom(image.result)
            response.metadata.CopyFrom(_metadata(request.builder_version))
        else:
            image.builder_version = request.builder_version
        await stream.send_message(response)

    async def ImageJoinStreaming(self, stream) -> None:
        """Build logs, then the result; the "build" is instant (see the module docstring)."""
        request: api_pb2.ImageJoinStreamingRequest = await stream.recv_message()
        if request.image_id not in self.state.images:
            raise GRPCError(Status.NOT_FOUND, f"Image '{request.image_id}' not found")
        image = self.state.images[request.image_id]
        commands = list(image.definition.dockerfile_commands)
        for n, command in enumerate(commands, 1):
            log = api_pb2.TaskLogs(data=f"[fake build] {command}\n", file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT)
            await stream.send_message(api_pb2.ImageJoinStreamingResponse(task_logs=[log], entry_id=str(n)))
            await asyncio.sleep(0)
        image.built, image.result = True, _success()
        await stream.send_message(api_pb2.ImageJoinStreamingResponse(
            result=image.result, metadata=_metadata(image.builder_version),
            entry_id=str(len(commands) + 1), eof=True,
        ))

    # ------------------------------------------------------------------ mounts

    async def MountBatchedCheckExistence(self, stream) -> None:
        request: api_pb2.MountBatchedCheckExistenceRequest = await stream.recv_message()
        checked = Timestamp()
        checked.GetCurrentTime()
        await stream.send_message(api_pb2.MountBatchedCheckExistenceResponse(
            missing_sha256_hex_hashes=[h for h in request.sha256_hex_hashes if h not in self.state.files],
            checked_at=checked,
        ))

    async def MountPutFile(self, stream) -> None:
        """Asked with a hash only: does the store have it? Sent with data (or a blob id): store it."""
        request: api_pb2.MountPutFileRequest = await stream.recv_message()
        if request.WhichOneof("data_oneof") == "data":
            self._store_file(request.sha256_hex, request.data)
        elif request.WhichOneof("data_oneof") == "data_blob_id":
            if request.data_blob_id not in self.state.blobs:
                raise GRPCError(Status.NOT_FOUND, f"Blob '{request.data_blob_id}' not found")
            self._store_file(request.sha256_hex, self.state.blobs[request.data_blob_id])
        checked = Timestamp()
        checked.GetCurrentTime()
        await stream.send_message(api_pb2.MountPutFileResponse(
            exists=request.sha256_hex in self.state.files, checked_at=checked,
        ))

    def _store_file(self, sha256_hex: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sha256_hex:
            raise GRPCError(Status.INVALID_ARGUMENT, f"content does not match sha256 {sha256_hex}")
        self.state.files[sha256_hex] = data

    async def MountGetOrCreate(self, stream) -> None:
        request: api_pb2.MountGetOrCreateRequest = await stream.recv_message()
        if request.namespace == api_pb2.DEPLOYMENT_NAMESPACE_GLOBAL and request.deployment_name and not request.files:
            # Modal's own client package, published by Modal for each client version.
            mount_id = content_id("mo", "global", request.deployment_name)
            self.state.mounts.setdefault(mount_id, Mount(mount_id, {}))
            await stream.send_message(api_pb2.MountGetOrCreateResponse(mount_id=mount_id))
            return
        files = {}
        for f in request.files:
            if f.sha256_hex not in self.state.files:
                raise GRPCError(Status.FAILED_PRECONDITION, f"Mount file {f.filename}: content {f.sha256_hex} was "
                                                            "never uploaded")
            files[f.filename] = f.sha256_hex
        checksum = content_id("mo", *sorted(f"{p}={h}" for p, h in files.items()))
        self.state.mounts[checksum] = Mount(checksum, files)
        await stream.send_message(api_pb2.MountGetOrCreateResponse(
            mount_id=checksum, handle_metadata=api_pb2.MountHandleMetadata(content_checksum_sha256_hex=checksum[3:]),
        ))
