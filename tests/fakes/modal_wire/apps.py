"""Client hello, Environments and Apps: creation, publishing with deployment history, rollback, logs, stop.

What real Modal does, and the fake copies:
- An App is created INITIALIZING (`modal deploy`) or EPHEMERAL (`modal run`); `AppPublish` with
  APP_STATE_DEPLOYED gives it its deployment name and a new version in its history.
- Publishing a definition identical to the live version is a no-op: the response's
  `deployed_at` is 0 and no version is added (modal's runner.py prints "Deployment skipped").
- A rollback is a new version that carries an older version's functions (`rollback_version`).
- Names resolve inside one Environment; an Environment that was never created is NOT_FOUND.
- `AppClientDisconnect` stops an ephemeral or still-initializing App; a deployed one keeps running until
  `AppStop` (`modal app stop`, `App.stop()`), after which its name no longer resolves.
- `AppList` lists an Environment's Apps, stopped ones included (the SDK's public listing filters them out).
- Logs: the lines a test gives an App (`ModalWire.log`), served by time range (`AppFetchLogs`, `AppCountLogs`:
  `App.logs.fetch`/`tail`) and as a stream that resumes after the last entry seen and ends when the App is
  done (`AppGetLogs`: `App.logs.stream`).
"""

from __future__ import annotations

import asyncio
import time

from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib import GRPCError, Status
from modal_proto import api_pb2
from modal_version import __version__ as CLIENT_VERSION

from tests.fakes.modal_wire.state import App, LogLine, Version, content_id, new_id

IMAGE_BUILDER_VERSION = "2025.06"
LOGS_POLL_SECONDS = 5.0  # how long one AppGetLogs call waits for the App to finish before returning empty


class AppsMixin:
    # ------------------------------------------------------------------ client and environments

    async def ClientHello(self, stream) -> None:
        await stream.recv_message()
        await stream.send_message(api_pb2.ClientHelloResponse(image_builder_version=IMAGE_BUILDER_VERSION))

    async def EnvironmentGetOrCreate(self, stream) -> None:
        request: api_pb2.EnvironmentGetOrCreateRequest = await stream.recv_message()
        name = request.deployment_name or self.state.default_environment
        if name not in self.state.environments:
            if request.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"Environment '{name}' not found")
            self.state.environments.add(name)
        await stream.send_message(api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=content_id("en", name),
            metadata=api_pb2.EnvironmentMetadata(
                name=name, settings=api_pb2.EnvironmentSettings(image_builder_version=IMAGE_BUILDER_VERSION,
                                                                webhook_suffix="modal.run"),
            ),
        ))

    # ------------------------------------------------------------------ creating and finding Apps

    async def AppCreate(self, stream) -> None:
        request: api_pb2.AppCreateRequest = await stream.recv_message()
        environment = self.state.environment(request.environment_name)
        app = App(new_id("ap"), environment, request.description, request.app_state or api_pb2.APP_STATE_INITIALIZING,
                  tags=dict(request.tags))
        self.state.apps[app.app_id] = app
        await stream.send_message(api_pb2.AppCreateResponse(
            app_id=app.app_id, app_page_url=f"{self.wire.http_url}/apps/{environment}/{app.app_id}",
        ))

    async def AppGetOrCreate(self, stream) -> None:
        """`modal.App.lookup(name, create_if_missing=...)`: a deployed App by name, created (empty) if asked."""
        request: api_pb2.AppGetOrCreateRequest = await stream.recv_message()
        if request.app_name in self.state.apps:  # an App ID: that App, whatever its state or Environment
            await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id=request.app_name))
            return
        environment = self.state.environment(request.environment_name)
        app = self.state.deployed_app(environment, request.app_name)
        if app is None:
            if request.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"App '{request.app_name}' not found in environment '{environment}'")
            app = App(new_id("ap"), environment, request.app_name, api_pb2.APP_STATE_DEPLOYED, name=request.app_name)
            self.state.apps[app.app_id] = app
        await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id=app.app_id))

    async def AppSetTags(self, stream) -> None:
        """`App.set_tags(tags)` on a running or looked-up App: its whole tag set replaced (no update semantics)."""
        request: api_pb2.AppSetTagsRequest = await stream.recv_message()
        app = self.state.apps.get(request.app_id)
        if app is None:
            raise GRPCError(Status.NOT_FOUND, f"App '{request.app_id}' not found")
        app.tags = dict(request.tags)
        await stream.send_message(Empty())

    async def AppGetByDeploymentName(self, stream) -> None:
        request: api_pb2.AppGetByDeploymentNameRequest = await stream.recv_message()
        environment = self.state.environment(request.environment_name)
        app = self.state.deployed_app(environment, request.name)
        await stream.send_message(api_pb2.AppGetByDeploymentNameResponse(
            app_id=app.app_id if app else "", environment_name=environment,
            lifecycle=api_pb2.AppLifecycle(app_state=app.state, version=app.live_version) if app else None,
        ))

    async def AppGetLayout(self, stream) -> None:
        """The live version's objects: a redeploy reuses their ids (runner.py `_init_local_app_existing`)."""
        request: api_pb2.AppGetLayoutRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        await stream.send_message(api_pb2.AppGetLayoutResponse(app_layout=api_pb2.AppLayout(
            function_ids=app.function_ids, class_ids=app.class_ids,
        )))

    async def AppHeartbeat(self, stream) -> None:
        request: api_pb2.AppHeartbeatRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        if app.state == api_pb2.APP_STATE_STOPPED:
            raise GRPCError(Status.FAILED_PRECONDITION, f"App {app.app_id} is stopped")
        app.heartbeats += 1
        await stream.send_message(Empty())

    # ------------------------------------------------------------------ publishing, history, rollback

    async def AppPublish(self, stream) -> None:
        request: api_pb2.AppPublishRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        for function_id in request.function_ids.values():
            self.state.function(function_id)  # NOT_FOUND for an object this App never created
        definitions = {tag: self.state.functions[fid].definition_id for tag, fid in request.function_ids.items()}
        deployed_at = time.time()
        if request.app_state == api_pb2.APP_STATE_DEPLOYED:
            if not request.name:
                raise GRPCError(Status.INVALID_ARGUMENT, "A deployed App needs a name")
            other = self.state.deployed_app(app.environment, request.name)
            if other is not None and other.app_id != app.app_id:
                raise GRPCError(Status.ALREADY_EXISTS, f"App '{request.name}' is already deployed in "
                                                       f"'{app.environment}'")
            live = app.live
            unchanged = live is not None and app.state == api_pb2.APP_STATE_DEPLOYED and (
                {t: live.definition_ids[f] for t, f in live.function_ids.items()} == definitions
                and live.tags == dict(request.tags)
            )
            if unchanged:
                deployed_at = 0.0  # modal's runner.py: "falsy deployed_at means this was a noop deployment"
            else:
                version = Version(
                    version=max((v.version for v in app.history), default=0) + 1,
                    deployed_at=deployed_at, tag=request.deployment_tag, client_version=request.client_version
                    or CLIENT_VERSION,
                    commit_info=request.commit_info if request.HasField("commit_info") else None,
                    function_ids=dict(request.function_ids), class_ids=dict(request.class_ids),
                    definition_ids={fid: self.state.functions[fid].definition_id
                                    for fid in request.function_ids.values()},
                    tags=dict(request.tags),
                )
                self._make_live(app, version)
            app.name = request.name
            app.state = api_pb2.APP_STATE_DEPLOYED
        else:
            app.state = request.app_state or app.state
        app.tags = dict(request.tags) or app.tags
        app.function_ids, app.class_ids = dict(request.function_ids), dict(request.class_ids)
        await stream.send_message(api_pb2.AppPublishResponse(
            url=f"{self.wire.http_url}/apps/{app.environment}/{app.name or app.app_id}", deployed_at=deployed_at,
        ))

    async def AppDeploymentHistory(self, stream) -> None:
        """Oldest first, as stored; the CLI sorts the rows itself, so clients must not rely on the order."""
        request: api_pb2.AppDeploymentHistoryRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        rows = [
            api_pb2.AppDeploymentHistory(
                app_id=app.app_id, version=v.version, client_version=v.client_version, deployed_at=v.deployed_at,
                deployed_by="wire-test", tag=v.tag, rollback_version=v.rollback_version, rollback_allowed=True,
                commit_info=v.commit_info,
            )
            for v in app.history
        ]
        await stream.send_message(api_pb2.AppDeploymentHistoryResponse(
            app_deployment_histories=rows, production_app_version=app.live_version,
        ))

    async def AppRollback(self, stream) -> None:
        """A rollback is a new version carrying an older version's objects; version -1 means the previous one."""
        request: api_pb2.AppRollbackRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED:
            raise GRPCError(Status.FAILED_PRECONDITION, f"App {app.app_id} is not deployed")
        if request.version < 0:
            target_version = app.live_version + request.version
            if target_version <= 0:
                raise GRPCError(Status.INVALID_ARGUMENT, "Rollback request exceeds number of App deployments.")
        elif request.version > 0:
            target_version = request.version
        else:
            raise GRPCError(Status.INVALID_ARGUMENT, "Invalid rollback version request.")
        target = next((v for v in app.history if v.version == target_version), None)
        if target is None:
            raise GRPCError(Status.NOT_FOUND, f"Rollback version v{target_version} not found in App history.")
        version = Version(
            version=max(v.version for v in app.history) + 1, deployed_at=time.time(), tag=target.tag,
            client_version=target.client_version, commit_info=target.commit_info,
            function_ids=dict(target.function_ids), class_ids=dict(target.class_ids),
            definition_ids=dict(target.definition_ids), tags=dict(target.tags), rollback_version=target.version,
        )
        self._make_live(app, version)
        app.function_ids, app.class_ids = dict(target.function_ids), dict(target.class_ids)
        await stream.send_message(api_pb2.AppRollbackResponse(
            url=f"{self.wire.http_url}/apps/{app.environment}/{app.name}", deployed_at=version.deployed_at,
        ))

    def _make_live(self, app: App, version: Version) -> None:
        """A new version goes live; run-time autoscaler changes end with it (servers.py)."""
        app.history.append(version)
        app.live_version = version.version
        for function_id in version.function_ids.values():
            self.state.functions[function_id].autoscaler_override = api_pb2.AutoscalerSettings()

    # ------------------------------------------------------------------ stopping, logs

    async def AppClientDisconnect(self, stream) -> None:
        request: api_pb2.AppClientDisconnectRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED:
            self._stop(app)
        await stream.send_message(Empty())

    def _stop(self, app: App) -> None:
        app.state = api_pb2.APP_STATE_STOPPED
        app.stopped_at = time.time()
        app.stopped.set()

    async def AppStop(self, stream) -> None:
        request: api_pb2.AppStopRequest = await stream.recv_message()
        self._stop(self.state.app(request.app_id))
        await stream.send_message(Empty())

    async def AppList(self, stream) -> None:
        request: api_pb2.AppListRequest = await stream.recv_message()
        environment = self.state.environment(request.environment_name)
        await stream.send_message(api_pb2.AppListResponse(apps=[
            api_pb2.AppListResponse.AppListItem(
                app_id=a.app_id, description=a.description, state=a.state, created_at=a.created_at,
                stopped_at=a.stopped_at, name=a.name,
                n_running_tasks=0 if a.state == api_pb2.APP_STATE_STOPPED else a.running_tasks)
            for a in self.state.apps.values() if a.environment == environment
        ]))

    @staticmethod
    def _selected(app: App, since, until, source: int) -> list[LogLine]:
        start, end = since.ToMicroseconds() / 1e6, until.ToMicroseconds() / 1e6
        return [line for line in app.logs if start <= line.at < end
                and source in (api_pb2.FILE_DESCRIPTOR_UNSPECIFIED, line.file_descriptor)]

    @staticmethod
    def _batches(lines: list[LogLine]) -> list[api_pb2.TaskLogsBatch]:
        return [api_pb2.TaskLogsBatch(task_id=line.task_id, entry_id=line.entry_id, items=[api_pb2.TaskLogs(
            data=line.text, timestamp=line.at, timestamp_ns=int(line.at * 1e9), file_descriptor=line.file_descriptor,
            container_id=line.task_id)]) for line in lines]

    async def AppFetchLogs(self, stream) -> None:
        """The last `limit` lines of the range, oldest first (a tail asks for the newest; a fetch for all of them)."""
        request: api_pb2.AppFetchLogsRequest = await stream.recv_message()
        lines = self._selected(self.state.app(request.app_id), request.since, request.until, request.source)
        await stream.send_message(api_pb2.AppFetchLogsResponse(batches=self._batches(lines[-request.limit:])))

    async def AppCountLogs(self, stream) -> None:
        request: api_pb2.AppCountLogsRequest = await stream.recv_message()
        lines = self._selected(self.state.app(request.app_id), request.since, request.until, request.source)
        start, end, size = request.since.seconds, request.until.seconds, request.bucket_secs
        buckets = []
        for bucket_start in range(start - start % size, end, size):
            inside = [line for line in lines if bucket_start <= line.at < bucket_start + size]
            counts = {fd: sum(line.file_descriptor == fd for line in inside) for fd in
                      (api_pb2.FILE_DESCRIPTOR_STDOUT, api_pb2.FILE_DESCRIPTOR_STDERR, api_pb2.FILE_DESCRIPTOR_INFO)}
            buckets.append(api_pb2.AppCountLogsResponse.LogBucket(
                bucket_start_at=Timestamp(seconds=bucket_start), stdout_logs=counts[api_pb2.FILE_DESCRIPTOR_STDOUT],
                stderr_logs=counts[api_pb2.FILE_DESCRIPTOR_STDERR], system_logs=counts[api_pb2.FILE_DESCRIPTOR_INFO]))
        await stream.send_message(api_pb2.AppCountLogsResponse(app_id=request.app_id, buckets=buckets))

    async def AppGetLogs(self, stream) -> None:
        """Lines after `last_entry_id` as they come; `app_done` once the App has stopped and every line was sent;
        nothing at all (an empty answer) when `timeout` passes first, as the real stream does between lines."""
        request: api_pb2.AppGetLogsRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        seen = request.last_entry_id
        deadline = time.monotonic() + min(request.timeout or 0, LOGS_POLL_SECONDS)
        while True:
            new = [line for line in app.logs if line.entry_id > seen]
            for batch in self._batches(new):
                await stream.send_message(batch)
                seen = batch.entry_id
            if app.state == api_pb2.APP_STATE_STOPPED:
                await stream.send_message(api_pb2.TaskLogsBatch(app_done=True))
                return
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)
