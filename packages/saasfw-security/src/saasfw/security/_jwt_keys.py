"""Trusted JWT keys: static keys from configuration and a JWKS endpoint the service fetches.

Keys never come from the token. A ``kid`` header only selects among keys loaded here, and
every key is bound to the algorithms its type allows, so an RSA public key can never be
used as an HMAC secret (the classic algorithm-confusion attack).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from saasfw.security._errors import ConfigurationError, KeyUnavailableError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "JwksKeySet",
    "KeyFamily",
    "KeySet",
    "StaticKeySet",
    "VerificationKey",
    "algorithm_family",
    "load_public_key",
]

_log = logging.getLogger("saasfw.security.jwks")

KeyFamily = Literal["hmac", "asymmetric"]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ASYMMETRIC_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHMS.values()) | {"EdDSA"}
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_MIN_RSA_BITS = 2048
_MAX_KID_CHARS = 256

if TYPE_CHECKING:
    # cryptography is imported lazily: importing saasfw.security stays cheap.
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    PublicKey = (
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey
    )


def algorithm_family(algorithms: Iterable[str]) -> KeyFamily:
    """Return the one key family of an allow-list; refuse ``none``, unknown and mixed lists."""
    algs = set(algorithms)
    if not algs:
        raise ConfigurationError("the JWT algorithm allow-list is empty")
    if any(a.lower() == "none" for a in algs):
        raise ConfigurationError("the JWT algorithm 'none' is never allowed")
    unknown = algs - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
    if unknown:
        raise ConfigurationError(f"unsupported JWT algorithms: {sorted(unknown)}")
    if algs <= HMAC_ALGORITHMS:
        return "hmac"
    if algs <= ASYMMETRIC_ALGORITHMS:
        return "asymmetric"
    raise ConfigurationError(
        "a JWT verifier allows one key family: HMAC (HS*) or asymmetric (RS/PS/ES/EdDSA), "
        "never both; use two verifiers if you really need both"
    )


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One trusted key, already parsed, with the algorithms it may verify."""

    kid: str | None
    key: Any = None
    algorithms: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # never show key material
        return f"VerificationKey(kid={self.kid!r}, algorithms={sorted(self.algorithms)!r})"


def _algorithms_for_public_key(key: object) -> frozenset[str]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError(f"RSA keys must have at least {_MIN_RSA_BITS} bits")
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        if alg is None:
            raise ConfigurationError(f"unsupported elliptic curve {key.curve.name}")
        return frozenset({alg})
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    raise ConfigurationError(f"unsupported public key type {type(key).__name__}")


def load_public_key(material: bytes | str | Path | object) -> PublicKey:
    """Load a public key from PEM (SPKI, PKCS#1, certificate, or a private key) or an object.

    A private key is accepted for convenience (its public half is used); DER is not guessed.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(material, Path):
        material = material.read_bytes()
    if isinstance(material, str):
        material = material.encode()
    if isinstance(material, bytes):
        data = material.strip()
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                obj: object = x509.load_pem_x509_certificate(data).public_key()
            elif b"PRIVATE KEY-----" in data:
                obj = serialization.load_pem_private_key(data, password=None).public_key()
            else:
                obj = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot load the public key: {exc}") from None
    else:
        obj = material
    if hasattr(obj, "public_key") and not isinstance(
        obj,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        obj = obj.public_key()
    _algorithms_for_public_key(obj)
    return obj  # type: ignore[return-value]


def _check_kid(kid: object) -> str | None:
    if kid is None:
        return None
    if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_CHARS or not kid.isprintable():
        raise KeyUnavailableError("the token's 'kid' header is not a valid key id")
    return kid


class KeySet(Protocol):
    """Where a verifier finds the key for a token's ``kid`` and ``alg``."""

    family: KeyFamily

    async def get_key(self, kid: str | None, alg: str) -> VerificationKey:
        """Return the trusted key or raise :class:`KeyUnavailableError`."""
        ...


class StaticKeySet:
    """Keys from configuration: HMAC secrets or public keys, each optionally with a ``kid``.

    A token without ``kid`` is accepted only when exactly one key is configured.
    """

    def __init__(
        self,
        *,
        algorithms: Iterable[str],
        hmac_secrets: Mapping[str | None, bytes | str] | None = None,
        public_keys: Mapping[str | None, bytes | str | Path | object] | None = None,
    ) -> None:
        self.algorithms = frozenset(algorithms)
        self.family: KeyFamily = algorithm_family(self.algorithms)
        keys: dict[str | None, VerificationKey] = {}
        if hmac_secrets and public_keys:
            raise ConfigurationError("configure HMAC secrets or public keys, not both")
        if self.family == "hmac":
            if public_keys:
                raise ConfigurationError("an HMAC allow-list cannot use public keys")
            import jwt.algorithms
            import jwt.exceptions

            for kid, secret in (hmac_secrets or {}).items():
                raw = secret.encode() if isinstance(secret, str) else bytes(secret)
                try:
                    # Refuses PEM, OpenSSH, DER and JWK material: a public key used as an
                    # HMAC secret would let anyone forge tokens.
                    jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).prepare_key(
                        raw
                    )
                except jwt.exceptions.InvalidKeyError:
                    raise ConfigurationError(
                        f"the HMAC secret for kid {kid!r} looks like key material (PEM, SSH, "
                        "DER or JWK); use random secret bytes, never a public key"
                    ) from None
                usable = frozenset(a for a in self.algorithms if len(raw) >= _HMAC_MIN_BYTES[a])
                if not usable:
                    raise ConfigurationError(
                        f"the HMAC secret for kid {kid!r} is too short for "
                        f"{sorted(self.algorithms)}"
                        " (at least as long as the hash output: 32 bytes for HS256)"
                    )
                keys[kid] = VerificationKey(kid, raw, usable)
        else:
            if hmac_secrets:
                raise ConfigurationError("an asymmetric allow-list cannot use HMAC secrets")
            for kid, material in (public_keys or {}).items():
                pub = load_public_key(material)
                usable = _algorithms_for_public_key(pub) & self.algorithms
                if not usable:
                    raise ConfigurationError(
                        f"the key for kid {kid!r} fits none of {sorted(self.algorithms)}"
                    )
                keys[kid] = VerificationKey(kid, pub, usable)
        if not keys:
            raise ConfigurationError("no JWT verification key is configured")
        self._keys = keys
        self._only = next(iter(keys.values())) if len(keys) == 1 else None

    async def get_key(self, kid: str | None, alg: str) -> VerificationKey:
        return self.lookup(kid, alg)

    def lookup(self, kid: str | None, alg: str) -> VerificationKey:
        """Synchronous :meth:`get_key` (static keys need no I/O)."""
        kid = _check_kid(kid)
        key = self._keys.get(kid) if kid is not None else self._only
        if key is None and kid is not None and self._only is not None and self._only.kid is None:
            key = self._only
        if key is None or alg not in key.algorithms:
            raise KeyUnavailableError("no trusted key matches the token's key id and algorithm")
        return key


class JwksKeySet:
    """Keys from a JWKS URL fetched by the service, cached, rotated and fail-safe.

    * Keys are cached for ``cache_ttl`` seconds; afterwards a refetch is attempted.
    * An unknown ``kid`` triggers a refetch, at most once per ``refetch_cooldown`` seconds
      however many unknown ``kid`` values arrive (one in-flight fetch, shared).
    * While the endpoint is unreachable or answers garbage, the cached keys stay in use.
    * Only signature keys of an allowed asymmetric algorithm are taken; ``oct`` keys are
      ignored, so an attacker who can edit the JWKS still cannot turn it into HMAC.
    """

    family: KeyFamily = "asymmetric"

    def __init__(
        self,
        url: str,
        *,
        algorithms: Iterable[str],
        cache_ttl: float = 300.0,
        refetch_cooldown: float = 30.0,
        timeout: float = 5.0,
        max_bytes: int = 512 * 1024,
        allow_http: bool = False,
        http_client: Any = None,
    ) -> None:
        self.algorithms = frozenset(algorithms)
        if algorithm_family(self.algorithms) != "asymmetric":
            raise ConfigurationError("a JWKS key set serves asymmetric algorithms only")
        if not url.startswith("https://") and not (allow_http and url.startswith("http://")):
            raise ConfigurationError(
                "the JWKS URL must use https:// (allow_http=True is for local tests only)"
            )
        if cache_ttl <= 0 or refetch_cooldown < 0 or timeout <= 0:
            raise ConfigurationError("JWKS cache_ttl and timeout must be positive")
        self.url = url
        self.cache_ttl = cache_ttl
        self.refetch_cooldown = refetch_cooldown
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client = http_client
        self._owns_client = False
        self._keys: dict[str | None, VerificationKey] = {}
        self._fetched_at = float("-inf")  # last successful fetch
        self._attempted_at = float("-inf")  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0
        self.fetch_failures = 0

    @property
    def key_ids(self) -> frozenset[str | None]:
        """Key ids currently cached."""
        return frozenset(self._keys)

    async def get_key(self, kid: str | None, alg: str) -> VerificationKey:
        kid = _check_kid(kid)
        now = time.monotonic()
        if now - self._fetched_at > self.cache_ttl:
            await self._refresh(force=False)
        key = self._find(kid)
        if key is None:
            await self._refresh(force=True)
            key = self._find(kid)
        if key is None or alg not in key.algorithms:
            raise KeyUnavailableError("no trusted key matches the token's key id and algorithm")
        return key

    def _find(self, kid: str | None) -> VerificationKey | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch now (respecting the cooldown); useful at start-up to fail fast."""
        await self._refresh(force=True)

    async def _refresh(self, *, force: bool) -> None:
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:
                return  # someone else fetched while we waited: use their result
            now = time.monotonic()
            if now - self._attempted_at < self.refetch_cooldown:
                return
            if not force and now - self._fetched_at <= self.cache_ttl:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except Exception as exc:
                self.fetch_failures += 1
                _log.warning(
                    "JWKS fetch from %s failed (%s); keeping %d cached keys",
                    self.url,
                    type(exc).__name__,
                    len(self._keys),
                )
                return
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _fetch(self) -> dict[str | None, VerificationKey]:
        if self._client is None:
            import httpx

            # One long-lived client: building one per fetch would reload the CA bundle.
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            self._owns_client = True
        async with self._client.stream("GET", self.url, timeout=self.timeout) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ValueError("JWKS document is too large")
        return self._parse(json.loads(bytes(body)))

    async def aclose(self) -> None:
        """Close the HTTP client this key set created (not one passed in)."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _parse(self, document: object) -> dict[str | None, VerificationKey]:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str | None, VerificationKey] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") not in {"RSA", "EC", "OKP"}:
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                parsed = jwt.PyJWK(entry)
                pub = parsed.key
                if hasattr(pub, "public_key") and not isinstance(
                    pub,
                    rsa.RSAPublicKey
                    | ec.EllipticCurvePublicKey
                    | ed25519.Ed25519PublicKey
                    | ed448.Ed448PublicKey,
                ):
                    pub = pub.public_key()
                usable = _algorithms_for_public_key(pub) & self.algorithms
            except Exception:  # noqa: S112  # nosec B112 - a bad key must not poison the set
                continue
            declared = entry.get("alg")
            if isinstance(declared, str):
                usable &= {declared}
            kid = entry.get("kid")
            if not usable or (kid is not None and not isinstance(kid, str)):
                continue
            keys[kid] = VerificationKey(kid, pub, frozenset(usable))
        if not keys:
            raise ValueError("JWKS document has no usable signature key")
        return keys
