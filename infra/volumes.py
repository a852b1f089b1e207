"""The Modal Volumes: weights and kernel caches (mounted), and the release store (read from laptops and CI).

Every lookup names its Modal Environment explicitly: a Volume silently created in
whatever environment the caller's profile defaults to is a cache nobody reads.
"""

from __future__ import annotations

import modal

from infra.deployment import Deployment
from infra.recipes.base import KERNELS_PATH, HF_CACHE_PATH


def weights_volume(d: Deployment) -> modal.Volume:
    return modal.Volume.from_name(d.weights_volume, environment_name=d.cache_environment, create_if_missing=True)


def kernels_volume(d: Deployment) -> modal.Volume:
    return modal.Volume.from_name(d.kernels_volume, environment_name=d.cache_environment, create_if_missing=True)


def cache_mounts(d: Deployment) -> dict[str, modal.Volume]:
    """What a server mounts. The compile caches read-only: many servers start at once and
    only the compile job may write there (servers copy their key's tree to local disk)."""
    return {HF_CACHE_PATH: weights_volume(d), KERNELS_PATH: kernels_volume(d).with_mount_options(read_only=True)}
