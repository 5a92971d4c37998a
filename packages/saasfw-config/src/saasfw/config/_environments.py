"""Which environment a load is for: the four environments and how one is chosen.

The argument wins, then ``$SAASFW_ENV``, then ``SAASFW_ENV`` from the ``.env`` file, else
``production`` (fail closed); a name outside the four is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from saasfw.config._errors import ConfigError, Problem

Environment = Literal["development", "test", "staging", "production"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
DEFAULT_ENVIRONMENT = "production"


def choose_env(env: str | None, environ: Mapping[str, str], dotenv: Mapping[str, str]) -> str:
    """The environment to load for, or ConfigError naming where an unknown one came from."""
    if env is not None:
        chosen, origin = env, "argument env"
    elif "SAASFW_ENV" in environ:
        chosen, origin = environ["SAASFW_ENV"], "env SAASFW_ENV"
    elif "SAASFW_ENV" in dotenv:
        chosen, origin = dotenv["SAASFW_ENV"], ".env (SAASFW_ENV)"
    else:
        return DEFAULT_ENVIRONMENT
    if chosen not in ENVIRONMENTS:
        raise ConfigError(
            [
                Problem(
                    "",
                    origin,
                    f"unknown environment '{chosen[:40]}': expected one of "
                    + ", ".join(ENVIRONMENTS),
                    "unknown_environment",
                )
            ]
        )
    return chosen
