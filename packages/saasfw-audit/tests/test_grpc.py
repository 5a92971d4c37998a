"""The gRPC interceptor on a real grpc.aio server over TLS with a generated certificate."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from saasfw.audit import Actor, AuditLogger, FileSink
from saasfw.audit.grpc import AuditServerInterceptor

_principal: ContextVar[Actor | None] = ContextVar("grpc_principal", default=None)


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def _create(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    # Stand-in for the security package's gRPC authentication: a verified token only.
    metadata = dict(context.invocation_metadata() or ())
    if metadata.get("authorization") != "Bearer token-alice":
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid token")
    _principal.set(Actor("alice", tenant="acme"))
    return b"created:" + request


async def _list(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    for i in range(3):
        yield b"item%d" % i


@pytest.fixture
async def server_and_channel(
    tmp_path: Path,
) -> AsyncIterator[tuple[AuditLogger, grpc.aio.Channel, Path]]:
    log = tmp_path / "audit.jsonl"
    logger = AuditLogger(
        [FileSink(log)], producer_id="grpc", actor_provider=_principal.get, batch_interval=0.005
    )
    cert, key = _self_signed()
    async with logger:
        handlers = grpc.method_handlers_generic_handler(
            "shop.Orders",
            {
                "Create": grpc.unary_unary_rpc_method_handler(_create),
                "List": grpc.unary_stream_rpc_method_handler(_list),
            },
        )
        server = grpc.aio.server(interceptors=[AuditServerInterceptor(logger)])
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_secure_port("localhost:0", grpc.ssl_server_credentials([(key, cert)]))
        await server.start()
        channel = grpc.aio.secure_channel(
            f"localhost:{port}", grpc.ssl_channel_credentials(root_certificates=cert)
        )
        try:
            yield logger, channel, log
        finally:
            await channel.close(None)
            await server.stop(None)


async def test_grpc_calls_are_audited_with_the_verified_actor(
    server_and_channel: tuple[AuditLogger, grpc.aio.Channel, Path],
) -> None:
    logger, channel, log = server_and_channel
    create = channel.unary_unary("/shop.Orders/Create", None, None)
    listing = channel.unary_stream("/shop.Orders/List", None, None)
    forged = (("x-user-id", "root"), ("x-tenant-id", "evil"))
    assert await create(b"o1", metadata=(*forged, ("authorization", "Bearer token-alice"))) == (
        b"created:o1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(b"o2", metadata=forged)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [m async for m in listing(b"")] == [b"item0", b"item1", b"item2"]
    assert logger.flush()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    summary = [(r["action"], r["outcome"], r["details"]["code"], r["actor"]["id"]) for r in records]
    assert summary == [
        ("Create", "success", "OK", "alice"),
        ("Create", "denied", "UNAUTHENTICATED", "anonymous"),
        ("List", "success", "OK", "anonymous"),
    ]
    assert records[0]["resource"] == {"type": "grpc_method", "id": "/shop.Orders/Create"}
    assert "root" not in log.read_text()
