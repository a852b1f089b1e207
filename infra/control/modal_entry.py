"""The app for Modal's own CLI: `INFRA_ENV=prod INFRA_RECIPE=R modal deploy -m infra.control.modal_entry --env prod`.

Resolves the environment's settings for one recipe on the deploying machine, hands the Deployment to
infra/runtime/app.py through INFRA_DEPLOYMENT (as `invoke deploy` does), and exposes its `app`. Containers import
infra/runtime/app.py itself, never this module. `invoke deploy` is the supported path (it records the release); this one
is for people who want Modal's CLI.
"""

from __future__ import annotations

import os

from infra.control import gitinfo
from infra.control.resolve import resolve
from infra.control.settings import load_settings
from infra.runtime.current import COMMIT_TAG_VARIABLE
from infra.runtime.deployment import DEPLOYMENT_VARIABLE
from infra.runtime.errors import ConfigError, UserError

settings = load_settings()
names = settings.selected_recipes()
if len(names) != 1:
    raise ConfigError(f"environment '{settings.env}' serves {len(names)} recipes ({', '.join(names)}); "
                      "choose one with INFRA_RECIPE")
os.environ[DEPLOYMENT_VARIABLE] = resolve(settings, names[0]).to_json()
try:
    os.environ[COMMIT_TAG_VARIABLE] = gitinfo.read().tag  # the server App's `commit` tag, as `invoke deploy` sets it
except UserError:
    pass  # not a git checkout: the App goes untagged by commit (the bill is still attributed by time)

from infra.runtime.app import app  # noqa: E402  (defined for the deployment set just above)

__all__ = ["app"]
