"""grpc.aio servers that serve TLS or refuse to start: never a silent insecure fallback.

Certificates are loaded and checked before the server exists (files readable, PEM valid,
private key matching the certificate, a client CA when client certificates are required), so
a misconfigured deployment fails at start-up with a message naming the setting, not at the
first handshake and not by quietly opening a plaintext port.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from pydantic import BaseModel, ConfigDict, Field

from saasfw.security._errors import ConfigurationError

__all__ = [
    "GrpcServerSettings",
    "build_grpc_server",
    "grpc_production_problems",
    "load_server_credentials",
]


class GrpcServerSettings(BaseModel):
    """The ``grpc`` section of the security settings.

    Attributes:
        address: ``host:port`` to bind (port 0 picks a free port).
        tls: serve TLS; when set, the certificate and key files are required.
        certificate_chain_file: PEM server certificate followed by its intermediates.
        private_key_file: PEM private key of the server certificate.
        client_ca_file: PEM bundle of CAs whose client certificates are accepted.
        require_client_certificate: refuse handshakes without a client certificate
            signed by ``client_ca_file`` (mutual TLS).
        allow_insecure: with ``tls`` off, explicitly allow a plaintext port (development
            only; the production rule refuses it).
        max_receive_message_bytes: largest request message accepted.
        max_concurrent_rpcs: RPCs served at once before new ones are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = "[::]:50051"
    tls: bool = True
    certificate_chain_file: Path | None = None
    private_key_file: Path | None = None
    client_ca_file: Path | None = None
    require_client_certificate: bool = True
    allow_insecure: bool = False
    max_receive_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_concurrent_rpcs: int | None = Field(default=None, ge=1)


def _read(path: Path | None, setting: str) -> bytes:
    if path is None:
        raise ConfigurationError(
            f"gRPC TLS is on but {setting} is not set; refusing to start without it"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"gRPC {setting} {str(path)!r} cannot be read ({exc.strerror or exc})"
        ) from None
    if not data.strip():
        raise ConfigurationError(f"gRPC {setting} {str(path)!r} is empty")
    return data


def load_server_credentials(settings: GrpcServerSettings) -> grpc.ServerCredentials:
    """Load and check the server's TLS material.

    Raises:
        ConfigurationError: TLS is off, a file is missing/unreadable/invalid, the key does
            not belong to the certificate, or client certificates are required without a CA.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not settings.tls:
        raise ConfigurationError("gRPC TLS is off; there are no server credentials to load")
    chain_pem = _read(settings.certificate_chain_file, "certificate_chain_file")
    key_pem = _read(settings.private_key_file, "private_key_file")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise ConfigurationError("gRPC certificate_chain_file holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            "gRPC private_key_file is not an unencrypted PEM private key"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != chain[0].public_key().public_bytes(
        encoding, public
    ):
        raise ConfigurationError(
            "gRPC private_key_file does not belong to the first certificate of"
            " certificate_chain_file"
        )
    client_ca: bytes | None = None
    if settings.require_client_certificate or settings.client_ca_file is not None:
        client_ca = _read(settings.client_ca_file, "client_ca_file")
        try:
            x509.load_pem_x509_certificates(client_ca)
        except ValueError:
            raise ConfigurationError("gRPC client_ca_file holds no PEM certificate") from None
    return grpc.ssl_server_credentials(
        [(key_pem, chain_pem)],
        root_certificates=client_ca,
        require_client_auth=settings.require_client_certificate,
    )


def build_grpc_server(
    settings: GrpcServerSettings,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
    options: Sequence[tuple[str, Any]] = (),
) -> tuple[grpc.aio.Server, int]:
    """Create a grpc.aio server bound to ``settings.address`` with TLS (or refuse).

    Returns the server (add servicers, then ``await server.start()``) and the bound port.

    Raises:
        ConfigurationError: TLS material is missing or invalid, plaintext was not
            explicitly allowed, or the address cannot be bound.
    """
    credentials = load_server_credentials(settings) if settings.tls else None
    if credentials is None and not settings.allow_insecure:
        raise ConfigurationError(
            "gRPC TLS is off and allow_insecure is not set: refusing to serve plaintext"
        )
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[("grpc.max_receive_message_length", settings.max_receive_message_bytes), *options],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    try:
        if credentials is not None:
            port = server.add_secure_port(settings.address, credentials)
        else:
            port = server.add_insecure_port(settings.address)
    except RuntimeError as exc:
        raise ConfigurationError(f"gRPC cannot bind {settings.address!r}: {exc}") from None
    if port == 0:
        raise ConfigurationError(f"gRPC cannot bind {settings.address!r}")
    return server, port


def grpc_production_problems(settings: GrpcServerSettings) -> list[str]:
    """Production rule: no plaintext gRPC. Returns what is wrong (empty when fine)."""
    if not settings.tls:
        return ["gRPC serves plaintext (tls is off); set the certificate files and tls=true"]
    return []
