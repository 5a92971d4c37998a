"""The deployment environments, named once for every package."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "DEVELOPMENT_ENVIRONMENTS",
    "ENVIRONMENTS",
    "Environment",
    "is_development",
]

Environment = Literal["development", "test", "staging", "production"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
# Where generated secrets, an in-process broker and development-only routes are allowed.
DEVELOPMENT_ENVIRONMENTS: frozenset[str] = frozenset({"development", "test"})


def is_development(env: str) -> bool:
    """True for the environments that run on a developer's machine or in a test."""
    return env in DEVELOPMENT_ENVIRONMENTS
