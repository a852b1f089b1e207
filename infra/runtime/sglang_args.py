"""The SGLang command lines: one argument list for the server, the same list for the kernel compiler.

SGLang compiles DeepGEMM kernels for the shapes its arguments imply (TP, speculative draft shapes, CUDA-graph batch
sizes), so `sglang.compile_deep_gemm` must see exactly the server's arguments minus host and port: both commands are
built from `server_args`. Flag names are always full: argparse's unique prefixes (`--tp` for `--tp-size`) break the
day SGLang adds a flag with the same prefix. infra/control/sglang_flags.py checks them against the recipe's version.
"""

from __future__ import annotations

from infra.runtime.compile_cache import version_tuple
from infra.runtime.deployment import Deployment

HOST = "0.0.0.0"  # listen on all interfaces: Modal's proxy connects from outside the container
# Seconds compile_deep_gemm may spend (its own default); it would poll out all of it after a crash: the job bounds it.
COMPILE_TIMEOUT = 3600
# Flags derived here whose name SGLang changed: the old name, and the first tabled version that spells it the new way
# (--cuda-graph-max-bs: deprecated in 0.5.14, dropped in 0.5.20). tests/test_upgrade.py checks every tabled version.
RENAMED = {"--cuda-graph-max-bs": ("0.5.17", "--cuda-graph-max-bs-decode")}


def spelled(flag: str, version: str) -> str:
    """`flag` as SGLang `version` names it."""
    since, new = RENAMED.get(flag, (None, flag))
    return new if since and version_tuple(version) >= version_tuple(since) else flag


def server_args(d: Deployment, *, snapshot_phase: bool = False) -> list[str]:
    """Everything SGLang needs to know about the model and its parallelism, without host and port."""
    args = [
        "--model-path", d.recipe.model,
        "--revision", d.recipe.model_revision,
        "--served-model-name", d.recipe.model,
        "--tp-size", str(d.recipe.tp_size),  # one shard per GPU
        spelled("--cuda-graph-max-bs", d.recipe.sglang_version), str(d.recipe.cuda_graph_max_bs),
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
        # GPU memory snapshots: SGLang hands its GPU memory back and keeps a CPU copy of the weights.
        args += ["--enable-memory-saver", "--enable-weights-cpu-backup"]
    return args


def launch_command(d: Deployment, port: int | None = None) -> list[str]:
    return ["python3", "-m", "sglang.launch_server", *server_args(d, snapshot_phase=d.startup.gpu_snapshot),
            "--host", HOST, "--port", str(port or d.server.port)]


def compile_command(d: Deployment) -> list[str]:
    return ["python3", "-m", "sglang.compile_deep_gemm", *server_args(d, snapshot_phase=d.startup.gpu_snapshot),
            "--timeout", str(COMPILE_TIMEOUT)]


def flag_values(argv: list[str]) -> list[tuple[str, str | None]]:
    """(flag, value) pairs of an argument list as server_args writes it (a switch's value is None)."""
    pairs: list[tuple[str, str | None]] = []
    for word in argv:
        if word.startswith("--"):
            pairs.append((word, None))
        elif pairs and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], word)
    return pairs
