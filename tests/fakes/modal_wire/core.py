"""The servicer: Modal's generated `ModalClientBase`, with each service area's RPCs from its own module.

`modal_proto.api_grpc.ModalClientBase` (shipped with the `modal` client) declares
every RPC of Modal's control plane as an abstract method. The servicer class is
built from the area mixins (apps, images, functions, volumes, dicts, secrets,
servers); every abstract method that no mixin implements becomes a handler that
records the RPC's name and answers UNIMPLEMENTED. The fixture asserts that list
is empty after each test, so a client upgrade that starts calling a new RPC fails
by name instead of passing by accident.

Every handled request is also checked for credentials the way Modal's server
does: the client sends `x-modal-token-id` / `x-modal-token-secret` metadata, and
a wrong pair is answered UNAUTHENTICATED (the client raises `modal.exception.AuthError`).
"""

from __future__ import annotations

import functools
from typing import Any

import grpclib.const
from grpclib import GRPCError, Status
from modal_proto import api_grpc

from tests.fakes.modal_wire.state import WireState

# Handlers that must answer before any token check (none: ClientHello is authenticated too).
UNAUTHENTICATED_RPCS: frozenset[str] = frozenset()


class ServicerBase:
    """What every area mixin may use: the state, the control object's settings, and the call log."""

    state: WireState
    wire: Any  # tests.fakes.modal_wire.ModalWire

    def __init__(self, wire) -> None:
        self.wire = wire
        self.state = wire.state
        self.rpc_log: list[str] = []
        self.unimplemented: list[str] = []

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = super().__mapping__()  # type: ignore[misc]
        return {path: handler._replace(func=self._guarded(path.rsplit("/", 1)[1], handler.func))
                for path, handler in mapping.items()}

    def _guarded(self, name: str, func):
        @functools.wraps(func)
        async def handle(stream) -> None:
            self.rpc_log.append(name)
            if name not in UNAUTHENTICATED_RPCS:
                self._check_token(stream.metadata or {})
            if hook := self.wire.before_rpc.get(name):
                await hook()
            await func(stream)

        return handle

    def _check_token(self, metadata) -> None:
        token_id, token_secret = metadata.get("x-modal-token-id"), metadata.get("x-modal-token-secret")
        if not token_id or not token_secret:
            raise GRPCError(Status.UNAUTHENTICATED, "Token missing. Could not authenticate client.")
        if (token_id, token_secret) != self.wire.token:
            raise GRPCError(Status.UNAUTHENTICATED, f"Token ID {token_id!r} is invalid or has been revoked")


def _unimplemented(name: str):
    async def handler(self, stream) -> None:
        self.unimplemented.append(name)
        raise GRPCError(Status.UNIMPLEMENTED, f"{name} is not implemented by the fake Modal control plane")

    handler.__name__ = name
    return handler


def servicer_class(*mixins: type) -> type:
    """ModalClientBase with the mixins' RPCs, and a recording UNIMPLEMENTED handler for every other one."""
    cls = type("ModalWireServicer", (ServicerBase, *mixins, api_grpc.ModalClientBase), {})
    for name in sorted(cls.__abstractmethods__):
        setattr(cls, name, _unimplemented(name))
    cls.__abstractmethods__ = frozenset()
    return cls


def implemented_rpcs(*mixins: type) -> list[str]:
    """The RPC names the mixins implement (the closing report lists them)."""
    abstract = {n for n in dir(api_grpc.ModalClientBase)
                if getattr(getattr(api_grpc.ModalClientBase, n), "__isabstractmethod__", False)}
    return sorted(n for m in mixins for n in vars(m) if n in abstract)
