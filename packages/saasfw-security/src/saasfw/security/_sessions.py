"""Server-side sessions: random ids, fixation-proof login, idle and absolute timeouts.

Session ids carry 256 random bits (more than the 128 required) and are stored only as a
SHA-256 digest, so a dump of the store yields no usable cookie. ``start`` always issues a
new id and deletes the previous session (no session fixation). Every session is indexed
by user, so a password change ends all of them at once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from saasfw.security._errors import ConfigurationError
from saasfw.security._events import SecurityEvent, SecurityEvents, SecurityEventType

__all__ = ["MemorySessionStore", "Session", "SessionManager", "SessionStore"]

_ID_BYTES = 32


def session_digest(session_id: str) -> str:
    """The store key of a session id (the id itself is never stored)."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """One server-side session. ``id`` is the cookie value; it never appears in ``repr``."""

    id: str = field(repr=False)
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float  # absolute limit, never extended
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialised form for stores (without the id)."""
        return json.dumps(
            {
                "user_id": self.user_id,
                "created_at": self.created_at,
                "last_seen_at": self.last_seen_at,
                "expires_at": self.expires_at,
                "tenant": self.tenant,
                "roles": list(self.roles),
                "data": dict(self.data),
            }
        )

    @classmethod
    def from_json(cls, session_id: str, text: str | bytes) -> Session:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        return cls(
            id=session_id,
            user_id=raw["user_id"],
            created_at=raw["created_at"],
            last_seen_at=raw["last_seen_at"],
            expires_at=raw["expires_at"],
            tenant=raw.get("tenant"),
            roles=tuple(raw.get("roles", ())),
            data=raw.get("data", {}),
        )


class SessionStore(Protocol):
    """Storage port for sessions, keyed by :func:`session_digest`."""

    async def save(self, digest: str, session: Session, ttl: float) -> None:
        """Store (or replace) a session for ``ttl`` seconds."""
        ...

    async def load(self, digest: str, session_id: str) -> Session | None:
        """Return the session or None."""
        ...

    async def delete(self, digest: str, user_id: str | None = None) -> None:
        """Remove one session."""
        ...

    async def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many."""
        ...


class MemorySessionStore:
    """Process-local sessions (one worker only; use Redis with several)."""

    def __init__(self, max_sessions: int = 100_000) -> None:
        self._sessions: dict[str, tuple[float, str, str]] = {}  # digest -> (until, user, json)
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.evicted = 0

    def _purge(self, now: float) -> None:
        for digest in [d for d, (until, _, _) in self._sessions.items() if until <= now]:
            self._drop(digest)

    def _drop(self, digest: str) -> None:
        entry = self._sessions.pop(digest, None)
        if entry is not None:
            owned = self._by_user.get(entry[1])
            if owned is not None:
                owned.discard(digest)
                if not owned:
                    del self._by_user[entry[1]]

    async def save(self, digest: str, session: Session, ttl: float) -> None:
        now = time.time()
        with self._lock:
            if digest not in self._sessions and len(self._sessions) >= self.max_sessions:
                self._purge(now)
                while len(self._sessions) >= self.max_sessions:
                    # Bounded: the oldest session goes first, and it is counted.
                    self._drop(next(iter(self._sessions)))
                    self.evicted += 1
            self._sessions[digest] = (now + ttl, session.user_id, session.to_json())
            self._by_user.setdefault(session.user_id, set()).add(digest)

    async def load(self, digest: str, session_id: str) -> Session | None:
        entry = self._sessions.get(digest)
        if entry is None or entry[0] <= time.time():
            return None
        return Session.from_json(session_id, entry[2])

    async def delete(self, digest: str, user_id: str | None = None) -> None:
        with self._lock:
            self._drop(digest)

    async def delete_user(self, user_id: str) -> int:
        with self._lock:
            digests = list(self._by_user.get(user_id, ()))
            for digest in digests:
                self._drop(digest)
            return len(digests)


class SessionManager:
    """Starts, loads, ends sessions and renders their cookies.

    Args:
        store: where sessions live.
        idle_timeout: seconds of inactivity after which a session ends.
        absolute_timeout: seconds after login after which a session ends regardless.
        cookie_name: ``__Host-`` prefixed by default (Secure, Path=/, no Domain enforced
            by browsers).
        same_site: ``lax`` or ``strict``; ``none`` is refused.
        secure: the Secure attribute; only disable for plain-HTTP local development.
        events: security-events port (session started, ended).
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        idle_timeout: float = 30 * 60,
        absolute_timeout: float = 12 * 3600,
        cookie_name: str = "__Host-session",
        same_site: Literal["lax", "strict"] = "lax",
        secure: bool = True,
        events: SecurityEvents | None = None,
    ) -> None:
        if not 0 < idle_timeout <= absolute_timeout:
            raise ConfigurationError("need 0 < idle_timeout <= absolute_timeout")
        if same_site not in {"lax", "strict"}:
            raise ConfigurationError("session cookies use SameSite=Lax or Strict")
        if cookie_name.startswith("__Host-") and not secure:
            raise ConfigurationError("a __Host- cookie must be Secure; rename it for plain HTTP")
        self.store = store
        self.idle_timeout = float(idle_timeout)
        self.absolute_timeout = float(absolute_timeout)
        self.cookie_name = cookie_name
        self.same_site = same_site
        self.secure = secure
        self.events = events or SecurityEvents()

    def _ttl(self, session: Session, now: float) -> float:
        return max(0.001, min(now + self.idle_timeout, session.expires_at) - now)

    async def start(
        self,
        user_id: str,
        *,
        tenant: str | None = None,
        roles: tuple[str, ...] = (),
        data: Mapping[str, Any] | None = None,
        previous_id: str | None = None,
        address: str | None = None,
    ) -> Session:
        """Start a session at login: always a new id; the previous session is deleted."""
        if previous_id:
            await self.store.delete(session_digest(previous_id))
        now = time.time()
        session = Session(
            id=secrets.token_urlsafe(_ID_BYTES),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.absolute_timeout,
            tenant=tenant,
            roles=tuple(roles),
            data=dict(data or {}),
        )
        await self.store.save(session_digest(session.id), session, self._ttl(session, now))
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.SESSION_STARTED,
                outcome="success",
                principal_id=user_id,
                tenant=tenant,
                address=address,
            )
        )
        return session

    async def load(self, session_id: str | None) -> Session | None:
        """Return the live session and slide its idle timeout; None if absent or expired.

        The sliding write happens at most every ``min(60 s, idle_timeout / 10)``, so a
        session may end up to that much before a strictly exact idle timeout (never after).
        """
        if not session_id or len(session_id) > 128:
            return None
        digest = session_digest(session_id)
        session = await self.store.load(digest, session_id)
        if session is None:
            return None
        now = time.time()
        if now >= session.expires_at or now - session.last_seen_at >= self.idle_timeout:
            await self.store.delete(digest, session.user_id)
            return None
        if now - session.last_seen_at < min(60.0, self.idle_timeout / 10):
            return session  # touched recently: spare the store a write per request
        touched = replace(session, last_seen_at=now)
        await self.store.save(digest, touched, self._ttl(touched, now))
        return touched

    async def end(self, session_id: str) -> None:
        """End one session (logout)."""
        await self.store.delete(session_digest(session_id))

    async def end_all_for_user(self, user_id: str, *, reason: str = "logout_everywhere") -> int:
        """End every session of ``user_id`` (password change, account compromise)."""
        count = await self.store.delete_user(user_id)
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.SESSION_ENDED,
                outcome="success",
                principal_id=user_id,
                details={"reason": reason, "sessions": count},
            )
        )
        return count

    async def password_changed(self, user_id: str) -> int:
        """End all of the user's sessions after a password change; start a new one after."""
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.PASSWORD_CHANGED, outcome="success", principal_id=user_id
            )
        )
        return await self.end_all_for_user(user_id, reason="password_changed")

    def cookie(self, session: Session) -> str:
        """The ``Set-Cookie`` value for a session (HttpOnly, Secure, SameSite, Path=/)."""
        max_age = int(session.expires_at - time.time())
        parts = [
            f"{self.cookie_name}={session.id}",
            "Path=/",
            f"Max-Age={max(max_age, 0)}",
            "HttpOnly",
            f"SameSite={self.same_site.capitalize()}",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def clearing_cookie(self) -> str:
        """The ``Set-Cookie`` value that removes the session cookie (logout)."""
        parts = [f"{self.cookie_name}=", "Path=/", "Max-Age=0", "HttpOnly"]
        parts.append(f"SameSite={self.same_site.capitalize()}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def session_id_from_scope(self, scope: Mapping[str, Any]) -> str | None:
        """The session cookie value of an ASGI request, if exactly one is present."""
        from http.cookies import CookieError, SimpleCookie

        found: list[str] = []
        for name, value in scope.get("headers", ()):
            if name.lower() != b"cookie":
                continue
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            if self.cookie_name in jar:
                found.append(jar[self.cookie_name].value)
        return found[0] if len(found) == 1 else None
