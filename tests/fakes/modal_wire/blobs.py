"""The blob store and its HTTP side: large uploads, and the block URLs of Volume reads and v2 uploads.

What real Modal does, and the fake copies:
- `BlobCreate` hands out a blob id and a presigned upload URL (S3-style, one per storage
  provider); the client PUTs the bytes there and checks the returned `ETag` against its own
  MD5. Anything of `LARGE_FILE_LIMIT` (4 MiB) or more goes this way (a v1 Volume's big files,
  large Function arguments), then travels by blob id. (Downloads of blobs, `BlobGet`, happen only
  for outputs of 2 MiB or more, which the project's jobs never return: not served.)
- Volume blocks are fetched with plain GETs of the URLs `VolumeGetFile2` returned, and v2
  uploads PUT each missing block to the URL `VolumePutFiles2` returned; the server keeps
  blocks by sha256 and the PUT's response body goes back in the next `VolumePutFiles2`.

The fake serves these on one local HTTP port (`ModalWire.http_url`); multipart uploads
(objects of 1 GiB or more) are not offered.
"""

from __future__ import annotations

import base64
import hashlib

from aiohttp import web
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import new_id


class BlobsMixin:
    async def BlobCreate(self, stream) -> None:
        request: api_pb2.BlobCreateRequest = await stream.recv_message()
        blob_id = new_id("bl")
        self.wire.pending_blobs[blob_id] = request
        await stream.send_message(api_pb2.BlobCreateResponse(
            blob_ids=[blob_id], upload_urls=api_pb2.UploadUrlList(items=[f"{self.wire.http_url}/blob/{blob_id}"]),
        ))

    # ------------------------------------------------------------------ HTTP

    def http_routes(self) -> list[web.RouteDef]:
        return [
            web.put("/blob/{blob_id}", self._put_blob),
            web.get("/block/get/{sha}/{start}/{length}", self._get_block),
            web.put("/block/put/{sha}", self._put_block),
        ]

    async def _put_blob(self, request: web.Request) -> web.Response:
        blob_id = request.match_info["blob_id"]
        created = self.wire.pending_blobs.pop(blob_id, None)
        data = await request.read()
        if created is None:
            return web.Response(status=403, text="no such upload URL")
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if created.content_sha256_base64 and digest != created.content_sha256_base64:
            return web.Response(status=400, text="content does not match content_sha256_base64")
        self.state.blobs[blob_id] = data
        return web.Response(text="", headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def _get_block(self, request: web.Request) -> web.Response:
        block = self.state.blocks.get(request.match_info["sha"])
        if block is None:
            return web.Response(status=404, text="no such block")
        start, length = int(request.match_info["start"]), int(request.match_info["length"])
        return web.Response(body=block[start:start + length])

    async def _put_block(self, request: web.Request) -> web.Response:
        sha = request.match_info["sha"]
        data = await request.read()
        if hashlib.sha256(data).hexdigest() != sha:
            return web.Response(status=400, text="block content does not match its sha256")
        self.state.blocks[sha] = data
        return web.Response(body=f"stored:{sha}".encode())
