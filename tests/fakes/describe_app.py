"""Import infra.app (as Modal would) and print its real Modal definition as JSON.

Run in a subprocess by tests/test_app.py, twice: once as the deploying machine
(repository on the path, INFRA_ENV/INFRA_RECIPE set), once as the container
(`--container`: only a copy of the `infra` package on the path, only the variables
Modal injects, the Modal runtime marked as running, and local-only libraries
made unimportable). The two outputs must be identical.

The definition is read back from the SDK's own objects (the Server's function
spec, autoscaler and HTTP config, the image's Dockerfile commands, the Secret
holding the environment), not from our inputs, so it is what Modal would receive.
"""

from __future__ import annotations

import importlib.abc
import json
import sys


class _Blocked(importlib.abc.MetaPathFinder):
    """Libraries the container image does not have: importing one must fail loudly."""

    BLOCKED = ("pydantic", "pydantic_settings", "invoke", "tests", "stages", "huggingface_hub")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is not available in the container")
        return None


def closure(fn) -> dict:
    return dict(zip(fn.__code__.co_freevars, [c.cell_contents for c in fn.__closure__ or ()]))


def dockerfile(image) -> list[list[str]]:
    layers = []
    cells = closure(image._load)
    if "base_image" in cells:  # a mount layer (our package, added at container start)
        return dockerfile(cells["base_image"]) + [["MOUNT local python source"]]
    for base in (cells.get("base_images") or {}).values():
        layers += dockerfile(base)
    if fn := cells.get("dockerfile_function"):
        layers.append(fn("2025.06").commands)
    return layers


def describe(module) -> dict:
    from modal._utils.async_utils import synchronizer

    server = synchronizer._translate_in(module.SGLangServer)
    fn = server._get_service_function()
    cells = closure(fn._load)
    http, autoscaler = cells["http_config"], cells["autoscaler_settings"]
    secrets = [s._load_env_dict() for s in cells["secrets"] if hasattr(s, "_load_env_dict")]
    from modal._partial_function import _PartialFunctionFlags

    user_cls = server._get_user_cls()
    methods = {
        name: _PartialFunctionFlags(synchronizer._translate_in(value).flags).name
        for name, value in vars(user_cls).items()
        if not name.startswith("_")
    }
    return {
        "app": module.app.name,
        "server": cells["tag"],
        "gpu": cells["gpu"],
        "regions": list(cells["scheduler_placement"].regions) if cells["scheduler_placement"] else None,
        "volumes": {
            path: [v.name, v._load_context_overrides.environment_name] + (["read-only"] if v._mount_options and v._mount_options.read_only else [])
            for path, v in cells["validated_volumes_no_cloud_buckets"]
        },
        "port": http.port,
        "routing_regions": list(http.proxy_regions),
        "startup_timeout": http.startup_timeout,
        "exit_grace_period": http.exit_grace_period,
        "unauthenticated": http.unauthenticated,
        "min_containers": autoscaler.min_containers,
        "max_containers": autoscaler.max_containers if autoscaler.HasField("max_containers") else None,
        "target_concurrency": autoscaler.target_concurrency_float,
        "enable_memory_snapshot": cells["enable_memory_snapshot"],
        "experimental_options": cells["experimental_options"],
        "env": secrets,
        "image": dockerfile(synchronizer._translate_in(cells["image"])),
        "methods": methods,
    }


if __name__ == "__main__":
    if "--container" in sys.argv:
        sys.meta_path.insert(0, _Blocked())
        from modal._runtime.task_lifecycle_manager import _TaskLifecycleManager

        _TaskLifecycleManager._singleton = object()  # what Modal's container entrypoint sets: is_local() is False
    import infra.app

    print(json.dumps(describe(infra.app), sort_keys=True))
