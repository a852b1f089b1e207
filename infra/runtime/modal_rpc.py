"""The two operations modal 1.6.4 offers only in its CLI, app history and rollback, as the CLI performs them.

`modal app history` and `modal app rollback` (modal/cli/app.py) call the control plane's
AppGetByDeploymentName, AppDeploymentHistory and AppRollback RPCs through the client's
internal stub; there is no public API for them. Rather than run the CLI and parse what
it prints, this adapter makes the same calls in-process. It is the only place that
touches the SDK's private names (`synchronizer`, `_Client`, `_stub`), which is why
`modal` is pinned exactly (README, "Upgrading modal"); tests/test_modal_contract.py
runs both against a fake of Modal's control plane speaking the client's own protocol.
"""

from __future__ import annotations

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


async def _app_id(client, app_name: str, environment: str) -> str | None:
    from modal_proto import api_pb2

    found = await client._stub.AppGetByDeploymentName(
        api_pb2.AppGetByDeploymentNameRequest(name=app_name, environment_name=environment))
    return found.app_id or None


def deployment_history(app_name: str, environment: str) -> list[dict]:
    """Every deployed version of the app: [{"version", "tag", "deployed_at"}]; [] if it was never deployed."""
    from modal_proto import api_pb2

    async def read(client) -> list[dict]:
        app_id = await _app_id(client, app_name, environment)
        if app_id is None:
            return []
        found = await client._stub.AppDeploymentHistory(api_pb2.AppDeploymentHistoryRequest(app_id=app_id))
        return [{"version": h.version, "tag": h.tag, "deployed_at": h.deployed_at} for h in found.app_deployment_histories]

    return _with_client(read)


def rollback(app_name: str, environment: str, version: int | None) -> bool:
    """Redeploy `version` (None: the previous one) as a new version; False when the app was never deployed."""
    from modal_proto import api_pb2

    async def roll(client) -> bool:
        app_id = await _app_id(client, app_name, environment)
        if app_id is None:
            return False
        await client._stub.AppRollback(api_pb2.AppRollbackRequest(app_id=app_id, version=version or -1))
        return True

    return _with_client(roll)
