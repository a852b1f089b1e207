"""Real SGLang on a real GPU, reached through this project's own path: settings -> resolve ->
launch command -> lifecycle. Shared by the GPU acceptance suite (tests/gpu/) and the GPU
benchmarks (benchmarks/cold_start_gpu.py, benchmarks/bench_vs_bench_serving.py).

No Hub and no real weights: a tiny Qwen3 (hidden size 256, 4 layers) and a tiny EAGLE-3
drafter are written into a Hugging Face cache at fixed commits, with a tokenizer trained
here and a Qwen3-style chat template, and served with `--load-format dummy` (random
weights: the text is gibberish, the protocol and every kernel are real) and
HF_HUB_OFFLINE=1, so `--revision <commit>` resolves exactly as in a container after
`invoke download`. Nothing here imports torch or SGLang: the test process must hold no
GPU memory of its own, or "memory freed" could not be checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from infra.control import sglang_flags
from infra.runtime import compile_cache
from infra.runtime.deployment import Deployment
from infra.runtime.lifecycle import Readiness
from infra.runtime.recipes.base import SmokeTest

RECIPE = "qwen3-8b-low-latency"  # the EAGLE-3 recipe: its flags, warm-up and speculative settings
TARGET = "infra-test/tiny-qwen3"
TARGET_COMMIT = "51ab7e2c4d0f9e8a7b6c5d4e3f2a1b0c9d8e7f60"
DRAFT = "infra-test/tiny-qwen3-eagle3"
DRAFT_COMMIT = "e3a9c1d7f5b3a1c9e7d5b3f1a9c7e5d3b1f9a7c5"


def _installed_sglang(default: str = "0.5.11") -> str:
    """The SGLang this machine runs (0.5.11 by default: the first release whose torch pin matches the GPU machine's
    image; a site of 0.5.17, the last with that pin, runs the suite at 0.5.17, as after `invoke upgrade`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sglang")
    except PackageNotFoundError:
        return default


GPU_SGLANG_VERSION = _installed_sglang()
# Which part of the suite runs (infra/runtime/acceptance.py sets these under `invoke gpu-test`; unset: tiny, as a
# developer's `python -m pytest tests/gpu` always did).
SHAPE = os.environ.get("GPU_SUITE_SHAPE") or "tiny"
SUITE_RECIPE = os.environ.get("GPU_SUITE_RECIPE") or None
READY_LINE = "The server is fired up and ready to roll!"  # SGLang's log line once /health turns 200
# Serving a random tiny model on the stripped GPU site (../shared/gpu/README.md): no FA3, no FP8 DeepGEMM.
TINY_FLAGS = (
    ("--load-format", "dummy"),
    ("--attention-backend", "triton"),
    ("--sampling-backend", "pytorch"),
)
# The drafter's KV pool is large next to a tiny target: leave room for it.
MEM_FRACTION = 0.6
VOCAB = 4096
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]  # ordinary added tokens, as in Qwen3's tokenizer: they stay in the decoded text
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | "
    "join('') -%}{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + text + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif "
    "-%}{%- endif -%}"
)


# Tensor parallelism of the suite's servers: GPU_SUITE_TP=2 runs it as the low-latency recipe does, on two GPUs
# (the tiny model's 4 attention and 2 key-value heads divide by 2).
TP = int(os.environ.get("GPU_SUITE_TP", "1"))
# NCCL's, PyTorch's and NVSHMEM's NVLink multicast off, in every server's environment.
NO_NVLINK_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def unavailable_reason() -> str | None:
    """Why real SGLang cannot run here, or None when a CUDA GPU and SGLang are both present."""
    if not shutil.which("nvidia-smi"):
        return "no CUDA GPU here (nvidia-smi not found)"
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no CUDA GPU here (nvidia-smi -L: {exc})"
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return f"no CUDA GPU here (nvidia-smi -L: {(listed.stdout + listed.stderr).strip()[:200]})"
    if (gpus := listed.stdout.count("GPU ")) < TP:
        return f"GPU_SUITE_TP={TP} needs {TP} GPUs; this machine has {gpus}"
    for module in ("torch", "sglang"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed here (the GPU suite launches real SGLang)"
    return None


# ---------------------------------------------------------------------------- the tiny models


def _snapshot(hub: Path, repo: str, commit: str) -> Path:
    base = hub / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _train_tokenizer(path: Path) -> dict[str, int]:
    """A byte-level BPE trained on a small generated corpus: " hello" is one token, as with Qwen's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    words = ["hello", "world", "the", "a", "is", "what", "this", "image", "pirate", "harvard", "singular", "value",
             "decomposition", "explain", "tell", "me", "joke", "how", "are", "you", "think", "answer", "model"]
    rng = random.Random(15)  # fixed: the same tokenizer on every build
    letters = "abcdefghijklmnopqrstuvwxyz"
    made_up = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(6000)]
    corpus = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(40)) for i in range(400)]
    corpus += [" ".join(made_up[i : i + 50]) for i in range(0, len(made_up), 50)] * 3
    corpus += [" hello" * 64, "".join(chr(c) for c in range(32, 127)) * 4]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 64 - len(THINK), special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.add_tokens(THINK)
    if tokenizer.get_vocab_size() != VOCAB - 64:  # every id the model can emit must decode to text
        raise RuntimeError(f"tiny tokenizer has {tokenizer.get_vocab_size()} tokens, wanted {VOCAB - 64}")
    tokenizer.save(str(path))
    return {tok: tokenizer.token_to_id(tok) for tok in SPECIAL + THINK}


def build_tiny_models(hub: Path) -> dict:
    """Write the tiny target and drafter into the Hugging Face cache at `hub` (HF_HUB_CACHE); idempotent."""
    hub = Path(hub)
    target = _snapshot(hub, TARGET, TARGET_COMMIT)
    ids = _train_tokenizer(target / "tokenizer.json")
    eos = ids["<|im_end|>"]
    common = {
        "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 64, "vocab_size": VOCAB - 64, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": eos,
    }
    (target / "config.json").write_text(json.dumps(common | {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": 4,
        "attention_bias": False, "use_sliding_window": False, "sliding_window": None, "max_window_layers": 4,
    }, indent=1))
    # Qwen3's own sampling defaults: what a request without sampling parameters gets.
    (target / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": eos, "do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95}))
    (target / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": 4096, "chat_template": CHAT_TEMPLATE,
    }, indent=1))
    draft = _snapshot(hub, DRAFT, DRAFT_COMMIT)
    # EAGLE-3: one layer reading three of the target's hidden states. With 4 target layers
    # SGLang's default choice (2, n/2, n-3) repeats a layer, so name three distinct ones.
    (draft / "config.json").write_text(json.dumps(common | {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "num_hidden_layers": 1,
        "draft_vocab_size": VOCAB - 64, "target_hidden_size": 256,
        "eagle_config": {"use_aux_hidden_state": True, "eagle_aux_hidden_state_layer_ids": [0, 1, 2]},
    }, indent=1))
    return {"hub": str(hub), "target": str(target), "draft": str(draft), "eos_token_id": eos}


# ---------------------------------------------------------------------------- the deployment


def ephemeral_ports() -> range:
    """The range the kernel hands out as source ports of outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A free port SGLang accepts, and one that stays free until SGLang binds it.

    0.5.11 also listens on port + 10000 (gRPC) and refuses to start above 55535. Both must lie outside the ephemeral
    range: SGLang binds its HTTP port last, after its processes have connected to each other, and on 2026-12-02 one of
    those connections (or compile_deep_gemm's, in the ten minutes before) held 34634 as its source port, so the compile
    job's server, fully started, failed with EADDRINUSE. On Modal the port is the recipe's (8000), below that range."""
    ephemeral = ephemeral_ports()
    candidates = [p for p in range(20000, 45000) if p not in ephemeral and p + 10000 not in ephemeral]
    if not candidates:
        raise RuntimeError(f"no port pair below the ephemeral range {ephemeral.start}-{ephemeral.stop - 1}")
    rng = random.SystemRandom()
    while True:
        port = rng.choice(candidates)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def tiny_deployment(
    *, port: int, speculative: bool = True, reasoning_parser: bool = False, snapshot: bool = False,
    sglang_version: str = GPU_SGLANG_VERSION,
) -> Deployment:
    """The low-latency recipe resolved by the project's settings, on one GPU, serving the tiny models.

    Settings carry what they can (model, revisions, one GPU); the rest is what no setting
    offers because only a test needs it: the tiny drafter, SGLang 0.5.11, the dummy weights."""
    from infra.control.resolve import resolve  # local side: pydantic
    from infra.control.settings import load_settings, parse_overrides

    at = f"recipes.{RECIPE}"
    settings = load_settings("dev", RECIPE, parse_overrides([
        f"{at}.model={TARGET}", f"{at}.model_revision={TARGET_COMMIT}", f"{at}.draft_revision={DRAFT_COMMIT}",
        f"{at}.gpu_count={TP}",
    ]))
    d = resolve(settings, RECIPE)
    spec = d.recipe.speculative.model_copy(update=dict(draft_model=DRAFT,
                                                       draft_revision=DRAFT_COMMIT)) if speculative else None
    flags = d.recipe.extra_flags + TINY_FLAGS + ((("--reasoning-parser", "qwen3"),) if reasoning_parser else ())
    d = d.with_recipe(d.recipe.model_copy(update=dict(sglang_version=sglang_version, mem_fraction_static=MEM_FRACTION,
                                          extra_flags=flags, speculative=spec)))
    d = d.model_copy(update=dict(server=d.server.model_copy(update=dict(port=port, hf_hub_offline=True)),
                                 startup=d.startup.model_copy(update=dict(gpu_snapshot=snapshot))))
    if sglang_version in sglang_flags.supported_versions():
        sglang_flags.check_flags(d)  # the flag table of the version that runs, where the project has one
    return d


def server_environment(hub: str | Path, cache_root: str | Path) -> dict[str, str]:
    """The server container's variables: weights offline from the cache, every JIT cache under `cache_root`."""
    env = dict(os.environ)
    env |= {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env |= NO_NVLINK_MULTICAST  # shared multi-GPU hosts: multicast can take the host's GPUs out of service
    env |= compile_cache.environment(cache_root)
    return env


def readiness(d: Deployment, budget: float = 540.0) -> Readiness:
    return Readiness(timeout=budget, poll_interval=d.recipe.health_poll_interval, warmup=d.recipe.warmup,
                     model=d.recipe.model,
                     startup_budget=budget)


def smoke_test(thinking_off: bool) -> SmokeTest:
    """The VLM recipe's smoke request, text only: random weights may say EOS at once, so all tokens are generated."""
    extra = {"chat_template_kwargs": {"enable_thinking": False}} if thinking_off else {}
    return SmokeTest(prompt="What is this?", max_tokens=48, extra_body=extra | {"temperature": 0, "ignore_eos": True})


# ---------------------------------------------------------------------------- watching processes and the GPU


def gpu_memory_used_mib() -> int:
    """Memory in use on every GPU of the machine, summed (a TP server holds memory on each)."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return sum(int(x) for x in out.split())


def wait_for_gpu_memory_at_most(limit_mib: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    used = gpu_memory_used_mib()
    while used > limit_mib and time.monotonic() < deadline:
        time.sleep(0.25)
        used = gpu_memory_used_mib()
    return used


class ExitWatch:
    """When did a process end? /proc polled every 5 ms, independently of whoever reaps it."""

    def __init__(self, pid: int):
        import threading

        self.pid = pid
        self.exited_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, IndexError):
                state = None
            if state in (None, "Z", "X"):
                self.exited_at = time.monotonic()
                return
            time.sleep(0.005)

    def join(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        return self.exited_at
