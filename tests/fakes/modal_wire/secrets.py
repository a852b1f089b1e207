"""Secrets: named ones exist only when a test creates them; anonymous ones come from `env=` and `Secret.from_dict`.

What real Modal does, and the fake copies:
- `Secret.from_name(...)` resolves when it is first used: when a Function that lists it is
  created (so an App that references a missing Secret fails to start), or on `.hydrate()`.
  A name that does not exist in that Environment is NOT_FOUND; `required_keys` that the
  Secret lacks are NOT_FOUND too.
- A Function's `env={...}` and `Secret.from_dict` are anonymous Secrets created with the App.
  The fake gives identical contents the same id, so an unchanged definition stays unchanged.
- Values are never sent back to the client (the metadata lists key names only).
"""

from __future__ import annotations

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import NAME_RE, Secret, content_id, new_id

ANONYMOUS = (api_pb2.OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP, api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL)


class SecretsMixin:
    async def SecretGetOrCreate(self, stream) -> None:
        request: api_pb2.SecretGetOrCreateRequest = await stream.recv_message()
        kind = request.object_creation_type
        if kind in ANONYMOUS:
            values = dict(request.env_dict)
            secret_id = content_id("st", *sorted(f"{k}={v}" for k, v in values.items()))
            secret = self.state.secrets.setdefault(secret_id, Secret(secret_id, "", "", values))
        else:
            environment = self.state.environment(request.environment_name)
            if not NAME_RE.match(request.deployment_name):
                raise GRPCError(Status.INVALID_ARGUMENT, f"invalid Secret name {request.deployment_name!r}")
            secret = self.state.named_secret(environment, request.deployment_name)
            if kind == api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS and secret is not None:
                raise GRPCError(Status.ALREADY_EXISTS, f"Secret '{request.deployment_name}' already exists")
            if kind in (api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
                        api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS):
                secret = Secret(secret.secret_id if secret else new_id("st"), environment, request.deployment_name,
                                dict(request.env_dict))
                self.state.secrets[secret.secret_id] = secret
            elif secret is None:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{request.deployment_name}' not found in environment "
                                                  f"'{environment}'")
            if missing := [k for k in request.required_keys if k not in secret.values]:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{secret.name}' is missing required keys: "
                                                  f"{', '.join(missing)}")
        await stream.send_message(api_pb2.SecretGetOrCreateResponse(
            secret_id=secret.secret_id,
            metadata=api_pb2.SecretMetadata(name=secret.name, keys=sorted(secret.values),
                                            environment_name=secret.environment),
        ))
