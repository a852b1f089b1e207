"""Functions: creation (with a definition id), lookup by name, and `.remote()` calls with their outputs.

What real Modal does, and the fake copies:
- `FunctionPrecreate` hands out an id; `FunctionCreate` stores the definition, which must name an
  image that was built and Mounts, Secrets and Volumes that exist. The definition id changes
  exactly when the definition does, which is how a publish of an unchanged App becomes a no-op.
- `FunctionGet` finds a Function (or a Server's service function) of a *deployed* App by name.
- `.remote()` is `FunctionMap` with the input pipelined, then `FunctionGetOutputs` long-polls
  until the output arrives. A success carries the pickled return value; a failure carries the
  pickled exception, which the client re-raises.

What the fake runs instead of a container: the test's *runner* for the Function's name,
called with the Function's environment (the values of all its Secrets, `env=` included), its
Volumes as local directories and its arguments. The project's fixture registers the real job
bodies (infra/runtime/weights.py against a local Hub, infra/runtime/kernels.py with the stand-in SGLang).
A test can also fix an output or a failure per Function name. GPUs, regions, timeouts,
retries, preemption and scheduling are not modelled.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from grpclib import GRPCError, Status
from modal._serialization import deserialize, serialize
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import Function, FunctionCall, new_id

OUTPUT_POLL_CAP_SECONDS = 10.0  # a FunctionGetOutputs long-poll returns empty after this, and the client polls again


@dataclass
class JobCall:
    """What a runner gets: the container's view of one call."""

    function: str  # the Function's name (its tag in the App)
    app_name: str
    environment: str
    environ: dict[str, str]  # every Secret's values, as the container's environment
    volumes: dict[str, Path]  # mount path -> the Volume's directory
    args: tuple
    kwargs: dict


def _data(definition: api_pb2.Function | None) -> api_pb2.FunctionData:
    """The definition as the client reads it back (`FunctionInfo._from_function_proto`)."""
    if definition is None:
        return api_pb2.FunctionData()
    return api_pb2.FunctionData(
        function_name=definition.function_name, function_type=definition.function_type,
        ranked_functions=[api_pb2.FunctionData.RankedFunction(rank=0, function=definition)],
        is_server=definition.is_server, http_config=definition.http_config,
        autoscaler_settings=definition.autoscaler_settings,
    )


class FunctionsMixin:
    async def FunctionPrecreate(self, stream) -> None:
        request: api_pb2.FunctionPrecreateRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        function_id = request.existing_function_id or new_id("fu")
        function = self.state.functions.get(function_id) or Function(function_id, app.app_id, request.function_name)
        function.function_type = request.function_type
        self.state.functions[function_id] = function
        await stream.send_message(api_pb2.FunctionPrecreateResponse(
            function_id=function_id, handle_metadata=self._handle_metadata(function),
        ))

    async def FunctionCreate(self, stream) -> None:
        request: api_pb2.FunctionCreateRequest = await stream.recv_message()
        app = self.state.app(request.app_id)
        if not request.HasField("function"):
            raise GRPCError(Status.INVALID_ARGUMENT, "the fake supports single-definition Functions only (no ranked "
                                                     "function_data)")
        definition = request.function
        self._check_references(definition)
        function_id = request.existing_function_id or new_id("fu")
        function = self.state.functions.get(function_id) or Function(function_id, app.app_id, definition.function_name)
        function.definition = definition
        function.function_type = definition.function_type
        function.definition_id = self.state.define(definition)
        self.state.functions[function_id] = function
        await stream.send_message(api_pb2.FunctionCreateResponse(
            function_id=function_id, handle_metadata=self._handle_metadata(function), function_data=_data(definition),
        ))

    def _check_references(self, definition: api_pb2.Function) -> None:
        image = self.state.images.get(definition.image_id)
        if image is None or not image.built:
            raise GRPCError(Status.FAILED_PRECONDITION, f"Image '{definition.image_id}' has not been built")
        for mount_id in definition.mount_ids:
            if mount_id not in self.state.mounts:
                raise GRPCError(Status.NOT_FOUND, f"Mount '{mount_id}' not found")
        for secret_id in definition.secret_ids:
            if secret_id not in self.state.secrets:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{secret_id}' not found")
        for mount in definition.volume_mounts:
            self.state.volume(mount.volume_id)

    def _handle_metadata(self, function: Function) -> api_pb2.FunctionHandleMetadata:
        definition = function.definition
        metadata = api_pb2.FunctionHandleMetadata(
            function_name=function.tag, function_type=function.function_type, definition_id=function.definition_id,
            app_id=function.app_id,
            supported_input_formats=[api_pb2.DATA_FORMAT_PICKLE], supported_output_formats=[api_pb2.DATA_FORMAT_PICKLE],
        )
        if definition is not None and definition.is_server:
            metadata._experimental_flash_urls.append(self.server_url(function))
        return metadata

    async def FunctionGet(self, stream) -> None:
        request: api_pb2.FunctionGetRequest = await stream.recv_message()
        environment = self.state.environment(request.environment_name)
        app = self.state.deployed_app(environment, request.app_name)
        if app is None:
            raise GRPCError(Status.NOT_FOUND, f"Lookup failed for Function '{request.object_tag}' from the "
                                              f"'{request.app_name}' app: App not found in environment "
                                              f"'{environment}'.")
        function_id = app.function_ids.get(request.object_tag)
        if function_id is None:
            raise GRPCError(Status.NOT_FOUND, f"Lookup failed for Function '{request.object_tag}' from the "
                                              f"'{request.app_name}' app: no such object.")
        function = self.state.functions[function_id]
        await stream.send_message(api_pb2.FunctionGetResponse(
            function_id=function_id, handle_metadata=self._handle_metadata(function),
            function=_data(function.definition),
        ))

    # ------------------------------------------------------------------ calls

    async def FunctionMap(self, stream) -> None:
        request: api_pb2.FunctionMapRequest = await stream.recv_message()
        function = self.state.function(request.function_id)
        app = self.state.app(function.app_id)
        if app.state not in (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_DETACHED, api_pb2.APP_STATE_DEPLOYED):
            raise GRPCError(Status.FAILED_PRECONDITION, f"App {app.app_id} is not running")
        call = FunctionCall(new_id("fc"), function.function_id, expected=len(request.pipelined_inputs))
        self.state.calls[call.call_id] = call
        answers = []
        for item in request.pipelined_inputs:
            input_id = new_id("in")
            answers.append(api_pb2.FunctionPutInputsResponseItem(idx=item.idx, input_id=input_id, input_jwt=input_id))
            args, kwargs = deserialize(item.input.args, None) if item.input.args else ((), {})
            asyncio.get_running_loop().create_task(self._run(call, function, app, item.idx, input_id, args, kwargs))
        await stream.send_message(api_pb2.FunctionMapResponse(
            function_call_id=call.call_id, pipelined_inputs=answers, function_call_jwt=call.call_id,
            retry_policy=api_pb2.FunctionRetryPolicy(retries=0), sync_client_retries_enabled=False,
        ))

    async def _run(self, call: FunctionCall, function: Function, app, idx: int, input_id: str, args, kwargs) -> None:
        job = JobCall(
            function=function.tag, app_name=app.name or app.description, environment=app.environment,
            environ=self._environ(function.definition), volumes=self._volumes(function.definition),
            args=tuple(args), kwargs=dict(kwargs),
        )
        started = time.time()
        try:
            value = await asyncio.get_running_loop().run_in_executor(None, self.wire.run_job, job)
            result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS, data=serialize(value))
        except Exception as exc:  # the container's exception, pickled as Modal's container does
            result = api_pb2.GenericResult(
                status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=repr(exc),
                traceback="".join(traceback.format_exception(exc)), data=serialize(exc),
            )
        call.outputs.append(api_pb2.FunctionGetOutputsItem(
            result=result, idx=idx, input_id=input_id, data_format=api_pb2.DATA_FORMAT_PICKLE,
            input_started_at=started, output_created_at=time.time(),
        ))
        call.arrived.set()

    def _environ(self, definition: api_pb2.Function) -> dict[str, str]:
        environ: dict[str, str] = {}
        for secret_id in definition.secret_ids:
            environ.update(self.state.secrets[secret_id].values)
        return environ

    def _volumes(self, definition: api_pb2.Function) -> dict[str, Path]:
        return {m.mount_path: self.state.volume(m.volume_id).root for m in definition.volume_mounts}

    async def FunctionGetOutputs(self, stream) -> None:
        request: api_pb2.FunctionGetOutputsRequest = await stream.recv_message()
        call = self.state.calls.get(request.function_call_id)
        if call is None:
            raise GRPCError(Status.NOT_FOUND, f"Function call '{request.function_call_id}' not found")
        if not call.outputs:
            try:
                await asyncio.wait_for(call.arrived.wait(), timeout=min(request.timeout, OUTPUT_POLL_CAP_SECONDS))
            except asyncio.TimeoutError:
                pass
        outputs = list(call.outputs)
        if request.clear_on_success:
            call.outputs.clear()
            call.arrived.clear()
        await stream.send_message(api_pb2.FunctionGetOutputsResponse(
            outputs=outputs, idxs=[o.idx for o in outputs], last_entry_id="0-0",
            num_unfinished_inputs=max(0, call.expected - len(outputs)),
        ))
