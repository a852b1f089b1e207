"""Which deployment this process is for, and whether it may define Modal objects for it.

Modal imports `infra.runtime.app` and `infra.runtime.jobs` twice: on the deploying machine, and
again inside every container, without the repository and with the container's
own environment. Both imports must build the same definition, so both start
here: inside a container the Deployment is read back from the JSON the deploy
baked into its environment (`INFRA_DEPLOYMENT`); on a laptop it is resolved from
settings, which is the only path that imports pydantic.
"""

from __future__ import annotations

import os

from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment
from infra.runtime.errors import ConfigError


def deployment(environ: dict[str, str] | None = None) -> Deployment:
    """The deployment this process is about: baked JSON inside a container, settings on a laptop."""
    environ = os.environ if environ is None else environ
    if baked := environ.get(DEPLOYMENT_VARIABLE):
        return Deployment.from_json(baked)
    from infra.control.resolve import resolve  # local side only
    from infra.control.settings import load_settings

    settings = load_settings()
    names = settings.selected_recipes()
    if len(names) != 1:
        raise ConfigError(
            f"environment '{settings.env}' serves {len(names)} recipes ({', '.join(names)}); "
            "choose one with INFRA_RECIPE (or --recipe)"
        )
    return resolve(settings, names[0])


def check_modal_environment(d: Deployment, environ: dict[str, str], is_local: bool) -> None:
    """On the deploying machine, MODAL_ENVIRONMENT must name the deployment's Modal Environment.

    A deploy that silently lands in the profile's default environment is a bug; inside
    a container (is_local False) Modal has already placed us.
    """
    if is_local and environ.get("MODAL_ENVIRONMENT") != d.modal.environment:
        raise ConfigError(
            f"environment '{d.env}' deploys into Modal Environment '{d.modal.environment}', "
            f"but MODAL_ENVIRONMENT is {environ.get('MODAL_ENVIRONMENT')!r}: run "
            f"`invoke deploy --env {d.env}` or `modal deploy -m infra.runtime.app --env {d.modal.environment}`"
        )
