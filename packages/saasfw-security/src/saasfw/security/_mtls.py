"""mTLS principals: client certificates verified against a CA bundle, mapped by a table.

The certificate is path-validated with cryptography's X.509 verifier (signature chain,
validity period) and must carry the clientAuth extended key usage. A principal is found
only through an explicit mapping from a SAN (``uri:``, ``dns:``, ``email:``) or the subject
DN (``subject:CN=...,O=...``): an unmapped certificate authenticates nobody.

Certificates reach the server in two ways. Directly (the gRPC peer, or the ASGI ``tls``
extension) or, behind a TLS-terminating proxy, in a forwarded header. The header is read
only when the direct peer address is inside a configured trusted-proxy network; from
anyone else it is ignored, because anyone can send it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from saasfw.security._errors import AuthenticationError, ConfigurationError
from saasfw.security._principal import Principal, PrincipalKind

if TYPE_CHECKING:  # cryptography is imported lazily: importing saasfw.security stays cheap
    from cryptography import x509

__all__ = [
    "ClientCertificateVerifier",
    "ForwardedCertificateSource",
    "MtlsAuthenticator",
    "MtlsIdentity",
]

_MAX_HEADER_BYTES = 16 * 1024
_log = logging.getLogger("saasfw.security.mtls")


@dataclass(frozen=True, slots=True)
class MtlsIdentity:
    """What a mapped certificate becomes."""

    principal_id: str
    kind: PrincipalKind = "service"
    tenant: str | None = None
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()


def _load_certificates(data: bytes) -> list[x509.Certificate]:
    from cryptography import x509

    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


class ClientCertificateVerifier:
    """Verifies client certificates and maps them to principals.

    Args:
        ca_bundle: PEM bundle (bytes or path) of the CAs allowed to issue client certs.
        mapping: identity keys (``uri:spiffe://...``, ``dns:orders.internal``,
            ``email:ops@example.com``, ``subject:CN=orders,O=Acme``) to identities.
        max_chain_depth: intermediate CAs allowed between leaf and root.
        cache_ttl: successful verifications are remembered (by certificate fingerprint)
            this long, never past the certificate's expiry; 0 disables. Revocation lists
            (CRL/OCSP) are not consulted: keep client certificates short-lived.
        cache_size: bound on remembered verifications.
    """

    def __init__(
        self,
        ca_bundle: bytes | str | Path,
        mapping: Mapping[str, MtlsIdentity],
        *,
        max_chain_depth: int = 4,
        cache_ttl: float = 300.0,
        cache_size: int = 4096,
    ) -> None:
        from cryptography import x509
        from cryptography.x509.verification import (
            Criticality,
            ExtensionPolicy,
            PolicyBuilder,
            Store,
        )

        if isinstance(ca_bundle, Path):
            raw = ca_bundle.read_bytes()
        elif isinstance(ca_bundle, str):
            raw = ca_bundle.encode() if "-----BEGIN" in ca_bundle else Path(ca_bundle).read_bytes()
        else:
            raw = ca_bundle
        try:
            roots = x509.load_pem_x509_certificates(raw)
        except ValueError:
            raise ConfigurationError("the mTLS CA bundle holds no PEM certificate") from None
        if not mapping:
            raise ConfigurationError("the mTLS principal mapping is empty: nobody could log in")
        for key in mapping:
            if key.split(":", 1)[0] not in {"uri", "dns", "email", "subject"}:
                raise ConfigurationError(
                    f"mTLS mapping key {key!r} must start with uri:, dns:, email: or subject:"
                )
        self._store = Store(roots)
        # Web PKI rules, except that client certificates identified by subject DN alone
        # (no SAN) are common in private PKIs; clientAuth usage is checked separately.
        ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
        )
        self._builder = (
            PolicyBuilder()
            .store(self._store)
            .max_chain_depth(max_chain_depth)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        )
        self._mapping = dict(mapping)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    def verify(
        self,
        certificate: x509.Certificate | bytes,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        now: datetime.datetime | None = None,
    ) -> Principal:
        """Validate the certificate and return the mapped principal.

        Raises:
            AuthenticationError: unknown CA, outside its validity period, no clientAuth
                usage, malformed, or not in the mapping.
        """
        try:
            if isinstance(certificate, bytes):
                chain = _load_certificates(certificate)
                certificate, intermediates = chain[0], [*chain[1:], *intermediates]
        except ValueError:
            raise AuthenticationError(
                "the client certificate is malformed", code="mtls.malformed"
            ) from None
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID
        from cryptography.x509.verification import VerificationError

        when = now or datetime.datetime.now(datetime.UTC)
        cache_key = None
        if now is None and self.cache_ttl > 0:
            from cryptography.hazmat.primitives import hashes

            digest = hashes.Hash(hashes.SHA256())
            for cert in (certificate, *intermediates):
                digest.update(cert.fingerprint(hashes.SHA256()))
            cache_key = digest.finalize()
            hit = self._cache.get(cache_key)
            if hit is not None and hit[0] > time.time():
                return hit[1]
        verifier = self._builder.time(when).build_client_verifier()
        try:
            verifier.verify(certificate, list(intermediates))
        except (VerificationError, ValueError) as exc:
            _log.info("client certificate refused: %s", exc)
            raise AuthenticationError(
                "the client certificate is not trusted (issuer, validity period or usage)",
                code="mtls.untrusted",
            ) from None
        try:
            usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = None
        if usages is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise AuthenticationError(
                "the client certificate is not valid for client authentication",
                code="mtls.usage",
            )
        identity = self._identity(certificate)
        if identity is None:
            raise AuthenticationError(
                "the client certificate is not mapped to a principal", code="mtls.unmapped"
            )
        principal = Principal(
            id=identity.principal_id,
            kind=identity.kind,
            auth_method="mtls",
            tenant=identity.tenant,
            roles=identity.roles,
            permissions=identity.permissions,
            claims=(("serial", f"{certificate.serial_number:x}"),),
        )
        if cache_key is not None:
            # Cache successes only, never past the certificate's own validity.
            until = min(
                time.time() + self.cache_ttl,
                min(c.not_valid_after_utc for c in (certificate, *intermediates)).timestamp(),
            )
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[cache_key] = (until, principal)
        return principal

    def _identity(self, certificate: x509.Certificate) -> MtlsIdentity | None:
        from cryptography import x509

        keys: list[str] = []
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            keys += [f"uri:{v}" for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
            keys += [f"dns:{v.lower()}" for v in san.get_values_for_type(x509.DNSName)]
            keys += [f"email:{v.lower()}" for v in san.get_values_for_type(x509.RFC822Name)]
        except x509.ExtensionNotFound:
            pass
        keys.append(f"subject:{certificate.subject.rfc4514_string()}")
        for key in keys:
            identity = self._mapping.get(key)
            if identity is not None:
                return identity
        return None


class ForwardedCertificateSource:
    """Reads a client certificate forwarded by a trusted TLS-terminating proxy.

    Supports URL-encoded PEM (nginx ``$ssl_client_escaped_cert``) and Envoy's
    ``X-Forwarded-Client-Cert`` ``Cert="..."`` element.

    Args:
        trusted_proxies: networks of the proxies (e.g. ``["10.0.0.0/8"]``); the header is
            ignored from every other peer. An empty list means the header is never read.
        header: header name (case-insensitive).
    """

    def __init__(
        self, trusted_proxies: Iterable[str], *, header: str = "x-forwarded-client-cert"
    ) -> None:
        try:
            self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        except ValueError as exc:
            raise ConfigurationError(f"invalid trusted proxy network: {exc}") from None
        self.header = header.lower().encode("latin-1")

    def is_trusted(self, address: str | None) -> bool:
        """True when ``address`` (the direct TCP peer) is a trusted proxy."""
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def from_scope(self, scope: Mapping[str, Any]) -> bytes | None:
        """The forwarded PEM, or None when absent or the peer is not trusted."""
        client = scope.get("client")
        if not self.is_trusted(client[0] if client else None):
            return None
        values = [v for k, v in scope.get("headers", ()) if k.lower() == self.header]
        if len(values) != 1 or len(values[0]) > _MAX_HEADER_BYTES:
            return None  # absent, or ambiguous (several headers): ignore
        return self.decode(values[0].decode("latin-1"))

    @staticmethod
    def decode(value: str) -> bytes | None:
        """Decode a forwarded header value to PEM bytes (None if not a certificate)."""
        value = value.strip()
        if 'Cert="' in value:  # Envoy XFCC: By=...;Hash=...;Cert="<url-encoded PEM>"
            start = value.index('Cert="') + 6
            end = value.find('"', start)
            if end < 0:
                return None
            value = value[start:end]
        pem = unquote(value)
        if "-----BEGIN CERTIFICATE-----" not in pem:
            return None
        return pem.encode("ascii", "ignore")


class MtlsAuthenticator:
    """Finds and verifies the client certificate of an ASGI request or gRPC call."""

    def __init__(
        self,
        verifier: ClientCertificateVerifier,
        forwarded: ForwardedCertificateSource | None = None,
    ) -> None:
        self.verifier = verifier
        self.forwarded = forwarded

    def certificate_from_scope(self, scope: Mapping[str, Any]) -> bytes | None:
        """The direct TLS client chain (ASGI ``tls`` extension), else a trusted forward."""
        tls = (scope.get("extensions") or {}).get("tls") or {}
        chain = tls.get("client_cert_chain")
        if chain:
            return "".join(chain).encode("ascii", "ignore")
        if self.forwarded is not None:
            return self.forwarded.from_scope(scope)
        return None

    def authenticate_scope(self, scope: Mapping[str, Any]) -> Principal | None:
        """The principal of the request's certificate; None when there is no certificate."""
        pem = self.certificate_from_scope(scope)
        return None if pem is None else self.verifier.verify(pem)

    def authenticate_grpc(self, auth_context: Mapping[str, Sequence[bytes]]) -> Principal | None:
        """The principal of a gRPC peer, from ``context.auth_context()``."""
        certs = auth_context.get("x509_pem_cert") or []
        return self.verifier.verify(bytes(certs[0])) if certs else None
