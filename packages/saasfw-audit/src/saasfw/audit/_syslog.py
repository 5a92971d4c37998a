"""Syslog sink for SIEMs: RFC 5424 messages, JSON or CEF payload, over UDP, TCP or TLS.

TCP and TLS use octet-counting framing (RFC 6587 / RFC 5425): each message is preceded by
its length, so no byte inside a field can end a message early or forge another one. The
JSON payload is ASCII-escaped and CEF values escape ``\\``, ``=``, ``|`` and line breaks.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from saasfw.audit._errors import AuditSinkError
from saasfw.audit._sink import AuditSink, EncodedRecord

if TYPE_CHECKING:
    import ssl

    from saasfw.audit._settings import SyslogSettings

FACILITY_LOG_AUDIT = 13
_UDP_MAX = 8192
_NON_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def _header_token(value: str, limit: int) -> str:
    return _NON_PRINTABLE.sub("_", value)[:limit] or "-"


def _cef_header(value: Any) -> str:
    s = str(value)
    s = s.replace("\\", "\\\\").replace("|", "\\|")
    return s.replace("\r", " ").replace("\n", " ")


def _cef_value(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    s = s.replace("\\", "\\\\").replace("=", "\\=")
    return s.replace("\r", "\\r").replace("\n", "\\n")


def _severity(outcome: str) -> int:
    return {"failure": 4, "denied": 4, "error": 3}.get(outcome, 5)


def format_cef(record: Mapping[str, Any], *, version: str = "0.1.0") -> str:
    """A CEF:0 payload of the record (header fields and extension values escaped)."""
    actor = record.get("actor") or {}
    resource = record.get("resource") or {}
    ext: list[tuple[str, Any]] = [
        ("rt", record["ts"]),
        ("externalId", record["id"]),
        ("act", record["action"]),
        ("outcome", record["outcome"]),
        ("suser", actor.get("id")),
        ("src", actor.get("address")),
        ("cs1Label", "tenant"),
        ("cs1", actor.get("tenant")),
        ("cs2Label", "correlationId"),
        ("cs2", record.get("correlation_id")),
        ("cs3Label", "resource"),
        ("cs3", f"{resource.get('type')}:{resource.get('id')}" if resource else None),
        ("cs4Label", "producer"),
        ("cs4", record["producer"]),
        ("cn1Label", "seq"),
        ("cn1", record["seq"]),
        ("cs5Label", "details"),
        ("cs5", record.get("details") or {}),
        ("cs6Label", "mac"),
        ("cs6", record.get("mac")),
    ]
    extension = " ".join(f"{k}={_cef_value(v)}" for k, v in ext if v is not None)
    sev = 7 if record["outcome"] in {"failure", "denied"} else 3
    return (
        f"CEF:0|saasfw|saasfw-audit|{_cef_header(version)}|{_cef_header(record['type'])}|"
        f"{_cef_header(record['action'])}|{sev}|{extension}"
    )


class SyslogSink(AuditSink):
    """Sends each record as an RFC 5424 message (facility 13, "log audit").

    Args:
        host, port: the collector.
        transport: ``udp`` (no delivery guarantee; messages over 8 KiB are cut), ``tcp`` or
            ``tls``.
        format: ``json`` (the record's line) or ``cef``.
        ssl_context: for ``tls``; default: the system trust store with hostname checking.
        timeout: connect and send timeout in seconds.
    """

    name = "syslog"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: str = "tcp",
        format: str = "json",
        app_name: str = "saasfw",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        if transport not in {"udp", "tcp", "tls"}:
            raise ValueError(f"unknown syslog transport {transport!r}")
        if format not in {"json", "cef"}:
            raise ValueError(f"unknown syslog format {format!r}")
        self.host = host
        self.port = port
        self.transport = transport
        self.format = format
        self._app = _header_token(app_name, 48)
        self._hostname = _header_token(socket.gethostname(), 255)
        self._procid = str(os.getpid())
        self._ssl = ssl_context
        if transport == "tls" and self._ssl is None:
            import ssl

            self._ssl = ssl.create_default_context()
        self._timeout = timeout
        self._sock: socket.socket | None = None

    @classmethod
    def from_settings(cls, settings: SyslogSettings) -> SyslogSink:
        ctx = None
        if settings.transport == "tls":
            import ssl

            ctx = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
        return cls(
            settings.host,
            settings.port,
            transport=settings.transport,
            format=settings.format,
            app_name=settings.app_name,
            ssl_context=ctx,
        )

    def format_message(self, r: EncodedRecord) -> bytes:
        rec = r.record
        payload = format_cef(rec) if self.format == "cef" else r.line.rstrip(b"\n").decode()
        pri = FACILITY_LOG_AUDIT * 8 + _severity(rec["outcome"])
        msgid = _header_token(rec["type"], 32)
        return (
            f"<{pri}>1 {rec['ts']} {self._hostname} {self._app} {self._procid} {msgid} - {payload}"
        ).encode()

    def _connect(self) -> socket.socket:
        if self.transport == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((self.host, self.port))
            return sock
        raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
        if self.transport == "tls":
            if self._ssl is None:  # an internal invariant, not an input check
                raise RuntimeError("saasfw.audit: self._ssl is unset")
            return self._ssl.wrap_socket(raw, server_hostname=self.host)
        return raw

    def _peer_closed(self, sock: socket.socket) -> bool:
        """True when the collector closed the connection (so the next send would be lost)."""
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            finally:
                sock.settimeout(self._timeout)
        except BlockingIOError:
            return False
        except OSError as exc:
            # ssl.SSLWantReadError: a partial TLS record, the connection is alive.
            return type(exc).__name__ != "SSLWantReadError"

        return data == b""

    def write(self, batch: Sequence[EncodedRecord]) -> None:
        messages = [self.format_message(r) for r in batch]
        try:
            if self._sock is not None and self.transport != "udp" and self._peer_closed(self._sock):
                self._drop_connection()
            if self._sock is None:
                self._sock = self._connect()
            if self.transport == "udp":
                for m in messages:
                    self._sock.send(m[:_UDP_MAX])
            else:
                self._sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
        except OSError as exc:
            self._drop_connection()
            raise AuditSinkError(
                f"send failed: {exc}", where=f"syslog {self.host}:{self.port}"
            ) from exc

    def _drop_connection(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        if self._sock is not None and self.transport != "udp":
            # Give the collector a moment to read what was sent before the FIN.
            try:
                self._sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    r, _, _ = select.select([self._sock], [], [], 0.05)
                    if r and not self._sock.recv(4096):
                        break
            except OSError:
                pass
        self._drop_connection()

    def __repr__(self) -> str:
        return f"SyslogSink({self.transport}://{self.host}:{self.port}, format={self.format!r})"
