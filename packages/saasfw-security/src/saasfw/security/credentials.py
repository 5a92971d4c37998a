"""saasfw.security.credentials: every public name for API keys, sessions, passwords and mTLS.

The stores a service chooses between and the services that use them (``ApiKeyService``,
``MemoryApiKeyStore``, ``SqlApiKeyStore``, ``SessionManager``, ``MemorySessionStore``,
``RedisSessionStore``, ``PasswordHasher``) are also on ``saasfw.security``; the record
types, the ports and the mTLS pieces are here.
"""

from saasfw.security._apikeys import (
    ApiKeyRecord,
    ApiKeyService,
    ApiKeyStore,
    CreatedApiKey,
    MemoryApiKeyStore,
    parse_api_key,
)
from saasfw.security._apikeys_sql import SqlApiKeyStore
from saasfw.security._mtls import (
    ClientCertificateVerifier,
    ForwardedCertificateSource,
    MtlsAuthenticator,
    MtlsIdentity,
)
from saasfw.security._passwords import (
    PasswordCheck,
    PasswordHasher,
    PasswordPolicy,
    pbkdf2_sha256_verifier,
)
from saasfw.security._sessions import MemorySessionStore, Session, SessionManager, SessionStore
from saasfw.security._sessions_redis import RedisSessionStore

__all__ = [
    "ApiKeyRecord",
    "ApiKeyService",
    "ApiKeyStore",
    "ClientCertificateVerifier",
    "CreatedApiKey",
    "ForwardedCertificateSource",
    "MemoryApiKeyStore",
    "MemorySessionStore",
    "MtlsAuthenticator",
    "MtlsIdentity",
    "PasswordCheck",
    "PasswordHasher",
    "PasswordPolicy",
    "RedisSessionStore",
    "Session",
    "SessionManager",
    "SessionStore",
    "SqlApiKeyStore",
    "parse_api_key",
    "pbkdf2_sha256_verifier",
]
