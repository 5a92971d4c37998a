"""Fail-closed JWT verification with a verified-token cache.

The verifier parses the token itself before any cryptography: size bound, exactly three
strict base64url segments, a JSON object header with an allowed ``alg``, no ``crit``, no
key-carrying headers (``jwk``, ``jku``, ``x5u``, ``x5c``), an accepted ``typ``. The key comes
from the configured :class:`KeySet` and the signature is checked with pyjwt's algorithm
implementations. Claims are then checked exactly (``iss`` equality, ``aud`` allow-list,
required ``exp``, bounded leeway).

Verified tokens are cached by SHA-256 digest of the token, bounded in count, each entry
expiring no later than the token's ``exp``. A cache hit skips parsing and signature
checks but never the revocation store, so logout and "log out everywhere" apply at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from saasfw.security._errors import (
    ConfigurationError,
    InvalidTokenError,
    KeyUnavailableError,
    SecurityError,
    SecurityUnavailableError,
    TokenRevokedError,
)
from saasfw.security._jwt_keys import KeySet, algorithm_family
from saasfw.security._principal import Principal, PrincipalKind
from saasfw.security._revocation import RevocationStore

__all__ = ["ClaimsMapping", "JwtVerifier", "VerifiedToken"]

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")
_FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
_MAX_LEEWAY = 300.0
_MAX_LIST_ITEMS = 256
_MAX_STR = 1024


@dataclass(frozen=True, slots=True)
class ClaimsMapping:
    """How verified claims become a :class:`Principal`."""

    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    scope_claims: tuple[str, ...] = ("scope", "scp", "permissions")
    kind_claim: str = "kind"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The outcome of a successful verification."""

    principal: Principal
    claims: Mapping[str, Any] = field(repr=False)
    algorithm: str
    key_id: str | None
    token_id: str | None
    family: str | None
    issued_at: float | None
    expires_at: float


def _b64decode(segment: str) -> bytes:
    if not _SEGMENT.match(segment):
        raise InvalidTokenError("the token is not three base64url segments")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidTokenError("the token is not three base64url segments") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise InvalidTokenError(f"the token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError(f"the token {what} is not a JSON object")
    return value


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidTokenError(f"the '{name}' claim is not a number")
    return float(value)


def _str_list(value: object, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: list[object] = list(value.split())
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidTokenError(f"the '{name}' claim is not a list of strings")
    if len(items) > _MAX_LIST_ITEMS or not all(
        isinstance(i, str) and 0 < len(i) <= _MAX_STR for i in items
    ):
        raise InvalidTokenError(f"the '{name}' claim is not a list of strings")
    return frozenset(items)  # type: ignore[arg-type]


class JwtVerifier:
    """Verifies access tokens against trusted keys and exact claim rules.

    Usable anywhere (FastAPI dependency, gRPC interceptor, worker): ``await verify(token)``.

    Args:
        keys: where keys come from (:class:`StaticKeySet` or :class:`JwksKeySet`).
        algorithms: allow-list within one key family; ``none`` is refused at construction.
        issuer: the exact ``iss`` expected.
        audiences: accepted ``aud`` values; the token must name at least one.
        token_types: accepted ``typ`` header values, case-insensitive, an
            ``application/`` prefix ignored. Default: RFC 9068 access tokens only.
        accept_missing_typ: accept tokens without ``typ`` (for issuers that omit it);
            a ``token_use`` claim other than ``access`` is refused either way.
        leeway: clock skew tolerance in seconds, at most 300.
        max_token_bytes: tokens longer than this are refused before any decoding.
        cache_size: maximum verified tokens cached (0 disables the cache).
        revocation: optional revocation store consulted on every verification.
        require_jti: refuse tokens without ``jti`` (useful when revocation is used).
        claims: how claims map to the principal's tenant, roles and permissions.
        token_use: expected ``token_use`` claim when present (``access`` for APIs).
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        algorithms: Iterable[str],
        issuer: str,
        audiences: Iterable[str],
        token_types: Iterable[str] = ("at+jwt",),
        accept_missing_typ: bool = False,
        leeway: float = 30.0,
        max_token_bytes: int = 8192,
        cache_size: int = 10_000,
        revocation: RevocationStore | None = None,
        require_jti: bool = False,
        claims: ClaimsMapping | None = None,
        token_use: str = "access",  # noqa: S107  # nosec B107
    ) -> None:
        self.algorithms = frozenset(algorithms)
        family = algorithm_family(self.algorithms)
        if family != keys.family:
            raise ConfigurationError(
                f"the key set holds {keys.family} keys but the allow-list is {family}"
            )
        if not issuer:
            raise ConfigurationError("a JWT verifier needs the exact expected issuer")
        self.audiences = frozenset(audiences)
        if not self.audiences:
            raise ConfigurationError("a JWT verifier needs at least one accepted audience")
        if not 0 <= leeway <= _MAX_LEEWAY:
            raise ConfigurationError(f"JWT leeway must be between 0 and {_MAX_LEEWAY:.0f} s")
        if not 256 <= max_token_bytes <= 64 * 1024:
            raise ConfigurationError("max_token_bytes must be between 256 and 65536")
        if cache_size < 0:
            raise ConfigurationError("cache_size must not be negative")
        self.keys = keys
        self.issuer = issuer
        self.token_types = frozenset(t.lower().removeprefix("application/") for t in token_types)
        self.accept_missing_typ = accept_missing_typ
        self.leeway = float(leeway)
        self.max_token_bytes = max_token_bytes
        self.cache_size = cache_size
        self.revocation = revocation
        self.require_jti = require_jti
        self.token_use = token_use
        self.claims_mapping = claims or ClaimsMapping()
        self._cache: dict[bytes, tuple[float, VerifiedToken]] = {}
        import jwt.algorithms

        self._algorithms = {
            name: impl
            for name, impl in jwt.algorithms.get_default_algorithms().items()
            if name in self.algorithms
        }
        self.cache_hits = 0
        self.cache_misses = 0
        self._inserts = 0

    async def verify(self, token: str) -> VerifiedToken:
        """Verify ``token`` and return the principal; raise :class:`InvalidTokenError`."""
        if not isinstance(token, str) or len(token) > self.max_token_bytes:
            raise InvalidTokenError("the token is too large")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        entry = self._cache.get(digest)
        if entry is not None:
            if entry[0] > time.time():
                self.cache_hits += 1
                await self._check_revocation(entry[1])
                return entry[1]
            self._cache.pop(digest, None)
        self.cache_misses += 1
        verified, cache_until = await self._verify_uncached(token)
        await self._check_revocation(verified)
        self._remember(digest, verified, cache_until)
        return verified

    def forget(self) -> None:
        """Drop every cached verification (e.g. after rotating keys out for compromise)."""
        self._cache.clear()

    async def _check_revocation(self, verified: VerifiedToken) -> None:
        if self.revocation is None:
            return
        try:
            revoked = await self.revocation.is_revoked(
                jti=verified.token_id,
                family=verified.family,
                subject=verified.principal.id,
                issued_at=verified.issued_at,
            )
        except Exception as exc:
            # Fail closed: without the revocation state the token cannot be trusted.
            raise SecurityUnavailableError(
                f"the revocation store is unreachable ({type(exc).__name__})"
            ) from None
        if revoked:
            raise TokenRevokedError("the token has been revoked")

    def _remember(self, digest: bytes, verified: VerifiedToken, cache_until: float) -> None:
        if self.cache_size == 0 or cache_until <= time.time():
            return
        cache = self._cache
        self._inserts += 1
        if self._inserts % self.cache_size == 0:
            # Amortised O(1): a full sweep of expired entries once per cache_size inserts,
            # so a flood of distinct tokens never costs a scan per token.
            now = time.time()
            for key in [k for k, v in cache.items() if v[0] <= now]:
                del cache[key]
        while len(cache) >= self.cache_size:
            del cache[next(iter(cache))]  # oldest inserted first
        cache[digest] = (cache_until, verified)

    async def _verify_uncached(self, token: str) -> tuple[VerifiedToken, float]:
        try:
            return await self._decode(token)
        except SecurityError:
            raise
        except Exception:
            # Any parser or crypto surprise is a bad token, never a 500.
            raise InvalidTokenError("the token could not be verified") from None

    async def _decode(self, token: str) -> tuple[VerifiedToken, float]:
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise InvalidTokenError("the token is not three base64url segments")
        header = _json_object(_b64decode(parts[0]), "header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidTokenError("the token's algorithm is not allowed")
        if "crit" in header:
            raise InvalidTokenError(
                "the token has critical header extensions this verifier does not understand"
            )
        if _FORBIDDEN_HEADERS.intersection(header):
            raise InvalidTokenError("the token carries its own key material (jwk/jku/x5u/x5c)")
        if "b64" in header:
            raise InvalidTokenError("unencoded payloads are not accepted")
        self._check_type(header.get("typ"))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise KeyUnavailableError("the token's 'kid' header is not a valid key id")
        key = await self.keys.get_key(kid, alg)
        signature = _b64decode(parts[2])
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        if not self._algorithms[alg].verify(signing_input, key.key, signature):
            raise InvalidTokenError("the token signature does not verify")
        claims = _json_object(_b64decode(parts[1]), "payload")
        return self._check_claims(claims, alg, kid)

    def _check_type(self, typ: object) -> None:
        if typ is None:
            if self.accept_missing_typ:
                return
            raise InvalidTokenError("the token has no 'typ' header")
        if (
            not isinstance(typ, str)
            or typ.lower().removeprefix("application/") not in self.token_types
        ):
            raise InvalidTokenError("the token type is not accepted here")

    def _check_claims(
        self, claims: dict[str, Any], alg: str, kid: str | None
    ) -> tuple[VerifiedToken, float]:
        now = time.time()
        exp = _number(claims, "exp")
        if exp is None:
            raise InvalidTokenError("the token has no 'exp' claim")
        if exp <= now - self.leeway:
            raise InvalidTokenError("the token has expired", code="token.expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidTokenError("the token is not valid yet", code="token.not_yet_valid")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            raise InvalidTokenError(
                "the token was issued in the future", code="token.not_yet_valid"
            )
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss != self.issuer:
            raise InvalidTokenError("the token issuer is not trusted")
        aud = claims.get("aud")
        auds = {aud} if isinstance(aud, str) else aud
        if (
            not isinstance(auds, list | set)
            or not all(isinstance(a, str) for a in auds)
            or not self.audiences.intersection(auds)
        ):
            raise InvalidTokenError("the token audience is not accepted")
        token_use = claims.get("token_use")
        if token_use is not None and token_use != self.token_use:
            raise InvalidTokenError(f"the token is not an {self.token_use} token")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= _MAX_STR:
            raise InvalidTokenError("the token has no usable 'sub' claim")
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not 0 < len(jti) <= _MAX_STR):
            raise InvalidTokenError("the token's 'jti' claim is not a string")
        if jti is None and self.require_jti:
            raise InvalidTokenError("the token has no 'jti' claim")
        family = claims.get("fam")
        if family is not None and not isinstance(family, str):
            raise InvalidTokenError("the token's 'fam' claim is not a string")
        principal = self._principal(claims, sub)
        # A token accepted inside the leeway is cached only until its real expiry.
        cache_until = exp if (nbf is None or nbf <= now) and (iat is None or iat <= now) else now
        verified = VerifiedToken(
            principal=principal,
            claims=MappingProxyType(claims),
            algorithm=alg,
            key_id=kid,
            token_id=jti,
            family=family,
            issued_at=iat,
            expires_at=exp,
        )
        return verified, cache_until

    def _principal(self, claims: Mapping[str, Any], sub: str) -> Principal:
        mapping = self.claims_mapping
        tenant = claims.get(mapping.tenant_claim)
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise InvalidTokenError("the token's tenant claim is not a string")
        roles = _str_list(claims.get(mapping.roles_claim), mapping.roles_claim)
        scopes: frozenset[str] = frozenset()
        for name in mapping.scope_claims:
            scopes |= _str_list(claims.get(name), name)
        kind_claim = claims.get(mapping.kind_claim)
        kind: PrincipalKind = "service" if kind_claim == "service" else "user"
        return Principal(
            id=sub,
            kind=kind,
            auth_method="jwt",
            tenant=tenant,
            roles=roles,
            permissions=scopes,
            claims=tuple(claims.items()),
        )
