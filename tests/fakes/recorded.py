"""What a stage asked of Modal: the real ModalRemote, each public call written down (method, arguments by name).

Not a fake: every call goes on to ModalRemote and through the real `modal` client to the fake control plane
(tests/fakes/modal_wire). It only records, so that a test can say which calls a stage made and with what; a new
ModalRemote method is recorded without a line here.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from infra.runtime.remote import ModalRemote

LOCAL = {"require_credentials"}  # a look at this machine's configuration, not a call to Modal: not recorded


class Recorded:
    def __init__(self, remote: ModalRemote | None = None):
        self.remote = remote or ModalRemote()
        self.log: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.remote, name)
        if name.startswith("_") or name in LOCAL or not callable(found):
            return found

        @functools.wraps(found)
        def call(*args, **kwargs):
            bound = inspect.signature(found).bind(*args, **kwargs)
            arguments = dict(bound.arguments)
            for parameter in bound.signature.parameters.values():
                if parameter.kind is parameter.VAR_KEYWORD:  # update_autoscaler(d, min_containers=3): by their names
                    arguments |= arguments.pop(parameter.name, {})
            self.log.append({"method": name, "args": arguments})
            return found(*args, **kwargs)

        return call

    def calls(self) -> list[dict[str, Any]]:
        return list(self.log)

    def call_names(self) -> list[str]:
        return [c["method"] for c in self.log]
