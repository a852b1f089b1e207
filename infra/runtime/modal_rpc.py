"""What modal 1.6.4 offers only in its CLI or its internals: app history, rollback and the full app listing, and a
bounded first answer from the control plane.

`modal app history`, `modal app rollback` and `modal app list` (modal/cli/app.py) call these RPCs through the client's
internal stub; there is no public API for them, so the same calls are made here in-process instead of parsing what the
CLI prints. The only place with the SDK's private names (`synchronizer`, `_Client`, `_stub`): `modal` is pinned
exactly (README, "Upgrading modal"), and tests/test_modal_contract.py runs each against the wire fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _with_client(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(client)` on the SDK's event loop with the environment's client, as Modal's own CLI does."""
    from modal._utils.async_utils import synchronizer
    from modal.client import _Client

    async def run():
        return await fn(await _Client.from_env())

    return synchronizer.create_blocking(run)()


def _on_app(app_name: str, environment: str, fn: Callable[[Any, str], Awaitable[T]], missing: T) -> T:
    """`fn(client, app_id)` for the app deployed under `app_name`; `missing` if there is none."""
    from modal_proto import api_pb2

    async def run(client) -> T:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app_name, environment_name=environment))
        return await fn(client, found.app_id) if found.app_id else missing

    return _with_client(run)


def deployment_history(app_name: str, environment: str) -> list[dict]:
    """Every deployed version of the app: [{"version", "tag", "deployed_at"}]; [] if it was never deployed."""
    from modal_proto import api_pb2

    async def read(client, app_id: str) -> list[dict]:
        found = await client._stub.AppDeploymentHistory(api_pb2.AppDeploymentHistoryRequest(app_id=app_id))
        return [{"version": h.version, "tag": h.tag, "deployed_at": h.deployed_at}
                for h in found.app_deployment_histories]

    return _on_app(app_name, environment, read, [])


def rollback(app_name: str, environment: str, version: int | None) -> bool:
    """Redeploy `version` (None: the previous one) as a new version; False when the app was never deployed."""
    from modal_proto import api_pb2

    async def roll(client, app_id: str) -> bool:
        await client._stub.AppRollback(api_pb2.AppRollbackRequest(app_id=app_id, version=version or -1))
        return True

    return _on_app(app_name, environment, roll, False)


def apps(environment: str) -> list[dict]:
    """Every App of a Modal Environment, stopped ones included (the last ephemeral job runs: `invoke logs` reads them),
    as `modal app list` shows them: [{"app_id", "name", "state", "created_at", "stopped_at", "running"}]. The SDK's
    public listing (`modal.Environment.apps.list()`) leaves stopped Apps out."""
    from modal_proto import api_pb2

    async def read(client) -> list[dict]:
        found = await client._stub.AppList(api_pb2.AppListRequest(environment_name=environment))
        return [{"app_id": a.app_id, "name": a.name or a.description,
                 "state": api_pb2.AppState.Name(a.state).removeprefix("APP_STATE_").lower(),
                 "created_at": a.created_at, "stopped_at": a.stopped_at or None, "running": a.n_running_tasks}
                for a in found.apps]

    return _with_client(read)


def proxy_for(server_url: str) -> str | None:
    """The proxy the client would go through to `server_url` (HTTPS_PROXY, ALL_PROXY, NO_PROXY; none when
    MODAL_DISABLE_API_PROXY is set), as its channel decides it (modal/_utils/proxy_support.py)."""
    import urllib.parse

    from modal._utils.proxy_support import get_proxy_url

    parts = urllib.parse.urlsplit(server_url)
    return get_proxy_url(parts.hostname, use_ssl=parts.scheme == "https")


def hello(server_url: str, timeout: float) -> None:
    """One ClientHello to `server_url` over the client's own kind of channel (its TLS trust, its proxy support),
    returning as soon as the control plane answers anything at all (a refusal of the missing token included), or
    raising TimeoutError after `timeout` seconds: the SDK's own retries wait out a silent server for minutes."""
    from google.protobuf import empty_pb2
    from grpclib.exceptions import GRPCError
    from modal._utils.grpc_utils import create_channel
    from modal_proto import api_grpc

    async def ask() -> None:
        channel = create_channel(server_url)
        try:
            await asyncio.wait_for(api_grpc.ModalClientStub(channel).ClientHello(empty_pb2.Empty()), timeout)
        except GRPCError:
            pass  # an answer: the control plane is there (what it says to a call without a token does not matter)
        finally:
            channel.close()

    asyncio.run(ask())
