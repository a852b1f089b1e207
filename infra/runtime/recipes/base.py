"""The shape of a recipe: typed fields for every knob that settings validate or override, plain flag lists for the rest.

An environment's `[recipes."<name>"]` knobs are checked by these fields' own types and applied with `model_copy`; the
resolved recipe is what a release carries from one environment to the next.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from infra.runtime import catalog
from infra.runtime.compile_cache import VOLUME_PATH
from infra.runtime.model import Frozen

MINUTES = 60  # seconds

# Where the two cache Volumes are mounted: weights, and every compiled cache (infra/runtime/compile_cache.py).
HF_CACHE_PATH = "/root/.cache/huggingface"
KERNELS_PATH = VOLUME_PATH
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _model_id(value: str) -> str:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
        raise ValueError("not a Hugging Face repository id; allowed: 'org/name'")
    return value


def _revision(value: str) -> str:
    if not value.strip():
        raise ValueError("revision is empty; give a 40-hex commit (or a branch or tag where pinning is not required)")
    return value


# Field types whose checks travel with them: an environment's knob of the same name is checked the same way.
ModelId = Annotated[str, AfterValidator(_model_id)]
Revision = Annotated[str, AfterValidator(_revision)]
GpuType = Annotated[str, AfterValidator(catalog.check_gpu)]
ComputeRegion = Annotated[str, AfterValidator(lambda v: catalog.check_region(v, catalog.COMPUTE_REGIONS))]
RoutingRegion = Annotated[str, AfterValidator(lambda v: catalog.check_region(v, catalog.ROUTING_REGIONS))]


class SpeculativeDecoding(Frozen):
    """SGLang speculative decoding: a cheap drafter proposes tokens, the model verifies them in parallel."""

    algorithm: str  # --speculative-algorithm
    num_steps: int  # --speculative-num-steps
    eagle_topk: int  # --speculative-eagle-topk
    num_draft_tokens: int  # --speculative-num-draft-tokens
    # A separate draft model (EAGLE-3). None where the model drafts for itself (multi-token prediction).
    draft_model: ModelId | None = None
    # None means unpinned: the reference leaves it so, and `plan` flags it.
    draft_revision: Revision | None = None
    # The floor `invoke gpu-test --shape model` holds mean tokens accepted per verify step to (completion_tokens /
    # spec_verify_ct, greedy, on the warm-up prompt). A drafter that does not match the model has almost every draft
    # rejected and accepts ~1.0, so a floor above 1 proves the drafts are used. None: not checked.
    min_accept_length: float | None = None


class Warmup(Frozen):
    """Requests the container sends itself before Modal may route traffic to it."""

    count: int
    prompt: str
    max_tokens: int  # generated in full (ignore_eos): enough decode steps to run speculative decoding
    # Seconds per request after the first, which may compile and gets what is left of startup_timeout.
    timeout: float
    with_image: bool = False  # attach the packaged warm-up image (vision models)


class SmokeTest(Frozen):
    """The request `invoke smoke` streams from a deployed endpoint."""

    prompt: str
    system_prompt: str | None = None
    max_tokens: int = 128
    with_image: bool = False
    extra_body: dict[str, object] = Field(default_factory=dict)
    # With a reasoning parser a reply may be all `reasoning_content`: enough only where the recipe says so.
    accept_reasoning_only: bool = False


class GateWorkload(Frozen):
    """The workload a promotion gate measures a release with (infra/perf/gate.py maps it onto `invoke bench`): fixed
    per recipe, so that two measurements of its releases compare."""

    prompt_tokens: int = 512  # a chat-sized prompt; prefill stays a small part of TTFT, as in the reference examples
    max_tokens: int = 128  # generated exactly (ignore_eos), so TPOT and tokens/s compare across releases
    # Greedy: deterministic output, and the speculative drafter's acceptance rate does not move with sampling
    # noise, so a release that loses its speed-up shows it. (Sampled traffic accepts fewer drafts: the gate's
    # throughput is a comparison point between releases, not a capacity figure.)
    temperature: float = 0.0
    # Measured requests per level. p90 from n samples rests on the ~n/10 slowest: with 100 there are 10, and
    # the sample p90 lies between the true p84 and p96 with 95% confidence (order statistics, normal
    # approximation 90 ± 1.96·√(100·0.9·0.1) ranks). With 40 it would be p81..p99: too loose for a 10% budget.
    requests: int = 100
    warmup_rounds: int = 1  # unmeasured rounds per level: connections open, the batch is awake
    timeout: float = 120.0  # seconds for one request; far above any sane E2E, so a stall counts as an error
    with_image: bool = False  # send the packaged image (infra/assets) with every request (vision models)


class Recipe(Frozen):
    name: str
    description: str
    source: str  # the reference document this recipe reproduces

    # The container image
    sglang_image: str  # registry tag, pinned
    sglang_version: str  # decides which SGLang flags and values exist (infra/control/sglang_versions.json)
    pip_installs: tuple[str, ...]
    image_env: dict[str, str]

    # The model
    model: ModelId
    model_revision: Revision
    model_size_gb: float  # nominal; the download stage records the real size
    draft_size_gb: float = 0.0
    gated: bool = False  # needs a Hugging Face token to download

    # The GPUs
    gpu_type: GpuType = "H100!"
    gpu_count: int = Field(default=1, ge=1, le=catalog.MAX_GPUS_PER_CONTAINER)
    # Modal bills CPU and memory at whichever is higher, the request or the use (modal.com/docs/guide/resources), so
    # a request makes the bill's floor known (`plan` prices it). None: Modal's default request, 0.125 cores and
    # 128 MiB, which SGLang's processes always exceed.
    cpu: float | None = Field(default=None, gt=0, le=64, description="physical CPU cores requested per container")
    memory: int | None = Field(default=None, ge=128, le=2_097_152, description="memory requested per container, MiB")

    # SGLang
    port: int = 8000  # inside the container; an environment may change it (server.port)
    # Modal's per-container target; SGLang's CUDA graphs are sized from it
    target_concurrency: int = Field(default=10, gt=0)
    mem_fraction_static: float = 0.8
    extra_flags: tuple[tuple[str, str | None], ...] = ()  # (flag, value) in full-name form; None for switches
    speculative: SpeculativeDecoding | None = None
    # Distinct FP8 GEMM shapes DeepGEMM compiles kernels for, per rank (0: none): the compile job's timeout scales
    # with it (infra/runtime/spec.py `compile_budget`). Each recipe says where its count is from.
    deep_gemm_shapes: int = Field(default=0, ge=0)

    # Modal. Regions are not a recipe's: an environment's [placement] sets them.
    # Seconds in-flight requests get when a container stops: below ~12 s SGLang drains nothing (lifecycle.drain_budget).
    exit_grace_period: int = 0
    startup_timeout: int = Field(default=20 * MINUTES, gt=0)  # bounds the whole @modal.enter

    # Readiness
    readiness_timeout: int = Field(default=15 * MINUTES, gt=0)
    # While SGLang starts /health answers at once: polling often is cheap and makes the container ready sooner.
    health_poll_interval: float = 0.25
    warmup: Warmup = Warmup(count=1, prompt="Hello", max_tokens=64, timeout=30)
    smoke: SmokeTest = SmokeTest(prompt="Tell me a joke.")
    # What a promotion gate measures. Not `gate`: that is the environment's [gate] settings (the objectives),
    # whose per-recipe table [recipes."<name>".gate] must not be routed onto this field by name.
    gate_workload: GateWorkload = GateWorkload()

    # ------------------------------------------------------------------ derived

    @property
    def tp_size(self) -> int:
        """Tensor parallelism: one shard per GPU, so the GPU count (one value, set once as gpu_count)."""
        return self.gpu_count

    @property
    def gpu(self) -> str:
        """Modal's GPU request string, e.g. "H100!:2"."""
        return f"{self.gpu_type}:{self.gpu_count}"

    @property
    def cuda_graph_max_bs(self) -> int:
        """Capture CUDA graphs only for batch sizes we are likely to see: twice the concurrency target."""
        return 2 * self.target_concurrency

    @property
    def warmup_budget(self) -> float:
        return self.warmup.count * self.warmup.timeout

    @property
    def draft_model(self) -> str | None:
        return self.speculative.draft_model if self.speculative else None

    @property
    def draft_revision(self) -> str | None:
        return self.speculative.draft_revision if self.speculative else None

    def repositories(self) -> list[tuple[str, str]]:
        """(repo, revision) of every model the server loads; an unset draft revision means the Hub's "main"."""
        repos = [(self.model, self.model_revision)]
        if self.draft_model:
            repos.append((self.draft_model, self.draft_revision or "main"))
        return repos

    def unpinned(self) -> list[str]:
        """Human descriptions of revisions that are not 40-hex commits."""
        out = []
        if not COMMIT_RE.match(self.model_revision or ""):
            out.append(f"model {self.model} revision {self.model_revision!r} is not a commit")
        if self.draft_model and not COMMIT_RE.match(self.draft_revision or ""):
            shown = repr(self.draft_revision) if self.draft_revision else "unset (follows the Hub's main branch)"
            out.append(f"draft model {self.draft_model} revision is {shown}")
        return out

    def with_revisions(self, model_revision: str | None = None, draft_revision: str | None = None) -> Recipe:
        """The same recipe at other revisions (resolved by the download stage, or set by an environment)."""
        changes: dict = {"model_revision": model_revision} if model_revision else {}
        if draft_revision and self.speculative and self.speculative.draft_model:
            changes["speculative"] = self.speculative.model_copy(update={"draft_revision": draft_revision})
        return self.model_copy(update=changes) if changes else self
