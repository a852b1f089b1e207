"""The bases of the models: a deployment's parts (`Frozen`) and the records this project keeps (`Stored`).

One pydantic model family is the configuration on the laptop and inside the containers: validated once where it is
resolved, read back there with the same classes. `on_the_laptop` skips the checks that need what only the laptop has
(cron parsing, the time-zone database) where RESOLVED JSON is read back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo

# Validation context of a container reading the deployment it was deployed with: already checked.
RESOLVED = {"resolved": True}
T = TypeVar("T")


class Frozen(BaseModel):
    """A part of a deployment: unknown keys are errors, values are checked strictly, nothing changes after.
    Numbers are finite: TOML reads `nan` and `inf` as floats, and no rate, timeout or size means either."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def is_resolved(info: ValidationInfo) -> bool:
    return info.context == RESOLVED


def on_the_laptop(check: Callable[[T], T]) -> Callable[[T, ValidationInfo], T]:
    """A field check that runs where settings are resolved, and not again where RESOLVED data is read back."""

    def run(value: T, info: ValidationInfo) -> T:
        return value if is_resolved(info) else check(value)

    run.__name__ = check.__name__
    return run


class Stored(BaseModel):
    """A record this project writes and reads back (a manifest, a report, a start): strict when written (unknown keys
    are errors, `to_data` dumps JSON types), tolerant when read (`read`: keys a newer version wrote are ignored, a field
    added since takes its default). Older layouts are upgraded by the owning model, one named function per layout."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    @classmethod
    def read(cls, data: object) -> Self:
        return cls.model_validate(data, extra="ignore", strict=False, context=RESOLVED)

    @classmethod
    def read_json(cls, text: str | bytes) -> Self:
        return cls.model_validate_json(text, extra="ignore", strict=False, context=RESOLVED)

    def to_data(self) -> dict:
        return self.model_dump(mode="json")
