"""Dicts: lookup and creation by name, and the entry operations locks are made of (put, put-if-absent, get, pop).

What real Modal does, and the fake copies:
- `DictGetOrCreate` finds a Dict by name in one Environment, creating it only when asked.
- Keys and values travel pickled by the client; the server compares keys as bytes.
- `DictUpdate` with `if_not_exists` is an atomic create-if-absent: `created` says whether this
  request created the entry. It is the only conditional write a Dict has: there is no
  compare-and-swap and no conditional delete.
- A get of a missing key answers `found=False`; `DictPop` removes an entry and returns it.

Each RPC is applied in one step on the server's event loop, so concurrent clients see
them atomic, as on Modal. Entry expiry (7 days without access) is not modelled.
"""

from __future__ import annotations

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import NAME_RE, Dict, new_id


class DictsMixin:
    async def DictGetOrCreate(self, stream) -> None:
        request: api_pb2.DictGetOrCreateRequest = await stream.recv_message()
        environment = self.state.environment(request.environment_name)
        if not NAME_RE.match(request.deployment_name):
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid Dict name {request.deployment_name!r}")
        found = next((d for d in self.state.dicts.values()
                      if d.environment == environment and d.name == request.deployment_name), None)
        if found is None:
            if request.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"Dict '{request.deployment_name}' not found in environment "
                                                  f"'{environment}'")
            found = Dict(new_id("di"), environment, request.deployment_name)
            self.state.dicts[found.dict_id] = found
        await stream.send_message(api_pb2.DictGetOrCreateResponse(
            dict_id=found.dict_id, metadata=api_pb2.DictMetadata(name=found.name),
        ))

    async def DictUpdate(self, stream) -> None:
        request: api_pb2.DictUpdateRequest = await stream.recv_message()
        entries = self.state.dict(request.dict_id).entries
        created = False
        if request.if_not_exists:
            if len(request.updates) != 1:
                raise GRPCError(Status.INVALID_ARGUMENT, "if_not_exists takes exactly one entry")
            entry = request.updates[0]
            if entry.key not in entries:
                entries[entry.key] = entry.value
                created = True
        else:
            for entry in request.updates:
                entries[entry.key] = entry.value
            created = True
        await stream.send_message(api_pb2.DictUpdateResponse(created=created))

    async def DictGet(self, stream) -> None:
        request: api_pb2.DictGetRequest = await stream.recv_message()
        entries = self.state.dict(request.dict_id).entries
        value = entries.get(request.key)
        await stream.send_message(api_pb2.DictGetResponse(found=value is not None, value=value or b""))

    async def DictPop(self, stream) -> None:
        request: api_pb2.DictPopRequest = await stream.recv_message()
        entries = self.state.dict(request.dict_id).entries
        value = entries.pop(request.key, None)
        await stream.send_message(api_pb2.DictPopResponse(found=value is not None, value=value or b""))
