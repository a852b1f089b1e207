"""Every just-in-time cache SGLang's stack compiles into, kept under one keyed root on the kernel Volume.

A new Modal container is a fresh machine: what SGLang compiled in the last one is gone unless it lives on a Volume
(SGLang 0.5.11 on an H100, tiny model: ~70 s of a ~160 s first start was Triton JIT, the first EAGLE-3 request ~100 s
more). CACHES names each cache and the variable that moves it (each entry cites its source); a variable a version
never reads costs nothing, so every container gets all. A cache is valid only for its key (`cache_key`), whose
fingerprint names its folder:

    <kernel Volume>/compile-cache/<fingerprint>/   one complete tree per key, published whole, never modified
        key.json                                   the key it was compiled for (written last, before publishing)
        deep_gemm/ triton/ inductor/ sglang/ flashinfer/ tvm-ffi/ cuda/

Servers mount the Volume read-only (only the compile job writes) and copy their key's tree to LOCAL_ROOT: Triton,
Inductor, FlashInfer and tvm-ffi write next to what they read, and a Modal container may not mount an overlay.
LOCAL_ROOT is one absolute path everywhere because the caches are path-sensitive (a restore at another path cost 124 s
instead of 74 s on the H100). What a server still compiles stays in its copy: a miss (`misses`), never shared.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from infra.runtime.model import Stored

VOLUME_PATH = "/root/.cache/compile-cache-volume"  # the kernel Volume's mount: read-only in servers
LOCAL_ROOT = "/root/.cache/sglang-compile"  # local disk, the same absolute path in every container
PUBLISHED = "compile-cache"  # folder of published trees on the Volume
KEY_FILE = "key.json"
CUDA_CACHE_MAXSIZE = str(4 * 1024**3)  # the CUDA driver's maximum; its default (256 MiB) evicts


@dataclass(frozen=True)
class Cache:
    name: str
    variable: str
    folder: str  # under the root
    since: str  # first SGLang version (of those we run) whose stack compiles into it at serve time
    source: str  # where the variable is read
    why: str


CACHES: tuple[Cache, ...] = (
    Cache("deep_gemm", "SGLANG_DG_CACHE_DIR", "deep_gemm", "0.5.6.post2",
          "sglang/srt/layers/deep_gemm_wrapper/compile_utils.py (sets DG_JIT_CACHE_DIR from it)",
          "FP8 GEMM kernels for the model's shapes; tens of minutes cold for an 8B FP8 model"),
    Cache("triton", "TRITON_CACHE_DIR", "triton", "0.5.6.post2",
          "triton/knobs.py (cache.dir; default $TRITON_HOME/.triton/cache)",
          "Triton kernels: attention and sampling kernels, speculative-decoding kernels, compiled during "
          "CUDA-graph capture and on the first speculative request"),
    Cache("inductor", "TORCHINDUCTOR_CACHE_DIR", "inductor", "0.5.6.post2",
          "torch/_inductor/runtime/cache_dir_utils.py (FX-graph and AOT-autograd caches inside)",
          "torch.compile output of the functions SGLang compiles"),
    Cache("sglang", "SGLANG_CACHE_DIR", "sglang", "0.5.10.post1",
          "sglang/srt/compilation/backend.py (torch_compile_cache/; redirects Inductor and Triton there)",
          "piecewise CUDA graphs, on by default from 0.5.10 for text models, are torch.compile'd into it"),
    Cache("flashinfer", "FLASHINFER_WORKSPACE_BASE", "flashinfer", "0.5.6.post2",
          "flashinfer/jit/env.py (compiles into $FLASHINFER_WORKSPACE_BASE/.cache/flashinfer)",
          "FlashInfer attention, sampling and MoE kernels that ship as sources, not cubins"),
    Cache("tvm-ffi", "TVM_FFI_CACHE_DIR", "tvm-ffi", "0.5.6.post2",
          "tvm_ffi/cpp/extension.py (default ~/.cache/tvm-ffi); used by sglang/jit_kernel/utils.py",
          "sgl-kernel's just-in-time CUDA kernels (sglang.jit_kernel)"),
    Cache("cuda", "CUDA_CACHE_PATH", "cuda", "0.5.6.post2",
          "CUDA Programming Guide, 'CUDA Environment Variables' (default ~/.nv/ComputeCache)",
          "the driver's SASS for PTX-only kernels (Triton emits PTX and cubins; libraries ship PTX)"),
)


def version_tuple(version: str) -> tuple:
    return tuple(int(piece) if piece.isdigit() else 0 for piece in version.replace(".post", ".").split("."))


def applicable(sglang_version: str) -> list[Cache]:
    """The caches this SGLang version's stack compiles into while serving."""
    return [c for c in CACHES if version_tuple(sglang_version) >= version_tuple(c.since)]


def deepgemm_enabled(environ: dict[str, str]) -> bool:
    """Whether SGLang JIT-compiles DeepGEMM with these variables (parsed as SGLang's EnvBool, srt/environ.py)."""
    return environ.get("SGLANG_ENABLE_JIT_DEEPGEMM", "1").strip().lower() not in ("false", "0", "no", "n")


def environment(root: str | Path = LOCAL_ROOT) -> dict[str, str]:
    """Every cache variable, pointing under `root`: what the server and compile containers set."""
    root = str(root)
    env = {c.variable: os.path.join(root, c.folder) for c in CACHES}
    env["CUDA_CACHE_MAXSIZE"] = CUDA_CACHE_MAXSIZE
    return env


# ---------------------------------------------------------------------------- the key


def cache_key(*, sglang_image: str, gpu_type: str, tp_size: int, server_args: list[str], model: str,
              model_revision: str, draft_model: str | None, draft_revision: str | None) -> dict:
    """Everything that decides what was compiled: compiled code is valid for this and nothing else."""
    return {"sglang_image": sglang_image, "model": model, "model_revision": model_revision, "draft_model": draft_model,
            "draft_revision": draft_revision, "tp_size": tp_size, "gpu_type": gpu_type,
            "server_args": list(server_args)}


def fingerprint(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def published_dir(volume_root: str | Path, fp: str) -> Path:
    return Path(volume_root) / PUBLISHED / fp


# ---------------------------------------------------------------------------- moving trees


class Tally(Stored):
    files: int = 0
    bytes: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(files=self.files + other.files, bytes=self.bytes + other.bytes)


def _tally(folder: Path) -> Tally:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return Tally(files=len(files), bytes=sum(p.stat().st_size for p in files))


def tree_stats(root: str | Path) -> dict[str, Tally]:
    """Files and bytes per cache folder: what a report shows (with their sum as "total")."""
    return {c.name: _tally(Path(root) / c.folder) for c in CACHES}


class KeyFile(Stored):
    """key.json of a published tree, written last: the tree is complete, for this key."""

    fingerprint: str | None = None
    key: dict = Field(default_factory=dict)
    caches: dict[str, Tally] = Field(default_factory=dict)


class Restore(Stored):
    """A compile cache's restore (a start record's `restore`); empty where none was tried."""

    restored: bool | None = Field(default=None, exclude_if=lambda v: v is None)
    fingerprint: str | None = Field(default=None, exclude_if=lambda v: v is None)
    seconds: float | None = Field(default=None, exclude_if=lambda v: v is None)
    files: int | None = Field(default=None, exclude_if=lambda v: v is None)
    bytes: int | None = Field(default=None, exclude_if=lambda v: v is None)
    reason: str | None = Field(default=None, exclude_if=lambda v: v is None)


class Published(Stored):
    published: str
    already_there: bool
    caches: dict[str, Tally]  # per cache, and "total"
    files: int
    seconds: float


def prepare(local_root: str | Path) -> None:
    """An empty local root with every cache folder in it (what a start without a published tree gets)."""
    local_root = Path(local_root)
    if local_root.exists():
        shutil.rmtree(local_root)
    for c in CACHES:
        (local_root / c.folder).mkdir(parents=True, exist_ok=True)


def restore(volume_root: str | Path, fp: str, local_root: str | Path = LOCAL_ROOT) -> Restore:
    """Copy this key's published tree to `local_root`, only where its key.json (written last) names this fingerprint;
    else the local root starts empty and SGLang compiles as usual."""
    started = time.monotonic()
    source = published_dir(volume_root, fp)
    prepare(local_root)
    try:
        recorded = KeyFile.read_json((source / KEY_FILE).read_bytes())
    except (OSError, ValueError):
        reason = f"no published compile cache at {source}"
    else:
        reason = None if recorded.fingerprint == fp else f"{source / KEY_FILE} names {recorded.fingerprint!r}"
    if reason:
        return Restore(restored=False, fingerprint=fp, reason=reason, seconds=round(time.monotonic() - started, 3))
    shutil.copytree(source, local_root, symlinks=True, dirs_exist_ok=True)
    (Path(local_root) / KEY_FILE).unlink(missing_ok=True)
    total = sum(tree_stats(local_root).values(), Tally())
    return Restore(restored=True, fingerprint=fp, seconds=round(time.monotonic() - started, 3), files=total.files,
                   bytes=total.bytes)


def publish(local_root: str | Path, volume_root: str | Path, key: dict, *, replace: bool = False) -> Published:
    """Put the compiled tree on the Volume under its key, whole or not at all (key.json written last, then renamed into
    place). A tree already there (another job won a race) is kept, unless `replace`. Servers never see a swap half
    done: a container reads the Volume as committed when it mounted it."""
    started = time.monotonic()
    fp = fingerprint(key)
    final = published_dir(volume_root, fp)
    staging = final.parent / f".incoming-{fp}-{uuid.uuid4().hex[:8]}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(local_root, staging, symlinks=True)
    stats = tree_stats(staging)
    total = sum(stats.values(), Tally())
    stats |= {"total": total}
    (staging / KEY_FILE).write_text(KeyFile(fingerprint=fp, key=key, caches=stats).model_dump_json(indent=1))
    kept = final.exists() and not replace
    if kept:
        shutil.rmtree(staging)
    else:
        old = final.parent / f".replaced-{fp}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    return Published(published=str(final), already_there=kept, caches=stats, files=total.files,
                     seconds=round(time.monotonic() - started, 3))


# ---------------------------------------------------------------------------- cache misses


# Files a start writes into the root that are not compiled code, so never a miss:
NOT_COMPILED = (
    # SGLang 0.5.10+ writes a readable copy of each piecewise graph, named by the time, at every start
    # (srt/compilation/backend.py: f"computation_graph_{time.time()}.py"): measured 2 per start on the H200.
    "sglang/*/computation_graph_*.py",
    "*.lock",  # file locks taken around a compile or a load
)
MISS_EXAMPLES = 5  # paths named per cache in a record


def listing(root: str | Path) -> dict[str, int]:
    """Every file under the root: path relative to it -> size (what a start is compared against)."""
    root = Path(root)
    out = {}
    for path in root.rglob("*") if root.is_dir() else ():
        if path.is_file():
            try:
                out[path.relative_to(root).as_posix()] = path.stat().st_size
            except OSError:  # removed while we looked (a temporary file renamed into place)
                continue
    return out


class CacheMisses(Stored):
    """What one compile cache gained while the server started (a start record's `misses`)."""

    files: int = 0
    bytes: int = 0
    examples: list[str] = Field(default_factory=list)


def misses(root: str | Path, before: dict[str, int]) -> dict[str, CacheMisses]:
    """New files in the root since `before` (the restored tree), by cache, with examples, NOT_COMPILED left out:
    anything a start compiles is a miss the compile job did not cover."""
    folders = {c.folder: c.name for c in CACHES}
    out: dict[str, CacheMisses] = {}
    for rel, size in sorted(listing(root).items()):
        if rel in before or any(fnmatch.fnmatch(rel, pattern) for pattern in NOT_COMPILED):
            continue
        entry = out.setdefault(folders.get(rel.split("/", 1)[0], "other"), CacheMisses())
        entry.files += 1
        entry.bytes += size
        if len(entry.examples) < MISS_EXAMPLES:
            entry.examples.append(rel)
    return out


def describe_misses(found: dict[str, CacheMisses]) -> str:
    """'triton 64 files (0.6 MB, e.g. triton/DKIV.../write_req_to_token_pool_triton.cubin)'."""
    return "; ".join(f"{name} {m.files} files ({m.bytes / 1e6:.1f} MB, e.g. {m.examples[0]})"
                     for name, m in sorted(found.items()))
