"""Which deployment this process defines Modal objects for, and whether it may.

Modal imports infra/runtime/app.py and jobs.py on the deploying machine and again in every container; both read the
Deployment the deploying side put in `INFRA_DEPLOYMENT`, so what a container finds was deployed.
"""

from __future__ import annotations

import os

from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.runtime.errors import ConfigError

# The git tag a deploy is deploying (`git-<sha>[-dirty]`), for the server App's `commit` tag; containers never see it.
COMMIT_TAG_VARIABLE = "INFRA_COMMIT_TAG"


def deployment(environ: dict[str, str] | None = None) -> Deployment:
    """The deployment this process is about, from INFRA_DEPLOYMENT."""
    environ = os.environ if environ is None else environ
    baked = environ.get(DEPLOYMENT_VARIABLE)
    if not baked:
        raise ConfigError(
            f"{DEPLOYMENT_VARIABLE} is not set, so there is no deployment to define: use `invoke deploy --env ENV`, or "
            "Modal's CLI through `INFRA_ENV=ENV INFRA_RECIPE=R modal deploy -m infra.control.modal_entry --env ENV`")
    return Deployment.from_json(baked)


def commit_tag(environ: dict[str, str] | None = None) -> str | None:
    """The git tag being deployed, where this import is a deploy's (None in containers and ephemeral runs)."""
    environ = os.environ if environ is None else environ
    return environ.get(COMMIT_TAG_VARIABLE) or None


def check_modal_environment(d: Deployment, environ: dict[str, str], is_local: bool) -> None:
    """On the deploying machine MODAL_ENVIRONMENT must name the deployment's Modal Environment: a deploy that lands in
    the profile's default is a bug. In a container Modal has placed us already."""
    if is_local and (found := environ.get("MODAL_ENVIRONMENT")) != d.modal.environment:
        raise ConfigError(
            f"environment '{d.env}' deploys into Modal Environment '{d.modal.environment}', "
            f"but MODAL_ENVIRONMENT is {found!r}: run "
            f"`invoke deploy --env {d.env}` or `modal deploy -m infra.control.modal_entry --env {d.modal.environment}`")
