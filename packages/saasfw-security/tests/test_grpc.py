"""Acceptance 4: a real grpc.aio server over mutual TLS with certificates made here.

Two CAs are generated per module: the service's CA (server and client certificates) and an
unrelated one. Real protobuf messages come from stubs generated from
``_grpc_stubs/saasfw_security_echo.proto`` (committed; regeneration command in the file).
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("grpc")
pytest.importorskip("google.protobuf")

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from saasfw.security._apikeys import ApiKeyService, MemoryApiKeyStore
from saasfw.security._authenticator import Authenticator
from saasfw.security._events import SecurityEvent, SecurityEvents
from saasfw.security._jwt_issue import TokenIssuer
from saasfw.security._mtls import (
    ClientCertificateVerifier,
    MtlsAuthenticator,
    MtlsIdentity,
)
from saasfw.security._principal import get_current_principal
from saasfw.security._ratelimit import (
    RateLimiter,
    RateLimitPolicy,
    RateLimitSettings,
)
from saasfw.security._rbac import RbacPolicy, Role
from saasfw.security.grpc import (
    PUBLIC,
    GrpcSecurityInterceptor,
    GrpcServerSettings,
    build_grpc_server,
    grpc_production_problems,
)

STUBS = Path(__file__).parent / "_grpc_stubs"
SERVICE = "/saasfw.security.test.Echo"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STUBS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pb2: Any = _load("saasfw_security_echo_pb2")
pb2_grpc: Any = _load("saasfw_security_echo_pb2_grpc")


# -- certificates ----------------------------------------------------------------------


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Authority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> Authority:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, common_name: str, *, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> Issued:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@dataclass
class Pki:
    ca: Authority
    other_ca: Authority
    server: Issued
    client: Issued
    unmapped_client: Issued
    foreign_client: Issued
    directory: Path

    def write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = Authority.create("saasfw test CA")
    other = Authority.create("someone else's CA")
    server = ca.issue(
        "localhost",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )

    def client_of(authority: Authority, name: str) -> Issued:
        return authority.issue(
            name,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[x509.UniformResourceIdentifier(f"spiffe://test/{name}")],
        )

    return Pki(
        ca=ca,
        other_ca=other,
        server=server,
        client=client_of(ca, "orders"),
        unmapped_client=client_of(ca, "stranger"),
        foreign_client=client_of(other, "orders"),
        directory=tmp_path_factory.mktemp("pki"),
    )


def _server_settings(pki: Pki) -> GrpcServerSettings:
    return GrpcServerSettings(
        address="127.0.0.1:0",
        certificate_chain_file=pki.write("server.pem", pki.server.cert_pem),
        private_key_file=pki.write("server.key", pki.server.key_pem),
        client_ca_file=pki.write("ca.pem", pki.ca.pem),
    )


# -- the service -------------------------------------------------------------------------


class EchoServicer(pb2_grpc.EchoServicer):  # type: ignore[misc]
    @staticmethod
    def _who() -> str:
        principal = get_current_principal()
        return principal.id if principal else ""

    async def Say(self, request: Any, context: Any) -> Any:
        return pb2.EchoReply(text=request.text.upper(), principal=self._who())

    async def SayMany(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for index in range(request.repeat):
            yield pb2.EchoReply(text=request.text, principal=self._who(), index=index)

    async def Collect(self, requests: Any, context: Any) -> Any:
        texts = [r.text async for r in requests]
        return pb2.EchoReply(text="+".join(texts), principal=self._who(), index=len(texts))

    async def Chat(self, requests: Any, context: Any) -> None:
        # Writes through the context rather than yielding: the interceptor must keep both.
        async for request in requests:
            await context.write(pb2.EchoReply(text=request.text[::-1], principal=self._who()))

    async def Unmapped(self, request: Any, context: Any) -> Any:
        return pb2.EchoReply(text="should never run")


@dataclass
class Harness:
    address: str
    issuer: TokenIssuer
    api_keys: ApiKeyService
    events: list[SecurityEvent]
    pki: Pki
    limiter: RateLimiter

    def channel(self, client: Issued | None) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )
        return grpc.aio.secure_channel(self.address, credentials)

    async def token(self, subject: str, roles: list[str]) -> str:
        pair = await self.issuer.issue(subject, roles=roles)
        return str(pair.access_token)


@pytest.fixture
async def harness(pki: Pki) -> AsyncIterator[Harness]:
    events = SecurityEvents()
    seen: list[SecurityEvent] = []
    events.subscribe(seen.append)
    issuer = TokenIssuer(
        algorithm="ES256",
        signing_key=_pem_key(_key()),
        issuer="https://issuer.test",
        audience="echo",
        key_id="k1",
    )
    api_keys = ApiKeyService(
        MemoryApiKeyStore(), peppers={"p1": "p" * 32}, current_pepper="p1", prefix="sfw"
    )
    policy = RbacPolicy(
        [
            Role("echoer", frozenset({"echo:say", "echo:stream"})),
            Role("reader", frozenset({"echo:read"})),
        ]
    )
    authenticator = Authenticator(
        jwt=issuer.verifier, api_keys=api_keys, policy=policy, events=events
    )
    limiter = RateLimiter(RateLimitSettings())
    interceptor = GrpcSecurityInterceptor(
        authenticator,
        {
            f"{SERVICE}/Say": ["echo:say"],
            f"{SERVICE}/SayMany": ["echo:stream"],
            f"{SERVICE}/Collect": ["echo:stream"],
            f"{SERVICE}/Chat": PUBLIC,
        },
        rate_limiter=limiter,
        method_rate_limits={
            f"{SERVICE}/SayMany": RateLimitPolicy(name="stream", limits="3/minute", key="principal")
        },
    )
    server, port = build_grpc_server(_server_settings(pki), interceptors=[interceptor])
    pb2_grpc.add_EchoServicer_to_server(EchoServicer(), server)
    await server.start()
    try:
        yield Harness(f"localhost:{port}", issuer, api_keys, seen, pki, limiter)
    finally:
        await server.stop(grace=None)


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def _code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_valid_client_is_served_with_protobuf_responses(harness: Harness) -> None:
    token = await harness.token("alice", ["echoer"])
    async with harness.channel(harness.pki.client) as channel:
        stub = pb2_grpc.EchoStub(channel)
        reply = await stub.Say(pb2.EchoRequest(text="hello"), metadata=_bearer(token))
        assert isinstance(reply, pb2.EchoReply)
        assert (reply.text, reply.principal) == ("HELLO", "alice")

        many = [
            r
            async for r in stub.SayMany(
                pb2.EchoRequest(text="x", repeat=3), metadata=_bearer(token)
            )
        ]
        assert [(r.text, r.index, r.principal) for r in many] == [
            ("x", 0, "alice"),
            ("x", 1, "alice"),
            ("x", 2, "alice"),
        ]

        async def requests() -> AsyncIterator[Any]:
            for text in ("a", "b", "c"):
                yield pb2.EchoRequest(text=text)

        collected = await stub.Collect(requests(), metadata=_bearer(token))
        assert (collected.text, collected.index) == ("a+b+c", 3)

        # PUBLIC method: served without credentials, no principal.
        chat = [r async for r in stub.Chat(requests())]
        assert [(r.text, r.principal) for r in chat] == [("a", ""), ("b", ""), ("c", "")]


async def test_api_key_in_metadata_is_accepted(harness: Harness) -> None:
    created = await harness.api_keys.create("ci", principal_id="svc-ci", scopes=["echo:say"])
    async with harness.channel(harness.pki.client) as channel:
        reply = await pb2_grpc.EchoStub(channel).Say(
            pb2.EchoRequest(text="k"), metadata=(("x-api-key", created.key),)
        )
    assert reply.principal == "svc-ci"


async def test_client_without_certificate_is_refused(harness: Harness) -> None:
    token = await harness.token("alice", ["echoer"])
    async with harness.channel(None) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="x"), metadata=_bearer(token))
        )
    assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake itself fails


async def test_certificate_from_another_ca_is_refused(harness: Harness) -> None:
    token = await harness.token("alice", ["echoer"])
    async with harness.channel(harness.pki.foreign_client) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="x"), metadata=_bearer(token))
        )
    assert code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer not.a.token"),),
        (("authorization", "Basic YWxpY2U6cHc="),),
        (("x-api-key", "sfw_AAAA_BBBB_CCCC"),),
    ],
    ids=["missing", "malformed", "wrong-scheme", "bad-api-key"],
)
async def test_missing_or_bad_credentials_are_unauthenticated(
    harness: Harness, metadata: tuple[tuple[str, str], ...]
) -> None:
    async with harness.channel(harness.pki.client) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="x"), metadata=metadata)
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert harness.events[-1].type == "auth.authenticate.failed"


async def test_token_from_another_issuer_is_unauthenticated(harness: Harness) -> None:
    stranger = TokenIssuer(
        algorithm="ES256",
        signing_key=_pem_key(_key()),
        issuer="https://issuer.test",
        audience="echo",
        key_id="k1",
    )
    forged = (await stranger.issue("alice", roles=["echoer"])).access_token
    async with harness.channel(harness.pki.client) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="x"), metadata=_bearer(forged))
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_two_credentials_are_refused(harness: Harness) -> None:
    token = await harness.token("alice", ["echoer"])
    async with harness.channel(harness.pki.client) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Say(
                pb2.EchoRequest(text="x"),
                metadata=(("authorization", f"Bearer {token}"), ("x-api-key", "sfw_x")),
            )
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_unmapped_method_is_denied_even_when_authenticated(harness: Harness) -> None:
    token = await harness.token("root", ["echoer"])
    async with harness.channel(harness.pki.client) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Unmapped(pb2.EchoRequest(text="x"), metadata=_bearer(token))
        )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert harness.events[-1].type == "auth.access.denied"
    assert harness.events[-1].details["reason"] == "unmapped"


async def test_missing_permission_is_denied(harness: Harness) -> None:
    token = await harness.token("bob", ["reader"])
    async with harness.channel(harness.pki.client) as channel:
        code = await _code_of(
            pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="x"), metadata=_bearer(token))
        )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert harness.events[-1].principal_id == "bob"


async def test_rate_limit_is_resource_exhausted_with_retry_after(harness: Harness) -> None:
    token = await harness.token("carol", ["echoer"])
    async with harness.channel(harness.pki.client) as channel:
        stub = pb2_grpc.EchoStub(channel)
        for _ in range(3):
            replies = [
                r
                async for r in stub.SayMany(
                    pb2.EchoRequest(text="x", repeat=1), metadata=_bearer(token)
                )
            ]
            assert len(replies) == 1
        call = stub.SayMany(pb2.EchoRequest(text="x", repeat=1), metadata=_bearer(token))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            _ = [r async for r in call]
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailing: Any = info.value.trailing_metadata() or ()
    trailers = dict(trailing)
    assert int(trailers["retry-after"]) >= 1
    # Another principal has its own budget.
    other = await harness.token("dave", ["echoer"])
    async with harness.channel(harness.pki.client) as channel:
        replies = [
            r
            async for r in pb2_grpc.EchoStub(channel).SayMany(
                pb2.EchoRequest(text="x", repeat=1), metadata=_bearer(other)
            )
        ]
    assert len(replies) == 1


async def test_streaming_methods_are_guarded_too(harness: Harness) -> None:
    async def requests() -> AsyncIterator[Any]:
        yield pb2.EchoRequest(text="a")

    async with harness.channel(harness.pki.client) as channel:
        stub = pb2_grpc.EchoStub(channel)
        collect = await _code_of(stub.Collect(requests()))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            _ = [r async for r in stub.SayMany(pb2.EchoRequest(text="x", repeat=2))]
    assert collect == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_rate_limit_storage_down_fails_closed_as_unavailable(pki: Pki) -> None:
    # A real refused connection: nothing listens on the port of a socket we just closed.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    limiter = RateLimiter(
        RateLimitSettings.model_validate(
            {"storage_url": f"redis://127.0.0.1:{dead_port}/0", "on_storage_error": "closed"}
        )
    )
    issuer = TokenIssuer(
        algorithm="HS256", signing_key=b"k" * 32, issuer="https://i.test", audience="echo"
    )
    policy = RbacPolicy([Role("echoer", frozenset({"echo:say"}))])
    interceptor = GrpcSecurityInterceptor(
        Authenticator(jwt=issuer.verifier, policy=policy),
        {f"{SERVICE}/Say": ["echo:say"]},
        rate_limiter=limiter,
        rate_limit=RateLimitPolicy(name="grpc", limits="100/second"),
    )
    server, port = build_grpc_server(_server_settings(pki), interceptors=[interceptor])
    pb2_grpc.add_EchoServicer_to_server(EchoServicer(), server)
    await server.start()
    token = (await issuer.issue("erin", roles=["echoer"])).access_token
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.pem,
            private_key=pki.client.key_pem,
            certificate_chain=pki.client.cert_pem,
        )
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb2_grpc.EchoStub(channel).Say(
                    pb2.EchoRequest(text="x"), metadata=_bearer(token)
                )
    finally:
        await server.stop(grace=None)
        await limiter.aclose()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    trailing: Any = info.value.trailing_metadata() or ()
    assert int(dict(trailing)["retry-after"]) >= 1
    # One refused connection is a storage error; degraded takes degraded_after in a row.
    assert limiter.storage_errors == 1


async def test_client_certificate_principal_over_mtls(pki: Pki) -> None:
    verifier = ClientCertificateVerifier(
        pki.ca.pem,
        {"uri:spiffe://test/orders": MtlsIdentity("orders-service", roles=frozenset({"echoer"}))},
    )
    policy = RbacPolicy([Role("echoer", frozenset({"echo:say"}))])
    authenticator = Authenticator(mtls=MtlsAuthenticator(verifier), policy=policy)
    interceptor = GrpcSecurityInterceptor(authenticator, {f"{SERVICE}/*": ["echo:say"]})
    server, port = build_grpc_server(_server_settings(pki), interceptors=[interceptor])
    pb2_grpc.add_EchoServicer_to_server(EchoServicer(), server)
    await server.start()
    harness_like = Harness(f"localhost:{port}", None, None, [], pki, RateLimiter())  # type: ignore[arg-type]
    try:
        async with harness_like.channel(pki.client) as channel:
            reply = await pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="m"))
        assert reply.principal == "orders-service"
        # Same CA, so the handshake succeeds, but the certificate maps to nobody.
        async with harness_like.channel(pki.unmapped_client) as channel:
            code = await _code_of(pb2_grpc.EchoStub(channel).Say(pb2.EchoRequest(text="m")))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(grace=None)


# -- server helpers refuse insecure or broken TLS ----------------------------------------


def test_server_refuses_to_start_without_certificates(pki: Pki) -> None:
    from saasfw.security._errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="certificate_chain_file is not set"):
        build_grpc_server(GrpcServerSettings(address="127.0.0.1:0"))
    good = _server_settings(pki)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        build_grpc_server(good.model_copy(update={"private_key_file": pki.directory / "nope"}))
    with pytest.raises(ConfigurationError, match="client_ca_file is not set"):
        build_grpc_server(good.model_copy(update={"client_ca_file": None}))
    wrong_key = pki.write("wrong.key", _pem_key(_key()))
    with pytest.raises(ConfigurationError, match="does not belong"):
        build_grpc_server(good.model_copy(update={"private_key_file": wrong_key}))
    garbage = pki.write("garbage.pem", b"not a certificate")
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        build_grpc_server(good.model_copy(update={"certificate_chain_file": garbage}))
    with pytest.raises(ConfigurationError, match="refusing to serve plaintext"):
        build_grpc_server(GrpcServerSettings(address="127.0.0.1:0", tls=False))


async def test_plaintext_only_by_explicit_choice_and_flagged_for_production() -> None:
    settings = GrpcServerSettings(address="127.0.0.1:0", tls=False, allow_insecure=True)
    server, port = build_grpc_server(settings)
    assert port > 0
    await server.stop(grace=None)
    assert grpc_production_problems(settings)
    assert grpc_production_problems(GrpcServerSettings()) == []


def test_interceptor_configuration_is_checked() -> None:
    from saasfw.security._errors import ConfigurationError

    authenticator = Authenticator(
        jwt=TokenIssuer(algorithm="HS256", signing_key=b"s" * 32, issuer="i", audience="a").verifier
    )
    with pytest.raises(ConfigurationError, match=r"package\.Service"):
        GrpcSecurityInterceptor(authenticator, {"Say": ["echo:say"]})
    with pytest.raises(ConfigurationError, match="not one string"):
        GrpcSecurityInterceptor(authenticator, {f"{SERVICE}/Say": "echo:say"})
    with pytest.raises(ConfigurationError, match="rate_limiter"):
        GrpcSecurityInterceptor(
            authenticator,
            {f"{SERVICE}/Say": ["echo:say"]},
            rate_limit=RateLimitPolicy(name="x", limits="1/second"),
        )


def test_import_without_grpc_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["grpc"] = None
        try:
            import saasfw.security.grpc
        except ImportError as exc:
            from saasfw.security.advanced import MissingExtraError
            assert isinstance(exc, MissingExtraError), type(exc)
            print(exc)
        else:
            raise SystemExit("imported without grpc")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "saasfw-security[grpc]" in result.stdout
