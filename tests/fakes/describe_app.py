"""Import infra.runtime.app (as Modal would) and print its real Modal definition as JSON.

Run in a subprocess by tests/test_app.py, twice: once as the deploying machine
(repository on the path, INFRA_ENV/INFRA_RECIPE set), once as the container
(`--container`: only a copy of infra/runtime on the path, only the variables
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
    """What a container does not have: the laptop's libraries and packages (only infra/runtime is mounted), and
    libraries one of its images lacks (the server image has no cron library, the scheduler image no Hub client)."""

    BLOCKED = ("pydantic_settings", "invoke", "tests", "stages", "huggingface_hub", "cronsim", "aiohttp")

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


def _env_and_secrets(secrets) -> tuple[dict, list[dict]]:
    """`env=` arrives as a Secret made from a dict; named Secrets are references (name, Modal Environment)."""
    env, named = {}, []
    for secret in secrets:
        if callable(getattr(secret, "_load_env_dict", None)):
            env |= secret._load_env_dict()
        else:
            named.append({"name": secret._name, "environment": secret._load_context_overrides.environment_name})
    return env, named


def _volumes(pairs) -> dict:
    def read_only(v) -> bool:
        return bool(v._read_only or (v._mount_options and v._mount_options.read_only))

    return {path: {"name": v._name, "environment": v._load_context_overrides.environment_name,
                   "read_only": read_only(v)}
            for path, v in pairs}


def as_spec(fn, image_of_spec) -> dict:
    """One Function's definition as Modal received it, in infra/runtime/spec.py's shape (image as Dockerfile
    commands)."""
    cells = closure(fn._load)
    env, named = _env_and_secrets(cells["secrets"])
    out = {
        "image": dockerfile(synchronizer_in(cells["image"])),
        "volumes": _volumes(cells["validated_volumes_no_cloud_buckets"]),
        "env": env,
        "secrets": named,
        "gpu": cells["gpu"],
        "timeout": cells["timeout"],
    }
    if cells["is_server"]:
        http, autoscaler = cells["http_config"], cells["autoscaler_settings"]
        placement = cells["scheduler_placement"]
        out |= {
            "name": cells["tag"],
            "port": http.port,
            "routing_region": list(http.proxy_regions)[0] if http.proxy_regions else None,
            "compute_region": list(placement.regions)[0] if placement and placement.regions else None,
            "target_concurrency": autoscaler.target_concurrency_float,
            "min_containers": autoscaler.min_containers,
            "max_containers": autoscaler.max_containers if autoscaler.HasField("max_containers") else None,
            "buffer_containers": autoscaler.buffer_containers if autoscaler.HasField("buffer_containers") else None,
            "scaledown_window": autoscaler.scaledown_window if autoscaler.HasField("scaledown_window") else None,
            "startup_timeout": http.startup_timeout,
            "exit_grace_period": http.exit_grace_period,
            "unauthenticated": http.unauthenticated,
            "enable_memory_snapshot": cells["enable_memory_snapshot"],
            "experimental_options": cells["experimental_options"],
            "cpu": cells["cpu"],
            "memory": cells["memory"],
        }
        out.pop("timeout")
    elif cells["schedule"] is not None:  # a scheduled Function (the warm-floor scheduler)
        cron = cells["schedule"].proto_message.cron
        out |= {"schedule": {"cron": cron.cron_string, "timezone": cron.timezone},
                "retries": cells["retry_policy"].retries if cells["retry_policy"] else None}
        out.pop("gpu")
        out.pop("volumes")
        out.pop("secrets")
    else:
        out |= {"cpu": cells["cpu"], "memory": cells["memory"]}
    return out


def synchronizer_in(obj):
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def describe(module) -> dict:
    from modal._utils.async_utils import synchronizer

    server = synchronizer._translate_in(module.SGLangServer)
    fn = server._get_service_function()
    cells = closure(fn._load)
    http, autoscaler = cells["http_config"], cells["autoscaler_settings"]
    secrets = [s._load_env_dict() for s in cells["secrets"] if callable(getattr(s, "_load_env_dict", None))]
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
            path: [v.name, v._load_context_overrides.environment_name]
            + (["read-only"] if v._mount_options and v._mount_options.read_only else [])
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


def definitions() -> dict:
    """The server's and the jobs' definitions, read back from the SDK objects `infra.runtime.app` and
    `infra.runtime.jobs` built."""
    import infra.control.modal_entry  # noqa: F401  (resolves INFRA_ENV/INFRA_RECIPE, as `modal deploy -m` does)
    import infra.runtime.app
    import infra.runtime.jobs

    server = synchronizer_in(infra.runtime.app.SGLangServer)._get_service_function()
    jobs = {name: synchronizer_in(getattr(infra.runtime.jobs, name))
            for name in ("download_weights", "compile_kernels", "gpu_test")}
    scheduled = {name: synchronizer_in(value) for name, value in vars(infra.runtime.app).items()
                 if name.startswith("apply_floor_")}
    return {
        "app": infra.runtime.app.app.name,
        "jobs_app": infra.runtime.jobs.app.name,
        "app_tags": synchronizer_in(infra.runtime.app.app)._local_state.tags,
        "jobs_app_tags": synchronizer_in(infra.runtime.jobs.app)._local_state.tags,
        "server": as_spec(server, None),
        "scheduler": {name: as_spec(fn, None) for name, fn in scheduled.items()},
        "jobs": {name: as_spec(fn, None) for name, fn in jobs.items()},
    }


if __name__ == "__main__":
    if "--definitions" in sys.argv:
        print(json.dumps(definitions(), sort_keys=True))
        raise SystemExit
    if "--container" in sys.argv:
        sys.meta_path.insert(0, _Blocked())
        from modal._runtime.task_lifecycle_manager import _TaskLifecycleManager

        _TaskLifecycleManager._singleton = object()  # what Modal's container entrypoint sets: is_local() is False
    else:
        import infra.control.modal_entry  # noqa: F401  (the laptop: settings resolved into INFRA_DEPLOYMENT)
    import infra.runtime.app

    print(json.dumps(describe(infra.runtime.app), sort_keys=True))
