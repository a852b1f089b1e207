"""Container images, built from a Deployment in the order the reference documents build them."""

from __future__ import annotations

import modal

from infra.deployment import Deployment
from infra.recipes.base import HF_CACHE_PATH

# The download job needs no GPU and no SGLang: a slim image with the same Hub client
# version the SGLang image gets (and the tests run), plus the Xet transfer backend.
DOWNLOAD_PACKAGES = ("huggingface-hub==0.36.0", "hf-xet==1.2.0")


def server_image(d: Deployment) -> modal.Image:
    """The SGLang team's image, as the recipe pins it; also runs the kernel compile job."""
    image = modal.Image.from_registry(d.sglang_image).entrypoint([])  # silence chatty logs on start
    if d.pip_installs:
        image = image.uv_pip_install(*d.pip_installs)
    image = image.env(d.image_env)
    return with_package(image)


def download_image(d: Deployment) -> modal.Image:
    image = (
        modal.Image.debian_slim(python_version="3.11")
        .uv_pip_install(*DOWNLOAD_PACKAGES)
        .env({"HF_HUB_CACHE": HF_CACHE_PATH, "HF_XET_HIGH_PERFORMANCE": "1"})
    )
    return with_package(image)


def with_package(image: modal.Image) -> modal.Image:
    """This package, mounted at container start (not baked in), assets included (the warm-up image)."""
    return image.add_local_python_source("infra", ignore=["**/__pycache__/**", "**/*.pyc"])
