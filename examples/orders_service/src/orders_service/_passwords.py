"""The demo users' password checks: saasfw.security's argon2id hasher."""

from __future__ import annotations

from saasfw.security import PasswordHasher

__all__ = ["HASHER"]

# The demo hashes in config/ use the OWASP ASVS floor for argon2id (19 MiB, t=2, p=1);
# a hash below the hasher's parameters would be flagged for rehash on login.
HASHER = PasswordHasher(memory_cost=19_456, time_cost=2, parallelism=1)
