"""Acceptance 1: known JWT attack classes replayed over HTTP against ``require(...)``.

Every forged token must get 401 with ``WWW-Authenticate`` (never 500) and the handler
must never run. Tokens are forged by hand, byte by byte, not through pyjwt's encoder, so
the suite can express what a well-behaved encoder would refuse to produce.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from saasfw.security import (
    Authenticator,
    InvalidTokenError,
    JwtVerifier,
    MemoryRevocationStore,
    Principal,
    StaticKeySet,
    install_security,
    require,
)

ISSUER = "https://issuer.example"
AUDIENCE = "orders-api"

_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PUBLIC = _PRIVATE.public_key()
_ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(obj: object) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "jti": "j-1",
        "scope": "orders:read",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP = object()


def _header(**overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": "k1"}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not _DROP}


def _rs256(signing_input: bytes, key: rsa.RSAPrivateKey = _PRIVATE) -> bytes:
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def forge(
    header: dict[str, Any],
    claims: dict[str, Any],
    sign: Callable[[bytes], bytes] | None = _rs256,
) -> str:
    signing_input = f"{_json(header)}.{_json(claims)}"
    signature = b"" if sign is None else sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def _hmac_signer(secret: bytes, alg: str = "HS256") -> Callable[[bytes], bytes]:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return lambda data: hmac.new(secret, data, digest).digest()


def _certificate_pem() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_PUBLIC)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(_PRIVATE, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_key_encodings() -> dict[str, bytes]:
    spki = _PUBLIC.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "pem-spki": spki,
        "pem-spki-stripped": spki.strip(),
        "pem-pkcs1": _PUBLIC.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "der-spki": _PUBLIC.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "certificate": _certificate_pem(),
        "openssh": _PUBLIC.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "jwk-json": json.dumps(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_PUBLIC))).encode(),
        "jwk-json-compact": jwt.algorithms.RSAAlgorithm.to_jwk(_PUBLIC).encode(),
    }


def _attacker_jwk() -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_ATTACKER.public_key()))
    jwk["kid"] = "k1"
    return jwk


def _attacker_cert_b64() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_ATTACKER.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(_ATTACKER, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _attacks() -> list[Any]:
    now = int(time.time())
    cases: list[Any] = []

    def case(name: str, token: str) -> None:
        cases.append(pytest.param(token, id=name))

    good_input = f"{_json(_header())}.{_json(_claims())}"
    # alg none, every casing, with and without a signature
    for alg in ("none", "None", "NONE", "nOnE", "NoNe"):
        case(f"alg-{alg}-empty-sig", forge(_header(alg=alg), _claims(), None))
        case(f"alg-{alg}-junk-sig", forge(_header(alg=alg), _claims(), lambda _: b"x"))
        case(f"alg-{alg}-no-kid", forge(_header(alg=alg, kid=_DROP), _claims(), None))
    case("alg-missing", forge(_header(alg=_DROP), _claims()))
    case("alg-not-string", forge(_header(alg=["RS256"]), _claims()))
    case("alg-not-allowed-rs512", forge(_header(alg="RS512"), _claims()))
    case("alg-ps256-not-allowed", forge(_header(alg="PS256"), _claims()))
    # HMAC signed with the verifier's public key, in every encoding
    for encoding, material in _public_key_encodings().items():
        for alg in ("HS256", "HS384", "HS512"):
            case(
                f"hmac-{alg}-with-{encoding}",
                forge(_header(alg=alg), _claims(), _hmac_signer(material, alg)),
            )
    # exp / nbf / iat
    case("exp-missing", forge(_header(), _claims(exp=_DROP)))
    case("exp-expired", forge(_header(), _claims(exp=now - 3600)))
    case("exp-expired-beyond-leeway", forge(_header(), _claims(exp=now - 31)))
    case("exp-string", forge(_header(), _claims(exp=str(now + 600))))
    case("exp-bool", forge(_header(), _claims(exp=True)))
    case("exp-null", forge(_header(), _claims(exp=None)))
    case("exp-nan-like", forge(_header(), _claims(exp="NaN")))
    case("exp-huge", forge(_header(), _claims(exp=10**400)))
    case("nbf-future", forge(_header(), _claims(nbf=now + 3600)))
    case("iat-future", forge(_header(), _claims(iat=now + 3600)))
    case("nbf-string", forge(_header(), _claims(nbf="0")))
    # issuer
    for name, iss in {
        "iss-suffix": ISSUER + ".evil.example",
        "iss-prefix": ISSUER[:-1],
        "iss-trailing-slash": ISSUER + "/",
        "iss-case": ISSUER.upper(),
        "iss-substring": "issuer",
        "iss-list": [ISSUER],
        "iss-missing": _DROP,
        "iss-empty": "",
    }.items():
        case(name, forge(_header(), _claims(iss=iss)))
    # audience
    for name, aud in {
        "aud-other": "billing-api",
        "aud-list-other": ["billing-api", "x"],
        "aud-missing": _DROP,
        "aud-number": 7,
        "aud-prefix": AUDIENCE[:-1],
        "aud-empty-list": [],
        "aud-object": {"aud": AUDIENCE},
    }.items():
        case(name, forge(_header(), _claims(aud=aud)))
    # token type confusion: refresh and ID tokens used as access tokens
    case("typ-refresh", forge(_header(typ="refresh+jwt"), _claims()))
    case("typ-refresh-token-use", forge(_header(), _claims(token_use="refresh")))
    case("typ-id-token", forge(_header(typ="JWT"), _claims(nonce="n", auth_time=now)))
    case("typ-missing", forge(_header(typ=_DROP), _claims()))
    case("typ-number", forge(_header(typ=1), _claims()))
    # critical extensions
    case("crit-unknown", forge(_header(crit=["exp"]), _claims()))
    case("crit-b64", forge(_header(crit=["b64"], b64=False), _claims()))
    case("crit-empty", forge(_header(crit=[]), _claims()))
    case("crit-not-list", forge(_header(crit="urn:x"), _claims()))
    # header-supplied keys
    attacker = lambda data: _rs256(data, _ATTACKER)  # noqa: E731
    case("jwk-embedded-attacker-key", forge(_header(jwk=_attacker_jwk()), _claims(), attacker))
    case(
        "jwk-embedded-real-key",
        forge(_header(jwk=json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_PUBLIC))), _claims()),
    )
    case("jku-remote", forge(_header(jku="https://evil.example/jwks.json"), _claims(), attacker))
    case("x5u-remote", forge(_header(x5u="https://evil.example/cert.pem"), _claims(), attacker))
    case("x5c-attacker-chain", forge(_header(x5c=[_attacker_cert_b64()]), _claims(), attacker))
    case("attacker-key-plain", forge(_header(), _claims(), attacker))
    # hostile kid values
    for name, kid in {
        "kid-path-traversal": "../../../../../../dev/null",
        "kid-sql-injection": "x' UNION SELECT 'secret' --",
        "kid-command": "k1|/usr/bin/id",
        "kid-nul": "k1\x00",
        "kid-newline": "k1\n",
        "kid-url": "https://evil.example/key",
        "kid-unknown": "k2",
        "kid-empty": "",
        "kid-long": "k" * 5000,
        "kid-number": 1,
        "kid-object": {"k": "k1"},
        "kid-list": ["k1"],
    }.items():
        case(name, forge(_header(kid=kid), _claims()))
        case(
            f"{name}-hmac-empty", forge(_header(alg="HS256", kid=kid), _claims(), _hmac_signer(b""))
        )
    # oversized and malformed
    case("oversized-claims", forge(_header(), _claims(pad="A" * 9000)))
    case("oversized-header", forge(_header(pad="A" * 9000), _claims()))
    case("oversized-64k", "a" * 65536 + ".b.c")
    claims_b64 = _json(_claims())
    sig_x = _b64(b"x")
    head_b64 = _json(_header())
    good_sig = _rs256(good_input.encode())
    bad_utf8 = _b64(b'{"alg":"' + bytes([0xFF]) + b'"}')
    nested = _b64(b"[" * 3000 + b"]" * 3000)
    duplicate = _b64(b'{"alg":"none","alg":"RS256","typ":"at+jwt","kid":"k1"}')
    not_json_payload = _b64(b"nope")
    array_payload = _b64(b"[]")
    mallory = _json(_claims(sub="mallory"))
    malformed = {
        "one-segment": "abc",
        "two-segments": "abc.def",
        "four-segments": good_input + ".sig.extra",
        "dots-only": "..",
        "empty-segments": "..sig",
        "non-base64": "!!!.###.$$$",
        "padded-base64": f"{head_b64}==.{claims_b64}.{sig_x}",
        "header-not-json": f"{_b64(b'not json')}.{claims_b64}.{sig_x}",
        "header-array": f"{_b64(b'[1,2]')}.{claims_b64}.{sig_x}",
        "header-bad-utf8": f"{bad_utf8}.{claims_b64}.{sig_x}",
        "header-nested": f"{nested}.{claims_b64}.{sig_x}",
        "header-duplicate-alg": f"{duplicate}.{claims_b64}.{sig_x}",
        "payload-not-json": (
            f"{head_b64}.{not_json_payload}."
            + _b64(_rs256(f"{head_b64}.{not_json_payload}".encode()))
        ),
        "payload-array": (
            f"{head_b64}.{array_payload}." + _b64(_rs256(f"{head_b64}.{array_payload}".encode()))
        ),
        "signature-flipped": good_input + "." + _b64(bytes(b ^ 1 for b in good_sig)),
        "signature-truncated": good_input + "." + _b64(good_sig[:-1]),
        "signature-empty": good_input + ".",
        "payload-swapped": f"{head_b64}.{mallory}.{_b64(good_sig)}",
        "non-ascii": good_input + ".\u00fc",
    }
    for name, token in malformed.items():
        case(name, token)
    # sub problems
    case("sub-missing", forge(_header(), _claims(sub=_DROP)))
    case("sub-number", forge(_header(), _claims(sub=42)))
    case("roles-not-list", forge(_header(), _claims(roles={"admin": True})))
    return cases


def _app() -> tuple[FastAPI, list[str]]:
    calls: list[str] = []
    verifier = JwtVerifier(
        StaticKeySet(algorithms=["RS256"], public_keys={"k1": _PUBLIC}),
        algorithms=["RS256"],
        issuer=ISSUER,
        audiences=[AUDIENCE],
        revocation=MemoryRevocationStore(),
    )
    app = FastAPI()
    install_security(app, Authenticator(jwt=verifier))

    @app.get("/orders")
    async def orders(
        principal: Annotated[Principal, Depends(require("orders:read"))],
    ) -> dict[str, str]:
        calls.append(principal.id)
        return {"sub": principal.id}

    return app, calls


@pytest.fixture(scope="module")
def app_and_calls() -> tuple[FastAPI, list[str]]:
    return _app()


async def _get(app: FastAPI, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        raw = {k.encode(): v.encode("utf-8") for k, v in headers.items()}
        return await client.get("/orders", headers=raw)


async def test_a_well_formed_token_is_accepted(app_and_calls: tuple[FastAPI, list[str]]) -> None:
    app, calls = app_and_calls
    token = forge(_header(), _claims())
    response = await _get(app, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "alice"}
    assert calls[-1] == "alice"
    calls.clear()


@pytest.mark.parametrize("token", _attacks())
async def test_attack_token_gets_401_and_handler_never_runs(
    app_and_calls: tuple[FastAPI, list[str]], token: str
) -> None:
    app, calls = app_and_calls
    response = await _get(app, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="api"')
    assert response.headers["content-type"] == "application/problem+json"
    assert token not in response.text
    assert calls == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-empty"),
        pytest.param({"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}, id="basic"),
        pytest.param({"Authorization": "Token abc"}, id="other-scheme"),
        pytest.param({"X-API-Key": "sfw_anything"}, id="api-key-not-configured"),
    ],
)
async def test_missing_or_foreign_credentials_get_401(
    app_and_calls: tuple[FastAPI, list[str]], headers: dict[str, str]
) -> None:
    app, calls = app_and_calls
    response = await _get(app, headers)
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert calls == []


async def test_token_in_query_string_is_refused(app_and_calls: tuple[FastAPI, list[str]]) -> None:
    app, calls = app_and_calls
    token = forge(_header(), _claims())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(
            "/orders", params={"access_token": token}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    assert response.json()["code"] == "auth.credentials_in_query"
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        smuggled = await client.get(
            "/orders", params={"q": token}, headers={"Authorization": f"Bearer {token}"}
        )
        harmless = await client.get(
            "/orders",
            params={"key": "created_at", "token": "page-2"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert smuggled.status_code == 401  # a JWT-shaped value under any name
    assert harmless.status_code == 200  # ordinary parameters named key/token still work
    assert calls == ["alice"]
    calls.clear()


_VERIFIER = JwtVerifier(
    StaticKeySet(algorithms=["RS256"], public_keys={"k1": _PUBLIC}),
    algorithms=["RS256"],
    issuer=ISSUER,
    audiences=[AUDIENCE],
    cache_size=0,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
async def test_random_strings_only_ever_raise_invalid_token(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        await _VERIFIER.verify(token)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "jwk", "b64", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=20)
        | st.lists(st.text(max_size=5), max_size=3),
    ),
    st.dictionaries(
        st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub", "jti", "roles"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=20)
        | st.lists(st.text(max_size=5), max_size=3),
    ),
)
async def test_structured_garbage_signed_with_the_real_key_never_escapes(
    header: dict[str, Any], claims: dict[str, Any]
) -> None:
    token = forge(header, claims)
    try:
        await _VERIFIER.verify(token)
    except InvalidTokenError:
        return
    # Only a fully valid combination may pass; hypothesis will rarely find one.
    assert header.get("alg") == "RS256"


@pytest.mark.parametrize("encoding", sorted(_public_key_encodings()))
def test_a_public_key_can_never_be_configured_as_an_hmac_secret(encoding: str) -> None:
    from saasfw.security import ConfigurationError

    material = _public_key_encodings()[encoding]
    with pytest.raises(ConfigurationError):
        StaticKeySet(algorithms=["HS256"], hmac_secrets={"k1": material})
    with pytest.raises(ConfigurationError):  # and one verifier never mixes key families
        JwtVerifier(
            StaticKeySet(algorithms=["RS256"], public_keys={"k1": _PUBLIC}),
            algorithms=["RS256", "HS256"],
            issuer=ISSUER,
            audiences=[AUDIENCE],
        )
