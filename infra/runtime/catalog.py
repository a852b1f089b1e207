"""What Modal offers: GPU types and regions (prices are the laptop's: infra/control/costs.py).

A typo fails on a laptop in milliseconds instead of on Modal after an image build. When Modal adds a GPU or a
region, add it here, and its price to infra/control/costs.py.
"""

from __future__ import annotations

# Modal GPU type (the `gpu=` name) -> memory in GB.
GPUS: dict[str, int] = {
    "T4": 16, "L4": 24, "A10": 24, "A10G": 24, "L40S": 48, "A100": 40, "A100-40GB": 40, "A100-80GB": 80,
    "RTX-PRO-6000": 96,
    # "H100!" pins the H100: without it Modal may upgrade to an H200, which invalidates the DeepGEMM cache.
    "H100": 80, "H100!": 80, "H200": 141, "B200": 180,
}

MAX_GPUS_PER_CONTAINER = 8

# Regions a container may run in (`compute_region`): broad (e.g. `us`) and narrow (e.g. `us-west`), priced apart
# (modal.com/docs/guide/region-selection, read 2026-12-01; infra/control/costs.py).
BROAD_REGIONS: frozenset[str] = frozenset({"us", "eu", "uk", "ap", "jp", "ca", "sa", "me", "mx", "af"})
NARROW_REGIONS: frozenset[str] = frozenset({"us-east", "us-central", "us-west", "eu-west", "eu-north", "eu-south",
                                             "ap-northeast", "ap-southeast", "ap-south", "ap-melbourne", "ca-east",
                                             "ca-west"})
COMPUTE_REGIONS: frozenset[str] = BROAD_REGIONS | NARROW_REGIONS

# Regions Modal runs its low-latency Server proxies in (`routing_region`).
ROUTING_REGIONS: frozenset[str] = frozenset({"us-east", "us-west", "eu-west", "ap-south"})


def region_kind(region: str | None) -> str:
    """"none" (Modal places the container anywhere), "broad" or "narrow": what the region multiplier depends on."""
    if region is None:
        return "none"
    return "broad" if region in BROAD_REGIONS else "narrow"


# The rules, in one place: settings validators call these, and nothing re-checks them.


def check_gpu(value: str | None) -> str | None:
    if value is not None and value not in GPUS:
        raise ValueError(f"unknown GPU type; allowed: {', '.join(GPUS)}")
    return value


def check_region(value: str | None, allowed: frozenset[str]) -> str | None:
    if value is not None and value not in allowed:
        raise ValueError(f"not a Modal region name; allowed: {', '.join(sorted(allowed))}")
    return value
