"""Model recipes: everything about serving one model that does not depend on the environment.

A recipe is what the single-file Modal examples hard-code as module constants; an environment decides how many
replicas run, where, and who may call them. Each recipe lives in its own module with the reason for every knob.
"""

from __future__ import annotations

from infra.runtime.recipes.base import Recipe, SpeculativeDecoding, Warmup
from infra.runtime.recipes.qwen3_6_35b_vlm import RECIPE as QWEN3_6_35B_VLM
from infra.runtime.recipes.qwen3_8b_low_latency import RECIPE as QWEN3_8B_LOW_LATENCY

RECIPES: dict[str, Recipe] = {r.name: r for r in (QWEN3_8B_LOW_LATENCY, QWEN3_6_35B_VLM)}

__all__ = ["RECIPES", "Recipe", "SpeculativeDecoding", "Warmup"]
