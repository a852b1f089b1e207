"""What this machine last saw each stage do, per environment and recipe: `.infra/control/state/<env>/<recipe>.json`.

It lets a stage skip without any remote call when its inputs have not changed since it last succeeded here ("up to
date"), and lets the offline `plan` show what the download and compile stages recorded (real weight sizes, resolved
revisions, whether the kernel cache matches). It is a cache, not the truth: the remote markers and the release manifest
are, and `--force` ignores it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from infra.runtime.files import write_atomically
from infra.runtime.model import Stored


def state_dir() -> Path:
    return Path(os.getenv("INFRA_STATE_DIR") or Path(__file__).resolve().parents[2] / ".infra" / "state")


class Entry(Stored):
    """One stage's last success on this machine: its inputs' fingerprint, its Outcome as data, and when."""

    fingerprint: str = ""
    result: Any = None
    at: float = 0.0


class StageState:
    def __init__(self, env: str, recipe: str):
        self.path = state_dir() / env / f"{recipe}.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def get(self, stage: str) -> Entry | None:
        entry = self._read().get(stage)
        return Entry.read(entry) if isinstance(entry, dict) else None

    def is_current(self, stage: str, fingerprint: str) -> bool:
        entry = self.get(stage)
        return entry is not None and entry.fingerprint == fingerprint

    def record(self, stage: str, fingerprint: str, result: object) -> None:
        data = self._read()
        data[stage] = Entry(fingerprint=fingerprint, result=result, at=time.time()).to_data()
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True))
