"""Billing: the workspace's rates and its cost report (`Workspace.billing.rates()`, `billing.report()`).

What real Modal does, and the fake copies:
- `WorkspaceNameLookup` names the workspace the token authenticates against (`Workspace.from_context()`).
- `WorkspaceBillingRates` answers a map of rate name -> decimal text, plus names that are deprecated (with a
  warning, or an error) and a formatted table. Modal does not document the names or their unit; the fake's
  default answer uses its pricing page's labels, per second (`RATES`), and tests set others (`ModalWire.rates`).
- `WorkspaceBillingReport` streams one item per object and interval: the object's id and description (an App's
  name), its Environment, the interval's start, its cost and its cost by resource as decimal text, and the
  object's tags among the request's `tag_names` (`"*"`: all of them) as they were during that interval. The start
  is rounded down to its interval; a partial last interval is left out; `environment_ids` filters by Environment.

What the fake cannot tell: it runs no containers, so nothing accrues by itself. A test charges an App for hours
(`ModalWire.charge`) and the fake bills them with the tags the App carried when charged: the tags the real client
set when it deployed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from tests.fakes.modal_wire.state import content_id

WORKSPACE = "wire-workspace"
# Modal's pricing page, per second (modal.com/pricing as transcribed 2026-07-01), under its own labels.
RATES = {"Nvidia B200": "0.001736", "Nvidia H200": "0.001261", "Nvidia H100": "0.001097",
         "Nvidia RTX PRO 6000": "0.000842", "Nvidia A100, 80 GB": "0.000694", "Nvidia A100, 40 GB": "0.000583",
         "Nvidia L40S": "0.000542", "Nvidia A10": "0.000306", "Nvidia L4": "0.000222", "Nvidia T4": "0.000164",
         "CPU": "0.0000131", "Memory": "0.00000222", "Sandbox CPU": "0.00003942", "Volume storage": "0.0000000347"}
RESOLUTIONS = {"h": timedelta(hours=1), "d": timedelta(days=1)}


@dataclass
class Charge:
    """One App's cost in one hour, by resource, with the tags it carried then."""

    environment: str
    object_id: str
    description: str
    hour: datetime
    cost_by_resource: dict[str, Decimal]
    tags: dict[str, str]


class BillingMixin:
    async def WorkspaceNameLookup(self, stream) -> None:
        await stream.recv_message()
        await stream.send_message(api_pb2.WorkspaceNameLookupResponse(workspace_name=WORKSPACE, username=WORKSPACE))

    async def WorkspaceBillingRates(self, stream) -> None:
        await stream.recv_message()
        rates, deprecated = self.wire.rates, self.wire.deprecated_rates
        formatted = "\n".join(f"{name}: ${value}" for name, value in rates.items())
        await stream.send_message(api_pb2.WorkspaceBillingRatesResponse(
            rates=rates, deprecation_warnings=deprecated, formatted=formatted))

    async def WorkspaceBillingReport(self, stream) -> None:
        request: api_pb2.WorkspaceBillingReportRequest = await stream.recv_message()
        step = RESOLUTIONS.get(request.resolution)
        if step is None:
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid resolution {request.resolution!r}")
        start = _floor(request.start_timestamp.ToDatetime().replace(tzinfo=UTC), step)
        end = request.end_timestamp.ToDatetime().replace(tzinfo=UTC)
        wanted = {content_id("en", e) for e in self.state.environments} if not request.environment_ids else \
            set(request.environment_ids)
        names = set(request.tag_names)
        buckets: dict[tuple[str, datetime], list[Charge]] = {}
        for charge in self.wire.charges:
            interval = _floor(charge.hour, step)
            if content_id("en", charge.environment) in wanted and start <= interval and interval + step <= end:
                buckets.setdefault((charge.object_id, interval), []).append(charge)
        for (object_id, interval), charges in sorted(buckets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            by_resource: dict[str, Decimal] = {}
            for charge in charges:
                for resource, usd in charge.cost_by_resource.items():
                    by_resource[resource] = by_resource.get(resource, Decimal(0)) + usd
            tags = charges[-1].tags  # a tag in use during the interval is reported for the whole of it
            item = api_pb2.WorkspaceBillingReportItem(
                object_id=object_id, description=charges[0].description, environment_name=charges[0].environment,
                cost=str(sum(by_resource.values(), Decimal(0))),
                tags={k: v for k, v in tags.items() if "*" in names or k in names},
                cost_by_resource={k: str(v) for k, v in by_resource.items()})
            item.interval.FromDatetime(interval)
            await stream.send_message(item)


def _floor(instant: datetime, step: timedelta) -> datetime:
    if step == RESOLUTIONS["d"]:
        return instant.replace(hour=0, minute=0, second=0, microsecond=0)
    return instant.replace(minute=0, second=0, microsecond=0)
