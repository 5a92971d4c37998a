"""Acceptance 2: JWKS rotation, refetch cooldown under a flood, and outage tolerance.

A real HTTP server on 127.0.0.1 serves the JWKS; tests rotate its keys, count its hits
and shut it down for real.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from saasfw.security import ConfigurationError, InvalidTokenError, JwksKeySet, JwtVerifier
from saasfw.security.tokens import KeyUnavailableError

ISSUER = "https://issuer.example"
AUDIENCE = "orders-api"


class JwksServer:
    """A tiny JWKS endpoint whose key list the test controls."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.hits = 0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(
                    {"keys": [_public_jwk(kid, key) for kid, key in outer.keys.items()]}
                ).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.running = False


def _public_jwk(kid: str, key: Any) -> dict[str, Any]:
    data: dict[str, Any]
    if isinstance(key, rsa.RSAPrivateKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        data["alg"] = "RS256"
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        data["alg"] = "ES256"
    data["kid"] = kid
    data["use"] = "sig"
    assert "d" not in data
    return data


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    yield server
    for keys in _open:
        await keys.aclose()
    _open.clear()
    server.stop()


_open: list[JwksKeySet] = []


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key: Any, kid: str, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    payload["jti"] = secrets.token_hex(8)
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})


def _verifier(keys: JwksKeySet) -> JwtVerifier:
    _open.append(keys)
    return JwtVerifier(
        keys, algorithms=keys.algorithms, issuer=ISSUER, audiences=[AUDIENCE], cache_size=0
    )


async def test_a_token_signed_with_a_new_key_is_accepted_after_exactly_one_refetch(
    jwks: JwksServer,
) -> None:
    old, new = _rsa(), _rsa()
    jwks.keys = {"old": old}
    keys = JwksKeySet(jwks.url, algorithms=["RS256"], refetch_cooldown=0.0, allow_http=True)
    verifier = _verifier(keys)
    assert (await verifier.verify(_token(old, "old"))).principal.id == "alice"
    assert jwks.hits == 1

    jwks.keys = {"old": old, "new": new}  # the issuer rotates
    verified = await verifier.verify(_token(new, "new"))
    assert verified.key_id == "new"
    assert jwks.hits == 2  # exactly one refetch
    await verifier.verify(_token(new, "new"))
    await verifier.verify(_token(old, "old"))
    assert jwks.hits == 2  # both keys now cached

    jwks.keys = {"new": new}  # old key retired at the issuer
    await asyncio.sleep(0)
    keys.cache_ttl = 0.01
    await asyncio.sleep(0.02)
    await verifier.verify(_token(new, "new"))  # stale cache refreshed once
    assert jwks.hits == 3
    with pytest.raises(KeyUnavailableError):
        await verifier.verify(_token(old, "old"))


async def test_a_flood_of_unknown_kids_causes_at_most_one_fetch_per_cooldown(
    jwks: JwksServer,
) -> None:
    known = _rsa()
    jwks.keys = {"known": known}
    cooldown = 1.0
    keys = JwksKeySet(jwks.url, algorithms=["RS256"], refetch_cooldown=cooldown, allow_http=True)
    verifier = _verifier(keys)
    await verifier.verify(_token(known, "known"))
    assert jwks.hits == 1

    attacker = _rsa()
    flood = [_token(attacker, f"kid-{i}-{secrets.token_hex(4)}") for i in range(300)]

    async def attempt(token: str) -> bool:
        try:
            await verifier.verify(token)
        except InvalidTokenError:
            return False
        return True

    started = time.monotonic()
    results = await asyncio.gather(*(attempt(t) for t in flood))
    assert not any(results)
    elapsed = time.monotonic() - started
    # The first fetch happened at start-up, less than one cooldown ago: at most one more
    # per cooldown window that the flood spanned.
    assert jwks.hits - 1 <= 1 + int(elapsed / cooldown)

    await asyncio.sleep(cooldown + 0.1)
    before = jwks.hits
    results = await asyncio.gather(*(attempt(t) for t in flood))
    assert not any(results)
    assert jwks.hits - before == 1  # cooldown elapsed: one shared refetch for the whole flood
    assert (await verifier.verify(_token(known, "known"))).principal.id == "alice"


async def test_with_the_jwks_server_down_cached_keys_still_verify(jwks: JwksServer) -> None:
    key = _rsa()
    jwks.keys = {"k": key}
    keys = JwksKeySet(
        jwks.url,
        algorithms=["RS256"],
        cache_ttl=0.05,
        refetch_cooldown=0.0,
        allow_http=True,
        timeout=1.0,
    )
    verifier = _verifier(keys)
    await verifier.verify(_token(key, "k"))
    jwks.stop()
    await asyncio.sleep(0.1)  # the cache is now stale: each verification tries to refetch

    for _ in range(3):
        verified = await verifier.verify(_token(key, "k"))  # fresh tokens, not cache hits
        assert verified.principal.id == "alice"
    assert keys.fetch_failures >= 1
    with pytest.raises(KeyUnavailableError):
        await verifier.verify(_token(_rsa(), "unknown"))


async def test_the_jwks_answering_errors_keeps_the_cached_keys(jwks: JwksServer) -> None:
    key = _rsa()
    jwks.keys = {"k": key}
    keys = JwksKeySet(
        jwks.url, algorithms=["RS256"], cache_ttl=0.05, refetch_cooldown=0.0, allow_http=True
    )
    verifier = _verifier(keys)
    await verifier.verify(_token(key, "k"))
    jwks.status = 500
    await asyncio.sleep(0.1)
    await verifier.verify(_token(key, "k"))
    jwks.status = 200
    jwks.keys = {}  # an empty key set is garbage, not a reason to forget trusted keys
    await asyncio.sleep(0.1)
    await verifier.verify(_token(key, "k"))
    assert keys.fetch_failures == 2


async def test_nothing_cached_and_jwks_unreachable_fails_closed(jwks: JwksServer) -> None:
    url = jwks.url
    jwks.stop()
    keys = JwksKeySet(url, algorithms=["RS256"], allow_http=True, timeout=1.0)
    with pytest.raises(KeyUnavailableError):
        await _verifier(keys).verify(_token(_rsa(), "k"))


async def test_jwks_keys_are_bound_to_their_algorithm(jwks: JwksServer) -> None:
    rsa_key, ec_key = _rsa(), ec.generate_private_key(ec.SECP256R1())
    jwks.keys = {"r": rsa_key, "e": ec_key}
    keys = JwksKeySet(jwks.url, algorithms=["RS256", "ES256"], allow_http=True)
    verifier = _verifier(keys)
    await verifier.verify(_token(ec_key, "e", alg="ES256"))
    await verifier.verify(_token(rsa_key, "r"))
    with pytest.raises(KeyUnavailableError):  # the RSA kid cannot verify an ES256 token
        await verifier.verify(_token(ec_key, "r", alg="ES256"))


def test_jwks_configuration_fails_closed() -> None:
    with pytest.raises(ConfigurationError, match="https"):
        JwksKeySet("http://idp.example/jwks", algorithms=["RS256"])
    with pytest.raises(ConfigurationError, match="asymmetric"):
        JwksKeySet("https://idp.example/jwks", algorithms=["HS256"])
    with pytest.raises(ConfigurationError, match="none"):
        JwksKeySet("https://idp.example/jwks", algorithms=["RS256", "none"])
