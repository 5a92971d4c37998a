"""Password hashing (argon2id) and password policy.

* argon2id with parameters at or above the OWASP floor (m=19456 KiB with t=2, or an
  equivalent pair); construction refuses weaker ones. PHC-format hashes.
* Verification reports when a hash should be replaced (parameters changed, other argon2
  variant, or a legacy scheme such as passlib's ``$pbkdf2-sha256$``) and returns the new hash.
* Passwords are NFKC-normalised and never truncated; 8 to 128 characters by default.
* Very common passwords are refused using a bundled list (see ``_data/``).
* :meth:`PasswordHasher.verify_unknown_user` spends the same work as a real check, so a
  login for an unknown user takes as long as one for a known user.

argon2 is imported lazily: importing saasfw.security stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from saasfw.security._errors import ConfigurationError, WeakPasswordError
from saasfw.security._events import SecurityEvent, SecurityEvents, SecurityEventType

__all__ = [
    "OWASP_MINIMUM",
    "PasswordCheck",
    "PasswordHasher",
    "PasswordPolicy",
    "pbkdf2_sha256_verifier",
]

# OWASP Password Storage Cheat Sheet: equivalent argon2id (memory KiB, iterations) floors.
OWASP_MINIMUM: Mapping[int, int] = {1: 47104, 2: 19456, 3: 12288, 4: 9216, 5: 7168}
LegacyVerifier = Callable[[str, str], bool]


@functools.cache
def _common_passwords() -> frozenset[str]:
    data = resources.files("saasfw.security").joinpath("_data/common-passwords.txt.gz")
    text = gzip.decompress(data.read_bytes()).decode("utf-8")
    return frozenset(
        line.strip().casefold() for line in text.splitlines() if line and not line.startswith("#")
    )


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Rules for new passwords (NIST SP 800-63B style: length and blocklist, no composition).

    Attributes:
        min_length: at least 8.
        max_length: at least 64; longer input is refused, never truncated.
        refuse_common: refuse passwords on the bundled common-password list.
    """

    min_length: int = 8
    max_length: int = 128
    refuse_common: bool = True

    def __post_init__(self) -> None:
        if self.min_length < 8 or self.max_length < 64 or self.max_length < self.min_length:
            raise ConfigurationError("password length limits must be min >= 8 and max >= 64")

    def check(self, password: str, *, context: Iterable[str] = ()) -> None:
        """Raise :class:`WeakPasswordError` saying which rule failed (never echoing it)."""
        normalised = _normalise(password)
        if len(normalised) < self.min_length:
            raise WeakPasswordError(
                f"the password must have at least {self.min_length} characters",
                code="password.too_short",
            )
        if len(normalised) > self.max_length:
            raise WeakPasswordError(
                f"the password must have at most {self.max_length} characters",
                code="password.too_long",
            )
        folded = normalised.casefold()
        if self.refuse_common and folded in _common_passwords():
            raise WeakPasswordError(
                "the password is too common; choose one that is not on breach lists",
                code="password.common",
            )
        for word in context:
            if len(word) >= 4 and word.casefold() in folded:
                raise WeakPasswordError(
                    "the password must not contain your user name or e-mail address",
                    code="password.contextual",
                )


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """Outcome of :meth:`PasswordHasher.verify`.

    Attributes:
        valid: the password matches.
        new_hash: when valid and the stored hash is outdated, its replacement: store it.
    """

    valid: bool
    new_hash: str | None = field(default=None, repr=False)


def _ab64decode(text: str) -> bytes:
    return base64.b64decode(text.replace(".", "+") + "=" * (-len(text) % 4))


def pbkdf2_sha256_verifier(stored: str, password: str) -> bool:
    """Verify passlib's ``$pbkdf2-sha256$<rounds>$<salt>$<checksum>`` hashes (legacy)."""
    try:
        _, scheme, rounds, salt, checksum = stored.split("$")
        if scheme != "pbkdf2-sha256" or not 1000 <= int(rounds) <= 10_000_000:
            return False
        expected = _ab64decode(checksum)
        actual = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), _ab64decode(salt), int(rounds), len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


class PasswordHasher:
    """argon2id hashing with rehash-on-login and constant-work unknown-user checks.

    Args:
        memory_cost: KiB; default 65536 (RFC 9106 low-memory profile).
        time_cost: iterations; default 3.
        parallelism: lanes; default 1.
        policy: rules applied by :meth:`hash` (new passwords).
        legacy: verifiers for older schemes by PHC id, e.g.
            ``{"pbkdf2-sha256": pbkdf2_sha256_verifier}`` (the default).
        insecure_test_parameters: allow parameters below the OWASP floor. For tests only,
            to keep suites fast; never set it in a service.
    """

    def __init__(
        self,
        *,
        memory_cost: int = 65536,
        time_cost: int = 3,
        parallelism: int = 1,
        hash_len: int = 32,
        salt_len: int = 16,
        policy: PasswordPolicy | None = None,
        legacy: Mapping[str, LegacyVerifier] | None = None,
        insecure_test_parameters: bool = False,
    ) -> None:
        floor = OWASP_MINIMUM[min(max(time_cost, 1), 5)]
        if not insecure_test_parameters and (
            time_cost < 1
            or memory_cost < floor
            or parallelism < 1
            or hash_len < 16
            or salt_len < 16
        ):
            raise ConfigurationError(
                f"argon2id parameters are below the OWASP floor: with t={time_cost} use at "
                f"least m={floor} KiB (p >= 1, 16-byte salt and hash)"
            )
        try:
            import argon2
        except ImportError:  # pragma: no cover - argon2-cffi is a hard dependency
            raise ConfigurationError("argon2-cffi is not installed") from None
        self._argon2 = argon2
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=argon2.Type.ID,
        )
        self.policy = policy or PasswordPolicy()
        self.legacy = (
            dict(legacy) if legacy is not None else {"pbkdf2-sha256": pbkdf2_sha256_verifier}
        )
        self._dummy: str | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        """The argon2id parameters in force."""
        h = self._hasher
        return {
            "memory_cost": h.memory_cost,
            "time_cost": h.time_cost,
            "parallelism": h.parallelism,
        }

    def hash(self, password: str, *, context: Iterable[str] = ()) -> str:
        """Check the policy and return a PHC-format argon2id hash.

        Raises:
            WeakPasswordError: the password breaks the policy.
        """
        self.policy.check(password, context=context)
        return self._hasher.hash(_normalise(password))

    def verify(self, stored_hash: str, password: str) -> PasswordCheck:
        """Check ``password`` against ``stored_hash``; never raises for a mismatch.

        Over-long input is refused without hashing (no denial of service by huge input).
        """
        normalised = _normalise(password)
        if len(normalised) > max(self.policy.max_length, 1024):
            return PasswordCheck(False)
        if stored_hash.startswith("$argon2"):
            try:
                self._hasher.verify(stored_hash, normalised)
            except self._argon2.exceptions.VerificationError:
                return PasswordCheck(False)
            except self._argon2.exceptions.InvalidHashError:
                return PasswordCheck(False)
            outdated = not stored_hash.startswith("$argon2id$") or self._hasher.check_needs_rehash(
                stored_hash
            )
        else:
            scheme = stored_hash.split("$")[1] if stored_hash.startswith("$") else ""
            verifier = self.legacy.get(scheme)
            if verifier is None or not verifier(stored_hash, normalised):
                return PasswordCheck(False)
            outdated = True
        return PasswordCheck(True, self._hasher.hash(normalised) if outdated else None)

    def verify_unknown_user(self, password: str) -> PasswordCheck:
        """Spend one real verification's work for a user that does not exist; always invalid."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        self.verify(self._dummy, password)
        return PasswordCheck(False)

    async def ahash(self, password: str, *, context: Iterable[str] = ()) -> str:
        """:meth:`hash` in a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.hash, password, context=tuple(context))

    async def login(
        self,
        subject: str,
        stored_hash: str | None,
        password: str,
        *,
        events: SecurityEvents | None = None,
        address: str | None = None,
    ) -> PasswordCheck:
        """Check a login attempt and publish ``auth.login.succeeded``/``failed``.

        Pass ``stored_hash=None`` for an unknown user: the same work is spent and the
        event looks the same, so neither timing nor events reveal whether ``subject`` exists.
        When the result carries ``new_hash``, store it (rehash on login).
        """
        check = await self.averify(stored_hash, password)
        if events is not None:
            events.publish(
                SecurityEvent(
                    type=(
                        SecurityEventType.LOGIN_SUCCEEDED
                        if check.valid
                        else SecurityEventType.LOGIN_FAILED
                    ),
                    outcome="success" if check.valid else "failure",
                    principal_id=subject,
                    address=address,
                    details={} if check.valid else {"reason": "invalid_credentials"},
                )
            )
        return check

    async def averify(self, stored_hash: str | None, password: str) -> PasswordCheck:
        """:meth:`verify` in a worker thread; ``None`` (unknown user) runs the dummy check."""
        if stored_hash is None:
            return await asyncio.to_thread(self.verify_unknown_user, password)
        return await asyncio.to_thread(self.verify, stored_hash, password)
