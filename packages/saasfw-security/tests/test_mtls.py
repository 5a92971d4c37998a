"""Acceptance 5: mTLS principals from verified client certificates, forwarded headers only
from trusted proxies. Every certificate is generated here with cryptography's builder.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import Depends, FastAPI

from saasfw.security import (
    AuthenticationError,
    Authenticator,
    ConfigurationError,
    Principal,
    get_current_principal,
    install_security,
    require,
)
from saasfw.security.credentials import (
    ClientCertificateVerifier,
    ForwardedCertificateSource,
    MtlsAuthenticator,
    MtlsIdentity,
)

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


class CA:
    def __init__(self, cn: str, parent: CA | None = None) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(cn)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        signer = parent or self
        builder = x509.CertificateBuilder()
        if parent is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                critical=False,
            )
        self.cert = (
            builder.subject_name(self.name)
            .issuer_name(signer.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 365 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(signer.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        cn: str,
        *,
        uri: str | None = None,
        eku: list[x509.ObjectIdentifier] | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - DAY)
            .not_valid_after(not_after or NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if uri is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
            )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return builder.sign(self.key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


CLIENT_AUTH = [ExtendedKeyUsageOID.CLIENT_AUTH]
SPIFFE = "spiffe://acme.internal/ns/orders/sa/worker"


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    ca, other = CA("Acme Root"), CA("Evil Root")
    return {
        "ca": ca,
        "valid": ca.issue("worker", uri=SPIFFE, eku=CLIENT_AUTH),
        "by_subject": ca.issue("reporting", eku=CLIENT_AUTH),
        "other_ca": other.issue("worker", uri=SPIFFE, eku=CLIENT_AUTH),
        "expired": ca.issue(
            "worker",
            uri=SPIFFE,
            eku=CLIENT_AUTH,
            not_before=NOW - 30 * DAY,
            not_after=NOW - DAY,
        ),
        "not_yet_valid": ca.issue(
            "worker", uri=SPIFFE, eku=CLIENT_AUTH, not_before=NOW + DAY, not_after=NOW + 9 * DAY
        ),
        "server_only": ca.issue("worker", uri=SPIFFE, eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "no_eku": ca.issue("worker", uri=SPIFFE, eku=None),
        "unmapped": ca.issue("stranger", uri="spiffe://acme.internal/ns/x/sa/y", eku=CLIENT_AUTH),
    }


@pytest.fixture(scope="module")
def verifier(pki: dict[str, Any]) -> ClientCertificateVerifier:
    return ClientCertificateVerifier(
        pki["ca"].pem,
        {
            f"uri:{SPIFFE}": MtlsIdentity(
                "orders-worker", roles=frozenset({"worker"}), tenant="acme"
            ),
            "subject:CN=reporting,O=Acme": MtlsIdentity("reporting"),
        },
    )


def test_a_valid_client_certificate_maps_to_its_principal(
    pki: dict[str, Any], verifier: ClientCertificateVerifier
) -> None:
    principal = verifier.verify(_pem(pki["valid"]))
    assert principal.id == "orders-worker"
    assert principal.kind == "service"
    assert principal.auth_method == "mtls"
    assert principal.tenant == "acme"
    assert verifier.verify(pki["by_subject"]).id == "reporting"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("other_ca", "mtls.untrusted"),
        ("expired", "mtls.untrusted"),
        ("not_yet_valid", "mtls.untrusted"),
        ("server_only", "mtls.untrusted"),
        ("no_eku", "mtls.usage"),
        ("unmapped", "mtls.unmapped"),
    ],
)
def test_untrusted_expired_and_wrong_usage_certificates_are_refused(
    pki: dict[str, Any], verifier: ClientCertificateVerifier, name: str, code: str
) -> None:
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(_pem(pki[name]))
    assert info.value.code == code


def test_garbage_is_refused_not_crashed(verifier: ClientCertificateVerifier) -> None:
    for junk in (
        b"",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x03",
    ):
        with pytest.raises(AuthenticationError):
            verifier.verify(junk)


def test_configuration_fails_closed(pki: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ClientCertificateVerifier(pki["ca"].pem, {})
    with pytest.raises(ConfigurationError):
        ClientCertificateVerifier(pki["ca"].pem, {"cn:worker": MtlsIdentity("w")})
    with pytest.raises(ConfigurationError):
        ForwardedCertificateSource(["not-a-network"])


def _app(verifier: ClientCertificateVerifier) -> FastAPI:
    forwarded = ForwardedCertificateSource(["10.0.0.0/8"], header="X-Client-Cert")
    app = FastAPI()
    install_security(app, Authenticator(mtls=MtlsAuthenticator(verifier, forwarded)))

    @app.get("/whoami")
    async def whoami(p: Annotated[Principal, Depends(require())]) -> dict[str, Any]:
        current = get_current_principal()
        return {"id": p.id, "same": current == p}

    return app


async def _call(app: FastAPI, peer: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 41000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/whoami", headers=headers)


async def test_forwarded_certificate_is_used_only_from_a_trusted_proxy(
    pki: dict[str, Any], verifier: ClientCertificateVerifier
) -> None:
    app = _app(verifier)
    header = {"X-Client-Cert": quote(_pem(pki["valid"]).decode())}
    trusted = await _call(app, "10.1.2.3", header)
    assert trusted.status_code == 200
    assert trusted.json() == {"id": "orders-worker", "same": True}

    for peer in ("192.168.1.5", "127.0.0.1", "11.0.0.1"):
        untrusted = await _call(app, peer, header)
        assert untrusted.status_code == 401  # the header is ignored: no credentials at all
        assert untrusted.json()["code"] == "auth.required"


async def test_envoy_xfcc_format_and_refusals_through_a_trusted_proxy(
    pki: dict[str, Any], verifier: ClientCertificateVerifier
) -> None:
    app = _app(verifier)
    xfcc = f'By=spiffe://acme.internal/envoy;Hash=abc;Cert="{quote(_pem(pki["valid"]).decode())}"'
    assert (await _call(app, "10.9.9.9", {"X-Client-Cert": xfcc})).status_code == 200
    for name in ("other_ca", "expired", "no_eku", "server_only"):
        response = await _call(app, "10.9.9.9", {"X-Client-Cert": quote(_pem(pki[name]).decode())})
        assert response.status_code == 401, name
        assert response.json()["code"].startswith("mtls."), name


def test_grpc_auth_context_is_read(
    pki: dict[str, Any], verifier: ClientCertificateVerifier
) -> None:
    mtls = MtlsAuthenticator(verifier)
    assert mtls.authenticate_grpc({"x509_pem_cert": [_pem(pki["valid"])]}).id == "orders-worker"  # type: ignore[union-attr]
    assert mtls.authenticate_grpc({}) is None
    with pytest.raises(AuthenticationError):
        mtls.authenticate_grpc({"x509_pem_cert": [_pem(pki["other_ca"])]})


def test_a_chain_through_an_intermediate_ca(pki: dict[str, Any]) -> None:
    root: CA = pki["ca"]
    intermediate = CA("Acme Issuing CA", parent=root)
    leaf = intermediate.issue("worker", uri=SPIFFE, eku=CLIENT_AUTH)
    verifier = ClientCertificateVerifier(root.pem, {f"uri:{SPIFFE}": MtlsIdentity("orders-worker")})
    bundle = _pem(leaf) + intermediate.pem  # what a proxy forwards as the client chain
    assert verifier.verify(bundle).id == "orders-worker"
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(_pem(leaf))  # without the intermediate the path cannot be built
    assert info.value.code == "mtls.untrusted"
    rogue = CA("Rogue Issuing CA", parent=CA("Rogue Root"))
    with pytest.raises(AuthenticationError):
        verifier.verify(_pem(rogue.issue("worker", uri=SPIFFE, eku=CLIENT_AUTH)) + rogue.pem)


def test_verified_certificates_are_cached_but_never_past_their_expiry(pki: dict[str, Any]) -> None:
    ca: CA = pki["ca"]
    verifier = ClientCertificateVerifier(
        ca.pem, {f"uri:{SPIFFE}": MtlsIdentity("orders-worker")}, cache_ttl=300
    )
    pem = _pem(pki["valid"])
    assert verifier.verify(pem) == verifier.verify(pem)
    [(until, _)] = verifier._cache.values()
    assert until <= pki["valid"].not_valid_after_utc.timestamp()
    # Relative to the moment of the test, not module import: a long suite can outlive 90 s.
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    short = ca.issue("worker", uri=SPIFFE, eku=CLIENT_AUTH, not_after=soon)
    verifier.verify(_pem(short))
    assert min(u for u, _ in verifier._cache.values()) <= short.not_valid_after_utc.timestamp()
    for name in ("other_ca", "expired", "no_eku"):  # failures are never cached
        with pytest.raises(AuthenticationError):
            verifier.verify(_pem(pki[name]))
    assert len(verifier._cache) == 2
