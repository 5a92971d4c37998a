"""SecuritySettings: safe defaults, env-style nesting, builders that fail closed."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr, ValidationError

from saasfw.security import (
    ConfigurationError,
    MemoryApiKeyStore,
    MemorySessionStore,
    SecuritySettings,
)
from saasfw.security._settings import JwtSettings, PasswordSettings, RbacSettings
from saasfw.security.settings import (
    build_authenticator,
    build_jwt_verifier,
    build_password_hasher,
    build_rbac_policy,
    security_production_problems,
)


def test_defaults_are_safe_and_build_nothing_implicitly() -> None:
    settings = SecuritySettings()
    assert build_jwt_verifier(settings.jwt) is None
    with pytest.raises(ConfigurationError, match="at least one"):
        build_authenticator(settings)
    hasher = build_password_hasher(settings.passwords)
    assert hasher.parameters["memory_cost"] >= 19456
    assert security_production_problems(settings) == []


async def test_a_full_configuration_builds_a_working_authenticator(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = SecuritySettings.model_validate(
        {
            "jwt": {
                "issuer": "https://auth.example",
                "audiences": ["orders"],
                "algorithms": ["ES256"],
                "public_key_files": {"k1": str(pem)},
            },
            "api_keys": {"peppers": {"p1": "x" * 40}, "current_pepper": "p1"},
            "rbac": {"roles": {"viewer": {"permissions": ["orders:read"]}}},
            "sessions": {"enabled": True},
        }
    )
    assert "x" * 40 not in repr(settings)
    authenticator = build_authenticator(
        settings, api_key_store=MemoryApiKeyStore(), session_store=MemorySessionStore()
    )
    assert authenticator.jwt is not None
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "https://auth.example",
            "aud": "orders",
            "sub": "a",
            "exp": now + 60,
            "roles": ["viewer"],
        },
        key,
        algorithm="ES256",
        headers={"kid": "k1", "typ": "at+jwt"},
    )
    principal = (await authenticator.jwt.verify(token)).principal
    assert authenticator.policy.is_allowed(principal, "orders:read")


def test_key_sources_and_families_fail_closed() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        build_jwt_verifier(JwtSettings(issuer="i", audiences=("a",)))
    with pytest.raises(ConfigurationError, match="exactly one"):
        build_jwt_verifier(
            JwtSettings(
                issuer="i",
                audiences=("a",),
                hmac_secret=SecretStr("s" * 40),
                jwks_url="https://idp/jwks",
            )
        )
    with pytest.raises(ConfigurationError, match="one key family"):
        build_jwt_verifier(
            JwtSettings(
                issuer="i",
                audiences=("a",),
                algorithms=("HS256", "RS256"),
                hmac_secret=SecretStr("s" * 40),
            )
        )
    with pytest.raises(ConfigurationError, match="too short"):
        build_jwt_verifier(
            JwtSettings(
                issuer="i", audiences=("a",), algorithms=("HS256",), hmac_secret=SecretStr("s")
            )
        )
    with pytest.raises(ConfigurationError, match="audience"):
        build_jwt_verifier(
            JwtSettings(issuer="i", algorithms=("HS256",), hmac_secret=SecretStr("s" * 40))
        )
    with pytest.raises(ValidationError):
        JwtSettings(leeway=3600)
    with pytest.raises(ValidationError):
        PasswordSettings(memory_cost=1024)
    with pytest.raises(ConfigurationError):
        build_authenticator(
            SecuritySettings.model_validate(
                {"api_keys": {"peppers": {"p": "y" * 40}, "current_pepper": "p"}}
            )
        )


def test_rbac_from_file_or_inline(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "rbac.yaml"
    path.write_text("roles:\n  a: {permissions: ['x:read']}\n")
    assert build_rbac_policy(RbacSettings(policy_file=path)).role_names == {"a"}
    with pytest.raises(ConfigurationError):
        build_rbac_policy(RbacSettings(policy_file=path, roles={"b": {}}))


def test_production_problems() -> None:
    settings = SecuritySettings.model_validate(
        {
            "jwt": {"jwks_url": "http://idp/jwks"},
            "sessions": {"enabled": True, "secure": False, "cookie_name": "sid"},
        }
    )
    problems = security_production_problems(settings, workers=4)
    assert any("jwks_url" in p for p in problems)
    assert any("secure" in p for p in problems)
    assert any("redis_url" in p for p in problems)
    assert any("memory://" in p for p in problems)  # the rate-limit rule is included
