"""The SGLang command lines: one argument list for the server, the same list for the kernel compiler.

SGLang compiles DeepGEMM kernels for the shapes its arguments imply (tensor
parallelism, speculative draft shapes, CUDA-graph batch sizes), so
`sglang.compile_deep_gemm` must see exactly the server's arguments minus
host and port; both commands are built from `server_args` and a test keeps them equal.

Flag names are always the full ones. SGLang's argparse accepts unique prefixes
(`--tp` for `--tp-size`), which pass today and break the day SGLang adds a flag
with the same prefix; `check_flags` rejects any flag the recipe's SGLang version
does not declare, using the table in sglang_versions.json.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from infra.deployment import Deployment
from infra.errors import ConfigError

HOST = "0.0.0.0"  # listen on all interfaces: Modal's proxy connects from outside the container
# Seconds compile_deep_gemm may spend before giving up (its own default is 3600). It does not
# notice a crashed server and would poll out the whole timeout, so the stage also bounds it.
COMPILE_TIMEOUT = 3600


@cache
def _versions() -> dict:
    return json.loads((Path(__file__).parent / "sglang_versions.json").read_text())["versions"]


def supported_versions() -> list[str]:
    return sorted(_versions())


def known_flags(version: str) -> frozenset[str]:
    try:
        return frozenset(_versions()[version]["flags"])
    except KeyError:
        raise ConfigError(
            f"sglang_version = {version!r} has no flag table; known versions: {', '.join(supported_versions())} "
            "(add it to infra/sglang_versions.json)"
        ) from None


def has_endpoint(version: str, path: str) -> bool:
    return path in _versions().get(version, {}).get("endpoints", [])


def server_args(d: Deployment, *, snapshot_phase: bool = False) -> list[str]:
    """Everything SGLang needs to know about the model and its parallelism, without host and port."""
    args = [
        "--model-path", d.recipe.model,
        "--revision", d.recipe.model_revision,
        "--served-model-name", d.recipe.model,
        "--tp-size", str(d.recipe.tp_size),  # one shard per GPU
        "--cuda-graph-max-bs", str(d.recipe.cuda_graph_max_bs),
        "--mem-fraction-static", str(d.recipe.mem_fraction_static),
    ]
    for flag, value in d.recipe.extra_flags:
        args += [flag] if value is None else [flag, value]
    if spec := d.recipe.speculative:
        args += ["--speculative-algorithm", spec.algorithm]
        if spec.draft_model:
            args += ["--speculative-draft-model-path", spec.draft_model]
            if spec.draft_revision:
                args += ["--speculative-draft-model-revision", spec.draft_revision]
        args += [
            "--speculative-num-steps", str(spec.num_steps),
            "--speculative-eagle-topk", str(spec.eagle_topk),
            "--speculative-num-draft-tokens", str(spec.num_draft_tokens),
        ]
    if snapshot_phase:
        # GPU memory snapshots: SGLang must be able to hand its GPU memory back
        # (/release_memory_occupation) while keeping a CPU copy of the weights.
        args += ["--enable-memory-saver", "--enable-weights-cpu-backup"]
    return args


def launch_command(d: Deployment) -> list[str]:
    return [
        "python3", "-m", "sglang.launch_server",
        *server_args(d, snapshot_phase=d.gpu_snapshot),
        "--host", HOST,
        "--port", str(d.server.port),
    ]


def compile_command(d: Deployment) -> list[str]:
    return [
        "python3", "-m", "sglang.compile_deep_gemm",
        *server_args(d, snapshot_phase=d.gpu_snapshot),
        "--timeout", str(COMPILE_TIMEOUT),
    ]


def flags_in(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


def check_flags(d: Deployment) -> None:
    """Refuse any flag the recipe's SGLang version does not declare by its full name."""
    known = known_flags(d.recipe.sglang_version)
    for flag in flags_in(launch_command(d)):
        if flag not in known:
            raise ConfigError(
                f"recipe '{d.recipe.name}': SGLang {d.recipe.sglang_version} has no flag {flag} "
                f"(full flag names only; flags belong to versions: see infra/sglang_versions.json)"
            )
