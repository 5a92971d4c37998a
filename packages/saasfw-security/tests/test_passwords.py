"""Passwords: argon2id at or above the OWASP floor, rehash on login, no truncation,
common-password refusal, and constant work for unknown users."""

from __future__ import annotations

import base64
import hashlib

import pytest

from saasfw.security import ConfigurationError, PasswordHasher, SecurityEvents, WeakPasswordError
from saasfw.security.advanced import SecurityEvent
from saasfw.security.credentials import PasswordPolicy


def _fast(memory_cost: int = 1024) -> PasswordHasher:
    # Test-only parameters: these tests are about behaviour, not cost.
    return PasswordHasher(
        memory_cost=memory_cost, time_cost=1, parallelism=1, insecure_test_parameters=True
    )


def test_default_parameters_meet_the_owasp_floor_and_produce_phc_argon2id() -> None:
    hasher = PasswordHasher()
    params = hasher.parameters
    assert params["memory_cost"] >= 19456
    assert params["time_cost"] >= 2
    hashed = hasher.hash("correct horse battery staple")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert hasher.verify(hashed, "correct horse battery staple").valid


@pytest.mark.parametrize(("m", "t"), [(19455, 2), (47103, 1), (12287, 3), (7167, 9), (65536, 0)])
def test_parameters_below_the_floor_are_refused(m: int, t: int) -> None:
    with pytest.raises(ConfigurationError, match="OWASP"):
        PasswordHasher(memory_cost=m, time_cost=t)


def test_owasp_equivalent_pairs_are_accepted() -> None:
    for m, t in [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)]:
        PasswordHasher(memory_cost=m, time_cost=t)


def test_rehash_on_login_when_parameters_change() -> None:
    old = _fast(memory_cost=1024)
    new = _fast(memory_cost=2048)
    stored = old.hash("a perfectly fine passphrase")
    check = new.verify(stored, "a perfectly fine passphrase")
    assert check.valid
    assert check.new_hash is not None
    assert "m=2048" in check.new_hash
    assert new.verify(check.new_hash, "a perfectly fine passphrase") == new.verify(
        check.new_hash, "a perfectly fine passphrase"
    )
    assert new.verify(check.new_hash, "a perfectly fine passphrase").new_hash is None
    assert not new.verify(stored, "wrong passphrase here").valid


def test_legacy_hashes_verify_once_and_are_replaced() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"legacy password 1", salt, 29000)

    def ab64(b: bytes) -> str:
        return base64.b64encode(b).decode().rstrip("=").replace("+", ".")

    legacy = f"$pbkdf2-sha256$29000${ab64(salt)}${ab64(digest)}"
    hasher = _fast()
    check = hasher.verify(legacy, "legacy password 1")
    assert check.valid
    assert check.new_hash is not None
    assert check.new_hash.startswith("$argon2id$")
    assert not hasher.verify(legacy, "legacy password 2").valid
    import argon2

    argon2i = argon2.PasswordHasher(
        memory_cost=1024, time_cost=1, parallelism=1, type=argon2.Type.I
    ).hash("other variant pw")
    upgraded = hasher.verify(argon2i, "other variant pw")
    assert upgraded.valid
    assert upgraded.new_hash is not None
    assert upgraded.new_hash.startswith("$argon2id$")
    for junk in ("", "$md5$x", "plaintext", "$argon2id$garbage"):
        assert not hasher.verify(junk, "whatever pw").valid


def test_long_passwords_are_not_truncated() -> None:
    hasher = _fast()
    base = "x" * 127
    stored = hasher.hash(base + "a")
    assert hasher.verify(stored, base + "a").valid
    assert not hasher.verify(stored, base + "b").valid
    assert not hasher.verify(stored, base).valid
    with pytest.raises(WeakPasswordError) as info:
        hasher.hash("y" * 129)
    assert info.value.code == "password.too_long"
    assert not hasher.verify(stored, "z" * 100_000).valid  # refused without hashing


def test_policy_length_common_and_context() -> None:
    hasher = _fast()
    cases = {
        "short": ("Ab1!xyz", "password.too_short"),
        "common": ("password1", "password.common"),
        "common-case": ("PassWord123", "password.common"),
        "common-qwerty": ("qwertyuiop", "password.common"),
    }
    for password, code in cases.values():
        with pytest.raises(WeakPasswordError) as info:
            hasher.hash(password)
        assert info.value.code == code
        assert password not in str(info.value)
    with pytest.raises(WeakPasswordError) as info:
        hasher.hash("margaret-rocks-2026", context=["margaret", "m@example.com"])
    assert info.value.code == "password.contextual"
    hasher.hash("ein sehr langes Passwort")
    hasher.hash("8 chars!")
    with pytest.raises(ConfigurationError):
        PasswordPolicy(min_length=6)
    with pytest.raises(ConfigurationError):
        PasswordPolicy(max_length=32)


def test_unicode_is_normalised_consistently() -> None:
    hasher = _fast()
    composed, decomposed = "caf\u00e9 au lait!", "cafe\u0301 au lait!"
    assert hasher.verify(hasher.hash(composed), decomposed).valid


async def test_unknown_users_cost_a_real_verification_and_always_fail() -> None:
    hasher = _fast()
    assert not hasher.verify_unknown_user("anything at all").valid
    assert not (await hasher.averify(None, "anything at all")).valid
    stored = await hasher.ahash("an async hashed pw")
    assert (await hasher.averify(stored, "an async hashed pw")).valid
    # the dummy hash uses the same parameters as real hashes, hence the same work
    assert hasher._dummy is not None
    assert hasher._dummy.split("$")[3] == stored.split("$")[3]


async def test_login_publishes_events_without_revealing_unknown_users() -> None:
    hasher = _fast()
    stored = hasher.hash("the real passphrase")
    seen: list[SecurityEvent] = []
    bus = SecurityEvents()
    bus.subscribe(seen.append)
    assert (await hasher.login("ann", stored, "the real passphrase", events=bus)).valid
    assert not (await hasher.login("ann", stored, "a wrong passphrase", events=bus)).valid
    assert not (await hasher.login("ghost", None, "a wrong passphrase", events=bus)).valid
    assert [(e.type, e.outcome) for e in seen] == [
        ("auth.login.succeeded", "success"),
        ("auth.login.failed", "failure"),
        ("auth.login.failed", "failure"),
    ]
    assert seen[1].details == seen[2].details
    assert all("passphrase" not in repr(e) for e in seen)
