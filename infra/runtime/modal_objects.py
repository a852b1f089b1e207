"""The one place that turns the spec's plain data (infra/runtime/spec.py) into Modal SDK objects.

Only the image, Volumes, Secrets and schedule need it; every other key is already Modal's keyword argument. Every
lookup names its Modal Environment: a Volume silently created in the profile's default is a cache nobody reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modal

# The repository root, where the spec's relative local paths (the acceptance suite's sources) are read from.
ROOT = Path(__file__).resolve().parents[2]
LOCAL_PATH_METHODS = ("add_local_dir", "add_local_file")


def image(layers: list[dict[str, Any]]) -> modal.Image:
    first, *rest = layers
    built = getattr(modal.Image, first["method"])(*first["args"], **first["kwargs"])
    for layer in rest:
        args = layer["args"]
        if layer["method"] in LOCAL_PATH_METHODS:
            args = [str(ROOT / args[0]), *args[1:]]
        built = getattr(built, layer["method"])(*args, **layer["kwargs"])
    return built


def volume(spec: dict) -> modal.Volume:
    found = modal.Volume.from_name(spec["name"], environment_name=spec["environment"], create_if_missing=True)
    return found.with_mount_options(read_only=True) if spec.get("read_only") else found


def secret(spec: dict[str, str]) -> modal.Secret:
    return modal.Secret.from_name(spec["name"], environment_name=spec["environment"])


def schedule(spec: dict[str, Any]) -> modal.schedule.Schedule:
    """A cron trigger in a time zone, or a fixed period in seconds (the sentinel's)."""
    if "period_seconds" in spec:
        return modal.Period(seconds=spec["period_seconds"])
    return modal.Cron(spec["cron"], timezone=spec["timezone"])


def options(spec: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `app.server(...)` / `app.function(...)`, from one entry of the spec."""
    converters = {
        "image": image,
        "volumes": lambda mounts: {path: volume(v) for path, v in mounts.items()},
        "secrets": lambda secrets: [secret(s) for s in secrets],
        "schedule": schedule,
    }
    return {key: converters[key](value) if key in converters else value for key, value in spec.items()}
