"""saasfw.security.tokens: every public name for JWTs: verifying, issuing, keys, revocation.

The names a service author needs most (``JwtVerifier``, ``JwksKeySet``, ``StaticKeySet``,
``TokenIssuer``, ``TokenPair``, the three revocation stores, ``SubjectState``) are also on
``saasfw.security`` itself; the key and claim types, the ports and the cached store are here.
"""

from saasfw.security._errors import KeyUnavailableError
from saasfw.security._jwt_issue import TokenIssuer, TokenPair
from saasfw.security._jwt_keys import JwksKeySet, KeySet, StaticKeySet, VerificationKey
from saasfw.security._jwt_verify import ClaimsMapping, JwtVerifier, VerifiedToken
from saasfw.security._revocation import (
    CachedRevocationStore,
    MemoryRevocationStore,
    RevocationStore,
)
from saasfw.security._revocation_redis import RedisRevocationStore
from saasfw.security._revocation_sql import SqlRevocationStore
from saasfw.security._subjects import SubjectDirectory, SubjectRevocation, SubjectState

__all__ = [
    "CachedRevocationStore",
    "ClaimsMapping",
    "JwksKeySet",
    "JwtVerifier",
    "KeySet",
    "KeyUnavailableError",
    "MemoryRevocationStore",
    "RedisRevocationStore",
    "RevocationStore",
    "SqlRevocationStore",
    "StaticKeySet",
    "SubjectDirectory",
    "SubjectRevocation",
    "SubjectState",
    "TokenIssuer",
    "TokenPair",
    "VerificationKey",
    "VerifiedToken",
]
