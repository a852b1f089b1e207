"""Real model shapes for cold-start measurements on a GPU: configs only, weights by `--load-format dummy`.

The GPU suite's tiny models (tests/gpu/real_sglang.py) prove the protocol, but say nothing
about what a cold start costs at the recipes' real sizes: DeepGEMM compiles one kernel set
per GEMM shape, CUDA-graph capture and Triton autotuning scale with the layer count and
widths. This module writes, into a local Hugging Face cache at fixed commits (refs/main,
snapshots/<commit>/), models with the recipes' real architectures and random weights:

(a) the low-latency recipe's target at Qwen/Qwen3-8B-FP8's real dimensions (Qwen3ForCausalLM,
    36 layers, hidden 4096, FP8 e4m3 in 128x128 blocks, lm_head unquantized);
(b) an EAGLE-3 drafter at full width like Tengyunw/qwen3_8b_eagle3 (one LlamaForCausalLMEagle3
    layer, width 4096, draft vocabulary 32000); SGLang picks the aux hidden-state layers;
(c) the closest shape to Qwen/Qwen3.6-35B-A3B-FP8 (the vision recipe) established offline:
    Qwen3_5MoeForConditionalGeneration. VLM_PROVENANCE says where each number comes from.

The tokenizer is the GPU suite's tiny byte-level BPE (same special tokens and ids, so " hello"
is one token and bos/eos are the tiny ones), extended to the model's full vocabulary with
printable-ASCII tokens appended after the trained merges: with random weights the model
emits any id up to vocab_size, and an id the tokenizer cannot decode would stream no text
(invoke bench counts a stream without content as failed). Standard library only, apart from
`tokenizers` (through real_sglang) at build time; nothing here imports torch or SGLang.

The cold-start figures `plan` estimates from were measured with (a) and (b) (infra/control/cold_start_figures.py,
benchmarks/results/cold_start_real_shape_h200.json); (c) has not run yet.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from infra.control import sglang_flags
from infra.runtime.deployment import Deployment
from tests.gpu import real_sglang as real

# ---------------------------------------------------------------------------- names and commits

TARGET = "infra-test/qwen3-8b-fp8-shape"
TARGET_COMMIT = "8b3f0c1e5d7a9b2c4e6f8a0b1c3d5e7f9a2b4c6d"
DRAFT = "infra-test/qwen3-8b-eagle3-shape"
DRAFT_COMMIT = "e3b8a1c4d7f0a3b6c9d2e5f8a1b4c7d0e3f6a9b2"
VLM = "infra-test/qwen3.6-35b-a3b-fp8-shape"
VLM_COMMIT = "35a3b0f8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6"
VLM_RECIPE = "qwen3.6-35b-vlm"

MEM_FRACTION = 0.8  # the recipe's own value: at real size the drafter's KV pool is small next to the target's
QWEN3_VOCAB = 151936
QWEN3_6_VOCAB = 248320
# A variant measured beside the recipe's own arguments (declared in SGLang 0.5.11's server_args): no piecewise CUDA
# graphs. Measured 2026-12-01: 33 s less start, but TTFT and TPOT worse, so the recipe does not set it.
NO_PIECEWISE: tuple[tuple[str, str | None], ...] = (("--disable-piecewise-cuda-graph", None),)
FP8_BLOCK = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}

# ---------------------------------------------------------------------------- the tokenizer


def _extend_vocab(tokenizer_json: Path, size: int, extra_special: tuple[str, ...] = ()) -> dict[str, int]:
    """Grow the trained tokenizer to exactly `size` ids: `extra_special` added tokens first, then
    two- and three-character printable-ASCII tokens, their merges appended after the trained ones
    (lowest priority: what the tiny tokenizer encodes as one token still is one token)."""
    data = json.loads(tokenizer_json.read_text())
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    added = data["added_tokens"]
    next_id = max([*vocab.values(), *(a["id"] for a in added)]) + 1
    for content in extra_special:
        added.append({"id": next_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        next_id += 1
    # Every added token also in the model's vocabulary at its id: the ids stay contiguous, or the
    # tokenizers library would renumber the added tokens past the (grown) vocabulary when loading.
    for a in added:
        vocab.setdefault(a["content"], a["id"])
    chars = [chr(c) for c in range(33, 127)]  # the byte-level alphabet maps printable ASCII to itself
    merges = model["merges"]
    as_pairs = bool(merges) and isinstance(merges[0], list)
    taken = set(vocab) | {a["content"] for a in added}
    candidates = itertools.chain(((a, b) for a in chars for b in chars),
                                 ((a + b, c) for a in chars for b in chars for c in chars))
    for left, right in candidates:
        if next_id >= size:
            break
        token = left + right
        if token in taken:
            continue
        vocab[token] = next_id
        merges.append([left, right] if as_pairs else f"{left} {right}")
        taken.add(token)
        next_id += 1
    if next_id != size:
        raise RuntimeError(f"extended tokenizer has {next_id} ids, wanted {size}")
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False))
    return {a["content"]: a["id"] for a in added}


# What makes transformers 5.6.0 load the stand-in as it loads Qwen's own tokenizer, once per process: the class the
# real tokenizer_config.json names (without it SGLang's loader finds a generic TokenizersBackend and loads twice more,
# use_fast=False, then PreTrainedTokenizerFast: ~3 s per process, 5 loads per start, measured on 2026-12-01), and a
# `transformers_version` in config.json (without one transformers suspects a Mistral tokenizer and checks its regex).
TOKENIZER_CLASS = "Qwen2Tokenizer"
QWEN3_CONFIG_VERSION = "4.51.0"  # Qwen/Qwen3-8B-FP8's config.json


def _tokenizer(snapshot: Path, size: int, *, extra_special: tuple[str, ...] = (),
               chat_template: str = real.CHAT_TEMPLATE,
               model_max_length: int = 40960) -> dict[str, int]:
    ids = real._train_tokenizer(snapshot / "tokenizer.json")  # the tiny stand-in tokenizer: its bos/eos ids
    ids |= _extend_vocab(snapshot / "tokenizer.json", size, extra_special)
    (snapshot / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": TOKENIZER_CLASS, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": model_max_length, "chat_template": chat_template,
    }, indent=1))
    return ids


# ---------------------------------------------------------------------------- (a) and (b): the low-latency recipe


def build_real_shape_models(hub: Path) -> dict:
    """Qwen3-8B-FP8's architecture and a full-width EAGLE-3 drafter, in the HF cache at `hub`."""
    hub = Path(hub)
    target = real._snapshot(hub, TARGET, TARGET_COMMIT)
    ids = _tokenizer(target, QWEN3_VOCAB)
    eos, bos = ids["<|im_end|>"], ids["<|endoftext|>"]
    common = {
        "hidden_size": 4096, "intermediate_size": 12288, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": QWEN3_VOCAB, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "bos_token_id": bos, "eos_token_id": eos, "attention_bias": False,
        "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
    }
    (target / "config.json").write_text(json.dumps(common | {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": 36,
        "transformers_version": QWEN3_CONFIG_VERSION,
        "use_sliding_window": False, "sliding_window": None, "max_window_layers": 36,
        "quantization_config": FP8_BLOCK | {"modules_to_not_convert": ["lm_head"]},
    }, indent=1))
    (target / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": bos, "eos_token_id": eos, "do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95}))
    draft = real._snapshot(hub, DRAFT, DRAFT_COMMIT)
    # Like Tengyunw/qwen3_8b_eagle3: one layer at the target's width, a 32000-token draft vocabulary.
    # No eagle_aux_hidden_state_layer_ids: SGLang chooses the aux layers for a 36-layer target.
    (draft / "config.json").write_text(json.dumps(common | {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "num_hidden_layers": 1,
        "draft_vocab_size": 32000, "target_hidden_size": 4096, "mlp_bias": False, "pretraining_tp": 1,
        "eagle_config": {"use_aux_hidden_state": True},
    }, indent=1))
    return {"hub": str(hub), "target": str(target), "draft": str(draft), "eos_token_id": eos, "bos_token_id": bos}


def deployment(*, port: int, no_piecewise: bool = False, snapshot: bool = False) -> Deployment:
    """The low-latency recipe as the GPU suite resolves it (real.tiny_deployment: settings, one GPU, SGLang 0.5.11,
    dummy weights, triton attention, pytorch sampling), serving the real-shape models with the recipe's
    mem_fraction_static. `no_piecewise` adds NO_PIECEWISE; `snapshot` the GPU-snapshot flags
    (sglang_args.server_args)."""
    d = real.tiny_deployment(port=port, snapshot=snapshot)
    spec = d.recipe.speculative.model_copy(update=dict(draft_model=DRAFT, draft_revision=DRAFT_COMMIT))
    flags = d.recipe.extra_flags + (NO_PIECEWISE if no_piecewise else ())
    d = d.with_recipe(d.recipe.model_copy(update=dict(model=TARGET, model_revision=TARGET_COMMIT, speculative=spec,
                                                      mem_fraction_static=MEM_FRACTION, extra_flags=flags)))
    sglang_flags.check_flags(d)
    return d


# ---------------------------------------------------------------------------- (c): the vision recipe

# How each number of the Qwen3.6-35B-A3B-FP8 stand-in was established (offline: no Hub here).
#   [SG] SGLang 0.5.11 model code: srt/models/qwen3_5.py (Qwen3_5MoeForConditionalGeneration, the text
#        model's fields: num_experts, moe_intermediate_size, shared_expert_intermediate_size, linear_* heads,
#        full-attention layers every full_attention_interval), srt/models/qwen3_5_mtp.py (the MTP drafter:
#        the same checkpoint, architecture rewritten to Qwen3_5ForCausalLMMTP, num_nextn_predict_layers = 1,
#        srt/configs/model_config.py), srt/configs/qwen3_5.py (Qwen3_5MoeConfig: text_config + vision_config).
#   [TF] transformers 5.6.0 (the site's), models/qwen3_5_moe/configuration_qwen3_5_moe.py, whose defaults are
#        documented as "the Qwen/Qwen3.5-35B-A3B style configuration".
#   [MC] published model cards (search tool, pages corpus): Qwen3.6-35B-A3B "Hidden Dimension: 2048, Token
#        Embedding: 248320 (Padded), Number of Layers: 40, Hidden Layout: 10 x (3 x (Gated DeltaNet -> MoE) ->
#        1 x (Gated Attention -> MoE)), Gated DeltaNet: 32 heads for V and 16 for QK, head dim 128; Gated
#        Attention: 16 Q and 2 KV heads, head dim 256, Rotary Position Embedding Dimension 64; 256 experts,
#        8 routed + 1 shared, expert intermediate dimension 512; 262,144 tokens native context"; FP8 derivatives
#        describing "identical on-disk format to the official Qwen/Qwen3.6-35B-A3B-FP8": fp8, e4m3, dynamic,
#        weight_block_size [128, 128], vision tower, embeddings, lm_head, norms, routers and the linear-attention
#        state parameters kept in BF16.
#   [DER] derived: rotary dim 64 / head_dim 256 = partial_rotary_factor 0.25 (also [TF]'s default);
#        mrope_section [11, 11, 10] = the 32 rotary frequency pairs split t/h/w as Qwen3-VL does (its
#        [24, 20, 20] for 64 pairs, scaled); the vision merger's output = the text hidden size (2048).
#   [ASSUMED] not established offline: rope_theta 10,000,000 (Qwen3-Next's value, the same hybrid family);
#        the exact modules_to_not_convert list (written as module-name prefixes below); vision depth 27 /
#        width 1152 / 16 heads / intermediate 4304 / patch 16 are [TF]'s defaults, not read from the checkpoint.
VLM_PROVENANCE = {
    "architectures": "[SG][MC] Qwen3_5MoeForConditionalGeneration (cards of FP8/GPTQ/Quark derivatives name it)",
    "text_config.hidden_size": "[MC][TF] 2048",
    "text_config.num_hidden_layers": "[MC][TF] 40",
    "text_config.layer_types / full_attention_interval": "[MC][TF] 10 x (3 linear_attention + 1 full_attention): "
                                                         "interval 4",
    "text_config.num_attention_heads / num_key_value_heads / head_dim": "[MC][TF] 16 / 2 / 256",
    "text_config.linear_num_key_heads / linear_num_value_heads / linear_key_head_dim / "
    "linear_value_head_dim": "[MC][TF] 16 / 32 / 128 / 128",
    "text_config.linear_conv_kernel_dim": "[TF] 4",
    "text_config.num_experts / num_experts_per_tok": "[MC][TF] 256 / 8",
    "text_config.moe_intermediate_size / shared_expert_intermediate_size": "[MC][TF] 512 / 512",
    "text_config.vocab_size": "[MC][TF] 248320 (padded)",
    "text_config.max_position_embeddings": "[MC] 262144 (native context)",
    "text_config.partial_rotary_factor": "[DER][TF] 0.25 (rotary dim 64 of head_dim 256)",
    "text_config.rope_parameters.rope_theta": "[ASSUMED] 10000000 (Qwen3-Next family value)",
    "text_config.rope_parameters.mrope_section / mrope_interleaved": "[DER] [11, 11, 10] / true",
    "text_config.mtp_num_hidden_layers": "[SG] 1 (SGLang sets num_nextn_predict_layers = 1 for the MTP drafter)",
    "text_config.rms_norm_eps / hidden_act / tie_word_embeddings": "[TF] 1e-6 / silu / false",
    "vision_config": "[TF] defaults (depth 27, hidden 1152, 16 heads, intermediate 4304, patch 16, merge 2, temporal "
                     "patch 2, 2304 position embeddings, gelu_pytorch_tanh); out_hidden_size [DER] 2048",
    "quantization_config": "[MC] fp8 / e4m3 / dynamic / [128, 128]; modules_to_not_convert [MC][ASSUMED] as prefixes",
    "image/video/vision_start/vision_end token ids": "this stand-in tokenizer's ids of <|image_pad|>, <|video_pad|>, "
                                                       "<|vision_start|>, <|vision_end|> (the real ones are 248056, "
                                                       "248057, 248053, 248054 [TF])",
}

VLM_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image_url' or item['type'] == 'image' -%}{{- "
    "'<|vision_start|><|image_pad|><|vision_end|>' -}}{%- elif item['type'] == 'video' -%}{{- "
    "'<|vision_start|><|video_pad|><|vision_end|>' -}}{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif "
    "-%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- else -%}{{- '<think>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def vlm_config(ids: dict[str, int]) -> dict:
    layers = 40
    text = {
        "model_type": "qwen3_5_moe_text", "hidden_size": 2048, "num_hidden_layers": layers,
        "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)],
        "full_attention_interval": 4,
        "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256, "attn_output_gate": True,
        "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "num_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True, "router_aux_loss_coef": 0.001,
        "vocab_size": QWEN3_6_VOCAB, "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "tie_word_embeddings": False, "attention_bias": False, "attention_dropout": 0.0, "initializer_range": 0.02,
        "partial_rotary_factor": 0.25,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                            "mrope_section": [11, 11, 10], "mrope_interleaved": True},
        "mtp_num_hidden_layers": 1, "mtp_use_dedicated_embeddings": False,
        "dtype": "bfloat16", "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
    }
    vision = {
        "model_type": "qwen3_5_moe", "depth": 27, "hidden_size": 1152, "hidden_act": "gelu_pytorch_tanh",
        "intermediate_size": 4304, "num_heads": 16, "in_channels": 3, "patch_size": 16, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "out_hidden_size": 2048, "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [], "initializer_range": 0.02,
    }
    not_converted = ["lm_head", "model.visual", "model.language_model.embed_tokens", "mlp.gate",
                     "mlp.shared_expert_gate",
                     "linear_attn.in_proj_a", "linear_attn.in_proj_b", "linear_attn.conv1d", "linear_attn.norm",
                     "mtp.fc"]
    return {
        "architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe",
        "text_config": text, "vision_config": vision,
        "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "quantization_config": FP8_BLOCK | {"modules_to_not_convert": not_converted},
        "transformers_version": VLM_CONFIG_VERSION,
    }


# Written by the transformers that knows the architecture (the pinned site's); any version keeps transformers from
# suspecting a Mistral tokenizer (see TOKENIZER_CLASS).
VLM_CONFIG_VERSION = "5.6.0"
# The stripped site has no FA3, the vision tower's default on Hopper (srt/layers/attention/vision.py): the tower
# runs on SGLang's Triton vision attention there, as the text model runs on `--attention-backend triton`.
VLM_SITE_FLAGS = (("--mm-attention-backend", "triton_attn"),)
# The recipe's image sets SGLANG_ENABLE_JIT_DEEPGEMM=1, and a start then JIT-compiles every M for each FP8 GEMM shape
# before serving (~110 s per shape at the 8B shape, nine shapes here). Launching the architecture at all does not
# need that: with the pre-compile off, only the kernels that capture and the requests use are compiled.
VLM_LAUNCH_ENV = {"SGLANG_JIT_DEEPGEMM_PRECOMPILE": "0"}


def build_vlm_model(hub: Path) -> dict:
    """The vision recipe's model at its real architecture (see VLM_PROVENANCE), config and processor files only."""
    hub = Path(hub)
    snap = real._snapshot(hub, VLM, VLM_COMMIT)
    ids = _tokenizer(snap, QWEN3_6_VOCAB, extra_special=VISION_TOKENS, chat_template=VLM_CHAT_TEMPLATE,
                     model_max_length=262144)
    config = vlm_config(ids)
    (snap / "config.json").write_text(json.dumps(config, indent=1))
    (snap / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "do_sample": True, "temperature": 0.6,
         "top_k": 20, "top_p": 0.95}))
    image = {"image_processor_type": "Qwen2VLImageProcessorFast", "patch_size": 16, "temporal_patch_size": 2,
             "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
             "size": {"shortest_edge": 65536, "longest_edge": 16777216}, "processor_class": "Qwen3VLProcessor"}
    (snap / "preprocessor_config.json").write_text(json.dumps(image, indent=1))
    (snap / "video_preprocessor_config.json").write_text(json.dumps(
        {"video_processor_type": "Qwen3VLVideoProcessor", "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
         "size": {"shortest_edge": 4096, "longest_edge": 25165824}, "processor_class": "Qwen3VLProcessor"}, indent=1))
    (snap / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen3VLProcessor"}))
    (snap / "chat_template.jinja").write_text(VLM_CHAT_TEMPLATE)
    (snap / "PROVENANCE.json").write_text(json.dumps(VLM_PROVENANCE, indent=1))
    return {"hub": str(hub), "model": str(snap), "config": config, "provenance": VLM_PROVENANCE}


def vlm_deployment(*, port: int, site_flags: bool = True) -> Deployment:
    """The vision recipe resolved by the project's settings, serving the stand-in on SGLang 0.5.11 with
    dummy weights (and the stripped site's attention and sampling backends when `site_flags`)."""
    from infra.control.resolve import resolve
    from infra.control.settings import load_settings, parse_overrides

    at = f"recipes.{VLM_RECIPE}"
    settings = load_settings("dev", VLM_RECIPE,
                             parse_overrides([f"{at}.model={VLM}", f"{at}.model_revision={VLM_COMMIT}"]))
    d = resolve(settings, VLM_RECIPE)
    flags = d.recipe.extra_flags + (real.TINY_FLAGS + VLM_SITE_FLAGS if site_flags else (("--load-format", "dummy"),))
    d = d.with_recipe(d.recipe.model_copy(update=dict(sglang_version=real.GPU_SGLANG_VERSION, extra_flags=flags)))
    d = d.model_copy(update=dict(server=d.server.model_copy(update=dict(port=port, hf_hub_offline=True))))
    sglang_flags.check_flags(d)
    return d
