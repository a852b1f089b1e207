"""Small file helpers shared by the container-side jobs and the local state (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path

# The folder, inside each cache Volume, of completion markers: a job writes its marker only
# after what it produced is on the Volume and committed, so a marker is never a lie.
MARKERS = ".infra-complete"


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a part: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
