"""What Modal offers: GPU types, regions and the list prices we budget with.

Settings validation checks names against these tables so that a typo fails on a
laptop in milliseconds instead of on Modal after an image build. When Modal adds a
GPU or a region, add it here (with its price) and nowhere else.
"""

from __future__ import annotations

# Modal GPU type -> (memory in GB, list price in USD per GPU-hour).
# Prices are Modal's published on-demand rates; environments can override them
# (`[costs] gpu_hourly_usd`), e.g. with a negotiated rate.
GPUS: dict[str, tuple[int, float]] = {
    "T4": (16, 0.59),
    "L4": (24, 0.80),
    "A10": (24, 1.10),
    "A10G": (24, 1.10),
    "L40S": (48, 1.95),
    "A100": (40, 2.10),
    "A100-40GB": (40, 2.10),
    "A100-80GB": (80, 2.50),
    "RTX-PRO-6000": (96, 3.03),
    # "H100!" pins the H100: without the "!" Modal may upgrade the container to an
    # H200, which changes kernel shapes and invalidates the DeepGEMM cache.
    "H100": (80, 3.95),
    "H100!": (80, 3.95),
    "H200": (141, 4.54),
    "B200": (180, 6.25),
}

MAX_GPUS_PER_CONTAINER = 8

# Regions a container may be scheduled in (`compute_region`): Modal's broad and
# narrow region names.
COMPUTE_REGIONS: frozenset[str] = frozenset(
    {
        "us", "eu", "uk", "ap", "jp", "ca", "sa", "me", "mx", "af",
        "us-east", "us-central", "us-west",
        "eu-west", "eu-north", "eu-south",
        "ap-northeast", "ap-southeast", "ap-south", "ap-melbourne",
        "ca-east", "ca-west",
    }
)

# Regions Modal runs its low-latency Server proxies in (`routing_region`).
ROUTING_REGIONS: frozenset[str] = frozenset({"us-east", "us-west", "eu-west", "ap-south"})


def gpu_list_price(gpu_type: str) -> float:
    return GPUS[gpu_type][1]


# The rules, in one place: settings validators call these, and nothing re-checks them.


def check_gpu(value: str | None) -> str | None:
    if value is not None and value not in GPUS:
        raise ValueError(f"unknown GPU type; allowed: {', '.join(GPUS)}")
    return value


def check_compute_region(value: str | None) -> str | None:
    return _check_region(value, COMPUTE_REGIONS)


def check_routing_region(value: str | None) -> str | None:
    return _check_region(value, ROUTING_REGIONS)


def _check_region(value: str | None, allowed: frozenset[str]) -> str | None:
    if value is not None and value not in allowed:
        raise ValueError(f"not a Modal region name; allowed: {', '.join(sorted(allowed))}")
    return value
