"""Password verification for the demo users: argon2id, and the same cost for unknown users."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["verify_password"]

# OWASP ASVS floor for argon2id: 19 MiB, 2 iterations, 1 lane.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID)
_DUMMY = _HASHER.hash("not-a-user-password-0f3c9a")


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown user (None) costs one full verification."""
    try:
        return _HASHER.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
