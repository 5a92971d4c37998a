"""Acceptance 3 and 4: the SIEM sink against a real local TCP/UDP collector."""

from __future__ import annotations

import io
import json
import re
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from saasfw.audit import (
    Actor,
    AuditLogger,
    ConsoleSink,
    Delivery,
    FileSink,
    SqlSink,
    SyslogSink,
)
from saasfw.audit._syslog import format_cef

_HEADER = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) - ")


class Collector:
    """A syslog collector speaking RFC 6587 octet counting over TCP (or UDP datagrams)."""

    def __init__(self, transport: str = "tcp") -> None:
        self.transport = transport
        self.messages: list[bytes] = []
        self.raw = bytearray()
        self.port = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        self._server = socket.socket(socket.AF_INET, kind)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self.port = self._server.getsockname()[1]
        if self.transport == "tcp":
            self._server.listen()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ)
        buffers: dict[socket.socket, bytearray] = {}
        idle_since: float | None = None
        while True:
            events = sel.select(0.02)
            if self._stop.is_set():
                if events:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 0.1:
                    break  # drained: nothing arrived for 100 ms
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server and self.transport == "tcp":
                    if self._stop.is_set():
                        continue
                    conn, _ = sock.accept()
                    sel.register(conn, selectors.EVENT_READ)
                    buffers[conn] = bytearray()
                    continue
                if self.transport == "udp":
                    data = sock.recv(65535)
                    with self._lock:
                        self.raw += data
                        self.messages.append(data)
                    continue
                data = sock.recv(65536)
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    buffers.pop(sock)
                    continue
                buf = buffers[sock]
                buf += data
                with self._lock:
                    self.raw += data
                    while True:
                        space = buf.find(b" ")
                        if space < 0:
                            break
                        length = int(buf[:space])
                        if len(buf) < space + 1 + length:
                            break
                        self.messages.append(bytes(buf[space + 1 : space + 1 + length]))
                        del buf[: space + 1 + length]
        for sock in list(buffers):
            sock.close()
        sel.close()
        self._server.close()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(_HEADER.sub(b"", m)) for m in self.messages]


@pytest.fixture
def collector() -> Any:
    c = Collector()
    c.start()
    yield c
    if not c._stop.is_set():
        c.stop()


def _wait(predicate: Any, timeout: float = 20.0, on_timeout: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline and on_timeout:
            on_timeout()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _outage(collector: Collector, policy: str, tmp_path: Path) -> tuple[AuditLogger, int, int]:
    sink = SyslogSink("127.0.0.1", collector.port, transport="tcp")
    delivery = Delivery(
        sink,
        policy,
        buffer_events=1000,
        spill_path=tmp_path / "spill.jsonl" if policy == "spill" else None,
        spill_max_bytes=10 * 1024 * 1024,
        retry_initial=0.01,
        retry_max=0.1,
    )
    logger = AuditLogger([delivery], producer_id="siem", batch_size=100, batch_interval=0.005)
    logger.start()
    for i in range(300):
        logger.record("login.ok", details={"i": i})
    _wait(
        lambda: collector.count() == 300,
        on_timeout=lambda: print(logger.stats(), collector.count()),
    )
    collector.stop()  # the SIEM goes away and stops accepting
    time.sleep(0.2)
    peak = 0
    for i in range(300, 3300):
        logger.record("login.ok", details={"i": i})
        if i % 100 == 0:
            time.sleep(0.005)
            peak = max(peak, logger.stats().sinks["syslog"].pending)
    _wait(lambda: logger.stats().sinks["syslog"].failures > 0)
    assert logger.flush(timeout=0.5) is False  # stuck: the SIEM is down
    peak = max(peak, logger.stats().sinks["syslog"].pending)
    collector.start()  # back on the same port
    return logger, 3300, peak


def test_drop_policy_counts_exactly_what_is_missing(collector: Collector, tmp_path: Path) -> None:
    logger, total, peak = _outage(collector, "drop", tmp_path)
    assert logger.flush(timeout=20)
    dropped = logger.stats().sinks["syslog"].dropped
    report = logger.close()
    assert report.complete
    ids = [p["details"]["i"] for p in collector.payloads()]
    assert len(ids) == len(set(ids))  # nothing duplicated either
    assert dropped > 0
    assert dropped == total - len(ids)
    assert report.dropped == {"syslog": dropped}
    assert peak <= 1000 + 100  # bounded: the buffer plus one batch


def test_spill_policy_loses_nothing_once_the_listener_returns(
    collector: Collector, tmp_path: Path
) -> None:
    logger, total, peak = _outage(collector, "spill", tmp_path)
    spilled = logger.stats().sinks["syslog"].spilled
    assert spilled > 0
    assert (tmp_path / "spill.jsonl").stat().st_size <= 10 * 1024 * 1024
    assert logger.flush(timeout=30)
    assert logger.close().complete
    ids = {p["details"]["i"] for p in collector.payloads()}
    assert ids == set(range(total))
    assert logger.stats().sinks["syslog"].dropped == 0
    assert peak <= 1000 + 100
    assert (tmp_path / "spill.jsonl").stat().st_size == 0  # replayed and emptied


FORGED = '"}\n{"type":"admin.granted","actor":{"id":"root"},"outcome":"success"}\r\n<13>1 x'


@pytest.mark.parametrize("fmt", ["json", "cef"])
def test_newline_in_username_yields_exactly_one_record_in_every_sink(
    collector: Collector, tmp_path: Path, fmt: str
) -> None:
    udp = Collector("udp")
    udp.start()
    out = io.StringIO()
    console = structlog.wrap_logger(
        structlog.PrintLogger(out), processors=[structlog.processors.JSONRenderer()]
    )
    log = tmp_path / "audit.jsonl"
    db = tmp_path / "audit.db"
    logger = AuditLogger(
        [
            FileSink(log),
            SqlSink(f"sqlite:///{db}"),
            ConsoleSink(console),
            SyslogSink("127.0.0.1", collector.port, format=fmt),
            Delivery(_renamed(SyslogSink("127.0.0.1", udp.port, transport="udp", format=fmt))),
        ],
        producer_id="inj",
        chain_key=b"k" * 32,
        actor_provider=lambda: Actor("mallory" + FORGED, tenant="t\nx", address="1.2.3.4"),
    )
    logger.start()
    logger.record("auth.login.failed", outcome="failure", details={"username": "bob" + FORGED})
    assert logger.close().complete
    udp.stop()

    lines = log.read_bytes().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["actor"]["id"] == "mallory" + FORGED
    assert out.getvalue().count("\n") == 1
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from audit_events").fetchone() == (1,)
    conn.close()
    for c in (collector, udp):
        assert c.count() == 1
        assert b"\n" not in c.raw
        assert b"\r" not in c.raw
        [message] = c.messages
        assert _HEADER.match(message)
        if fmt == "cef":
            assert message.count(b"CEF:0|") == 1
            assert b"suser=mallory" in message


def _renamed(sink: SyslogSink) -> SyslogSink:
    sink.name = "syslog-udp"
    return sink


def test_cef_escapes_header_and_extension_specials() -> None:
    rec = {
        "ts": "2026-01-01T00:00:00.000000Z",
        "id": "x",
        "type": "a|b\\c",
        "action": "act\nion",
        "outcome": "failure",
        "actor": {"id": "a=b\\c"},
        "producer": "p",
        "seq": 1,
        "details": {},
    }
    cef = format_cef(rec)
    assert "|a\\|b\\\\c|act ion|7|" in cef
    assert "suser=a\\=b\\\\c" in cef
    assert "\n" not in cef


def test_tls_transport_with_a_verified_certificate(tmp_path: Path) -> None:
    import ssl
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                received.extend(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cadata=cert_pem.decode())
    sink = SyslogSink("localhost", port, transport="tls", format="cef", ssl_context=client_ctx)
    logger = AuditLogger([sink], producer_id="tls")
    logger.start()
    for i in range(5):
        logger.record("auth.login.failed", outcome="failure", details={"i": i})
    assert logger.close().complete
    t.join(5)
    listener.close()
    frames = []
    buf = bytes(received)
    while buf:
        length, _, rest = buf.partition(b" ")
        frames.append(rest[: int(length)])
        buf = rest[int(length) :]
    assert len(frames) == 5
    assert all(b"CEF:0|saasfw|saasfw-audit|" in f for f in frames)
    assert frames[0].startswith(b"<108>1 ")  # facility 13 (log audit), severity 4


def test_tls_refuses_an_unverified_collector(tmp_path: Path) -> None:
    import ssl

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sink = SyslogSink(
        "localhost", port, transport="tls", ssl_context=ssl.create_default_context(), timeout=1.0
    )
    logger = AuditLogger([Delivery(sink, "drop", retry_initial=0.01, retry_max=0.05)])
    logger.start()
    logger.record("x")

    def accept_and_hang_up() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"not tls at all\r\n")
        conn.close()

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    _wait(lambda: logger.stats().sinks["syslog"].failures > 0)
    assert logger.close(timeout=0.2).unflushed == {"syslog": 1}
    listener.close()
