"""The subject-directory port: who a token's subject is *now*, asked at every refresh.

A refresh token carries the roles and tenant of the login. Without a directory, rotation
copies them for the whole refresh lifetime, so a demoted admin keeps minting admin tokens
and a disabled or deleted user keeps refreshing. The service owns its users; it implements
:class:`SubjectDirectory` over its own table and hands it to
:class:`~saasfw.security.TokenIssuer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["SubjectDirectory", "SubjectRevocation", "SubjectState"]


@dataclass(frozen=True, slots=True)
class SubjectState:
    """The current state of an account, as the service's user store knows it.

    Attributes:
        active: False for a disabled (locked, suspended) account: its refresh is refused.
        roles: the roles new tokens carry (replaces the roles of the login).
        tenant: the tenant new tokens carry (None: no tenant claim).
    """

    active: bool
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None


class SubjectDirectory(Protocol):
    """Port to the service's user store, asked by :meth:`TokenIssuer.refresh`."""

    async def current(self, subject: str) -> SubjectState | None:
        """The subject's current state, or None when the account no longer exists.

        Raise on a storage failure (the refresh then fails and the refresh token stays
        unspent, so the client may retry); never answer None for "could not look".
        """
        ...


@dataclass(frozen=True, slots=True)
class SubjectRevocation:
    """What :meth:`TokenIssuer.revoke_subject` did.

    Attributes:
        subject: the account.
        not_before: tokens of the subject issued before this epoch time are refused
            (every refresh family and access token that existed at the call).
        api_keys_revoked: ids of the subject's API keys revoked by the call.
    """

    subject: str
    not_before: float
    api_keys_revoked: tuple[str, ...] = ()
