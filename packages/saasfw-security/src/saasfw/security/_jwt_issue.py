"""Token issuance for services that are their own issuer: access and refresh tokens.

Refresh tokens rotate: each use returns a new pair in the same *family* and marks the old
refresh token used. Presenting a used refresh token again (a stolen copy, or the victim
after the thief) revokes the whole family, including access tokens that carry it.

With a :class:`~saasfw.security.SubjectDirectory` wired, every refresh asks the service who
the subject is now: a disabled or deleted account's refresh is refused (and its family
revoked), and new tokens carry the account's current roles and tenant. Without one, refresh
copies the login's claims for the whole refresh lifetime: unsafe in production.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saasfw.security._errors import (
    ConfigurationError,
    InvalidTokenError,
    TokenReuseError,
    TokenRevokedError,
)
from saasfw.security._events import SecurityEvent, SecurityEvents, SecurityEventType
from saasfw.security._jwt_keys import HMAC_ALGORITHMS, StaticKeySet, load_public_key
from saasfw.security._jwt_verify import JwtVerifier, VerifiedToken
from saasfw.security._revocation import MemoryRevocationStore, RevocationStore
from saasfw.security._subjects import SubjectDirectory, SubjectRevocation

if TYPE_CHECKING:
    from saasfw.security._apikeys import ApiKeyService

__all__ = ["ACCESS_TOKEN_TYPE", "REFRESH_TOKEN_TYPE", "TokenIssuer", "TokenPair"]

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105  # nosec B105
REFRESH_TOKEN_TYPE = "refresh+jwt"  # noqa: S105  # nosec B105
_ISSUABLE = frozenset({"HS256", "RS256", "ES256", "EdDSA"})
_RESERVED = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "fam", "token_use", "typ", "auth_time"}
)


def _floor_ms(t: float) -> float:
    return math.floor(t * 1000) / 1000


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A freshly issued access token and its refresh token."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: float
    refresh_expires_at: float
    family: str
    token_type: str = "Bearer"  # noqa: S105  # nosec B105


class TokenIssuer:
    """Signs access and refresh tokens and runs rotation, logout and revocation.

    Args:
        algorithm: ``HS256``, ``RS256``, ``ES256`` or ``EdDSA``.
        signing_key: HMAC secret (>= 32 bytes) or a private key (PEM bytes/str/path or object).
        issuer / audience: written into every token.
        revocation: where rotation, logout and not-before state lives (Redis for several
            workers; the default memory store suits a single process only).
        access_ttl / refresh_ttl: lifetimes in seconds.
        session_ttl: absolute lifetime of a login: rotation never extends a refresh family
            beyond ``auth_time + session_ttl`` (default 30 days); then the user logs in again.
        key_id: ``kid`` header, so verifiers can rotate keys.
        events: security-events port for reuse detection and revocation.
        subjects: the service's user store, asked at every refresh (see
            :class:`SubjectDirectory`); also settable later as the ``subjects`` attribute
            (e.g. from a lifespan once the database is up). None keeps today's behaviour
            (refresh copies the login's roles and tenant, and never sees a disabled or
            deleted account), which is unsafe in production.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        signing_key: bytes | str | Path | Any,
        issuer: str,
        audience: str,
        revocation: RevocationStore | None = None,
        access_ttl: float = 900.0,
        refresh_ttl: float = 14 * 24 * 3600.0,
        session_ttl: float = 30 * 24 * 3600.0,
        key_id: str | None = None,
        events: SecurityEvents | None = None,
        leeway: float = 30.0,
        subjects: SubjectDirectory | None = None,
    ) -> None:
        if algorithm not in _ISSUABLE:
            raise ConfigurationError(
                f"cannot issue tokens with {algorithm!r}; use {sorted(_ISSUABLE)}"
            )
        if not 0 < access_ttl <= 24 * 3600 or not access_ttl < refresh_ttl <= 365 * 24 * 3600:
            raise ConfigurationError("need 0 < access_ttl <= 1 day and access_ttl < refresh_ttl")
        if session_ttl < refresh_ttl:
            raise ConfigurationError("session_ttl (absolute login lifetime) must be >= refresh_ttl")
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = float(access_ttl)
        self.refresh_ttl = float(refresh_ttl)
        self.session_ttl = float(session_ttl)
        self.key_id = key_id
        self.events = events or SecurityEvents()
        self.revocation: RevocationStore = revocation or MemoryRevocationStore()
        self.subjects: SubjectDirectory | None = subjects
        if algorithm in HMAC_ALGORITHMS:
            if isinstance(signing_key, Path):
                signing_key = signing_key.read_bytes().strip()
            if isinstance(signing_key, str):
                signing_key = signing_key.encode()
            if not isinstance(signing_key, bytes) or len(signing_key) < 32:
                raise ConfigurationError("an HS256 signing secret needs at least 32 bytes")
            self._signing_key: Any = signing_key
            keys = StaticKeySet(algorithms=[algorithm], hmac_secrets={key_id: signing_key})
        else:
            self._signing_key = self._load_private_key(signing_key)
            public = load_public_key(self._signing_key.public_key())
            keys = StaticKeySet(algorithms=[algorithm], public_keys={key_id: public})
        common = {
            "algorithms": [algorithm],
            "issuer": issuer,
            "audiences": [audience],
            "leeway": leeway,
            "revocation": self.revocation,
            "require_jti": True,
        }
        self._refresh_verifier = JwtVerifier(
            keys,
            token_types=[REFRESH_TOKEN_TYPE],
            token_use="refresh",  # noqa: S106  # nosec B106
            cache_size=0,
            **common,  # type: ignore[arg-type]
        )
        self._access_verifier = JwtVerifier(
            keys,
            token_types=[ACCESS_TOKEN_TYPE],
            **common,  # type: ignore[arg-type]
        )

    @staticmethod
    def _load_private_key(material: bytes | str | Path | Any) -> Any:
        from cryptography.hazmat.primitives import serialization

        if isinstance(material, Path):
            material = material.read_bytes()
        if isinstance(material, str):
            material = material.encode()
        if isinstance(material, bytes):
            try:
                return serialization.load_pem_private_key(material, password=None)
            except (ValueError, TypeError):
                raise ConfigurationError("cannot load the private signing key (PEM)") from None
        if not hasattr(material, "sign"):
            raise ConfigurationError("the signing key must be a private key")
        return material

    @property
    def verifier(self) -> JwtVerifier:
        """A verifier for this issuer's access tokens, sharing its revocation store."""
        return self._access_verifier

    def _encode(self, claims: dict[str, Any], typ: str) -> str:
        import jwt

        headers: dict[str, Any] = {"typ": typ}
        if self.key_id is not None:
            headers["kid"] = self.key_id
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm, headers=headers)

    async def issue(
        self,
        subject: str,
        *,
        tenant: str | None = None,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        extra_claims: Mapping[str, Any] | None = None,
    ) -> TokenPair:
        """Issue a new token pair starting a new refresh family (at login)."""
        extra = dict(extra_claims or {})
        if _RESERVED.intersection(extra):
            raise ConfigurationError(f"extra_claims may not set {sorted(_RESERVED & set(extra))}")
        if tenant is not None:
            extra["tenant"] = tenant
        if roles:
            extra["roles"] = sorted(roles)
        if scopes:
            extra["scope"] = " ".join(sorted(scopes))
        return self._pair(subject, family=uuid.uuid4().hex, carried=extra, auth_time=None)

    def _pair(
        self,
        subject: str,
        *,
        family: str,
        carried: dict[str, Any],
        auth_time: int | None,
        issued_at: float | None = None,
    ) -> TokenPair:
        # Millisecond iat, rounded down, so "log out everywhere" cuts between old and new.
        now = _floor_ms(time.time()) if issued_at is None else issued_at
        login = int(now) if auth_time is None else auth_time
        base = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "fam": family,
            "auth_time": login,
        }
        refresh_exp = int(min(now + self.refresh_ttl, login + self.session_ttl))
        access_exp = int(min(now + self.access_ttl, refresh_exp))
        access = self._encode(
            {
                **carried,
                **base,
                "exp": access_exp,
                "jti": secrets.token_hex(16),
                "token_use": "access",  # nosec B105
            },
            ACCESS_TOKEN_TYPE,
        )
        refresh = self._encode(
            {
                **carried,
                **base,
                "exp": refresh_exp,
                "jti": secrets.token_hex(16),
                "token_use": "refresh",  # nosec B105
            },
            REFRESH_TOKEN_TYPE,
        )
        return TokenPair(access, refresh, access_exp, refresh_exp, family)

    async def _verify_refresh(self, refresh_token: str) -> VerifiedToken:
        verified = await self._refresh_verifier.verify(refresh_token)
        if verified.claims.get("token_use") != "refresh" or verified.family is None:
            raise InvalidTokenError("the token is not a refresh token")
        return verified

    async def refresh(self, refresh_token: str, *, address: str | None = None) -> TokenPair:
        """Rotate: return a new pair for a valid, unused refresh token.

        With :attr:`subjects` set, the subject's account is looked up first: new tokens
        carry its current roles and tenant, and a disabled or deleted account is refused.

        Raises:
            TokenReuseError: the token was already used; its family is now revoked.
            TokenRevokedError: the account is disabled or gone; the family is now revoked.
            InvalidTokenError: the token is invalid, expired or revoked.
        """
        verified = await self._verify_refresh(refresh_token)
        if verified.token_id is None or verified.family is None:  # pragma: no cover
            raise InvalidTokenError("the refresh token has no id or family")
        carried = {k: v for k, v in verified.claims.items() if k not in _RESERVED}
        # The new pair is dated before the directory is read: if the account is disabled
        # and revoked right after that read, the pair predates the revocation's
        # not-before and is refused, however late this refresh finishes.
        issued_at = _floor_ms(time.time())
        if self.subjects is not None:
            # Asked before the token is spent: when the directory is down the refresh
            # fails closed and the client can retry with the same token.
            carried = await self._current_claims(self.subjects, verified, carried, address)
        first_use = await self.revocation.mark_used(verified.token_id, verified.expires_at)
        if not first_use:
            await self.revocation.revoke_family(verified.family, time.time() + self.refresh_ttl)
            self.events.publish(
                SecurityEvent(
                    type=SecurityEventType.TOKEN_REUSE_DETECTED,
                    outcome="denied",
                    principal_id=verified.principal.id,
                    tenant=verified.principal.tenant,
                    address=address,
                    details={"family": verified.family},
                )
            )
            raise TokenReuseError(
                "the refresh token was already used; its session family is revoked"
            )
        auth_time = verified.claims.get("auth_time")
        if not isinstance(auth_time, int) or auth_time + self.session_ttl <= time.time():
            raise InvalidTokenError("the login has reached its absolute lifetime; log in again")
        return self._pair(
            verified.principal.id,
            family=verified.family,
            carried=carried,
            auth_time=auth_time,
            issued_at=issued_at,
        )

    async def _current_claims(
        self,
        subjects: SubjectDirectory,
        verified: VerifiedToken,
        carried: dict[str, Any],
        address: str | None,
    ) -> dict[str, Any]:
        """The claims to carry forward, with roles and tenant as the directory has them now."""
        subject = verified.principal.id
        state = await subjects.current(subject)
        if state is None or not state.active:
            if verified.family is not None:
                await self.revocation.revoke_family(verified.family, time.time() + self.refresh_ttl)
            self.events.publish(
                SecurityEvent(
                    type=SecurityEventType.TOKEN_REVOKED,
                    outcome="denied",
                    principal_id=subject,
                    tenant=verified.principal.tenant,
                    address=address,
                    details={
                        "reason": "subject_deleted" if state is None else "subject_disabled",
                        "family": verified.family,
                    },
                )
            )
            raise TokenRevokedError(
                "the refresh token's account is disabled or no longer exists; "
                "its session family is revoked"
            )
        fresh = {k: v for k, v in carried.items() if k not in ("roles", "tenant")}
        if state.tenant is not None:
            fresh["tenant"] = state.tenant
        if state.roles:
            fresh["roles"] = sorted(state.roles)
        return fresh

    async def logout(
        self, access_token: str | None = None, refresh_token: str | None = None
    ) -> None:
        """Revoke the access token at once and its whole family (so its refresh tokens too).

        Either token is enough; an expired access token with a valid refresh token still
        ends the family.

        Raises:
            InvalidTokenError: neither token verifies.
        """
        verified: VerifiedToken | None = None
        if access_token is not None:
            try:
                verified = await self._access_verifier.verify(access_token)
            except InvalidTokenError:
                if refresh_token is None:
                    raise
        if verified is not None and verified.token_id is not None:
            await self.revocation.revoke_token(verified.token_id, verified.expires_at + 60)
        families = set()
        if verified is not None and verified.family is not None:
            families.add(verified.family)
        if refresh_token is not None:
            try:
                refreshed = await self._verify_refresh(refresh_token)
            except InvalidTokenError:
                if verified is None:
                    raise
            else:
                verified = verified or refreshed
                if refreshed.family is not None:
                    families.add(refreshed.family)
        if verified is None:
            raise InvalidTokenError("no token to log out")
        for family in families:
            await self.revocation.revoke_family(family, time.time() + self.refresh_ttl)
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.TOKEN_REVOKED,
                outcome="success",
                principal_id=verified.principal.id,
                tenant=verified.principal.tenant,
                details={"reason": "logout"},
            )
        )

    async def _cut(self, subject: str) -> float:
        cut = _floor_ms(time.time()) + 0.001  # after every token issued so far
        # Tokens issued before the cut die within refresh_ttl (plus verifier leeway).
        await self.revocation.set_not_before(subject, cut, self.refresh_ttl + 60)
        # Return only once the cut is in the past, so tokens issued after this call
        # (by this process or a clock-synchronised peer) are never caught by it.
        delay = cut - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return cut

    async def logout_everywhere(self, subject: str) -> None:
        """Refuse every token of ``subject`` issued before now (password change, compromise)."""
        await self._cut(subject)
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.LOGOUT_EVERYWHERE, outcome="success", principal_id=subject
            )
        )

    async def revoke_subject(
        self, subject: str, *, api_keys: ApiKeyService | None = None, by: str | None = None
    ) -> SubjectRevocation:
        """Revoke everything ``subject`` holds: call it when an account is disabled or deleted.

        Every access token and every refresh family of the subject issued before this call
        is refused from now on (a per-subject not-before in the revocation store, shared by
        every replica), and, with ``api_keys``, every live API key whose principal is the
        subject is revoked.

        Mark the account disabled in your user store *before* calling this: a refresh
        that reads the store afterwards is refused by :attr:`subjects`, and one that read
        it before dates its new pair at that read, before the not-before, so its tokens
        are refused however late it finishes. Tokens issued after this call verify again, so
        a re-enabled account can log in; keep login refusing disabled accounts.

        Args:
            subject: the account (the tokens' ``sub``, the API keys' principal id).
            api_keys: the service's API-key service, whose keys of ``subject`` to revoke.
            by: who revoked (the admin's principal id), for the security events.
        """
        cut = await self._cut(subject)
        keys = await api_keys.revoke_principal(subject, by=by) if api_keys is not None else []
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.TOKEN_REVOKED,
                outcome="success",
                principal_id=subject,
                details={"reason": "subject_revoked", "by": by, "api_keys": len(keys)},
            )
        )
        return SubjectRevocation(subject, cut, tuple(keys))
