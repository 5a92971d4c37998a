"""Sinks for the per-request access line: a buffered JSON-lines file, or logging."""

from __future__ import annotations

import json
import logging
import threading
import time
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, Protocol

import structlog

ACCESS_LOGGER = "saasfw.access"

_log = logging.getLogger("saasfw.observability")


class AccessLog(Protocol):
    """Where the middleware writes one access line per request."""

    def write(self, fields: dict[str, Any]) -> None:
        """Record one request; ``fields`` carries no timestamp, level or logger name."""

    def flush(self) -> None:
        """Push buffered lines to their destination."""

    def close(self) -> None:
        """Flush and release the destination; later writes are dropped and counted."""


class _UtcClock:
    """ISO-8601 UTC timestamps, formatting the date and time part once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"


class JsonLinesAccessLog:
    """Append access lines as JSON objects, one per line, through a buffered binary writer.

    The cheap path: no LogRecord, no processor chain. Lines reach the file when the buffer
    fills, at least every ``flush_interval`` seconds while requests arrive, on
    :meth:`flush` (the lifespan calls it periodically) and on :meth:`close`. A line written
    after close, or that the disk refuses, is not silently lost: it is counted in
    :attr:`dropped` and write failures are logged.
    """

    def __init__(
        self, path: str | Path, *, buffer_size: int = 65536, flush_interval: float = 1.0
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Binary append with our own buffer: one write() call per line, no encoding layer.
        self._file = open(self.path, "ab", buffering=buffer_size)  # noqa: SIM115
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._clock = _UtcClock()
        self._lock = threading.Lock()
        self._encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
        self.written = 0
        self.dropped = 0

    def write(self, fields: dict[str, Any]) -> None:
        line = {
            "timestamp": self._clock.now(),
            "level": "info",
            "logger": ACCESS_LOGGER,
            **fields,
        }
        self._append(self._encode(line).encode("ascii") + b"\n")

    def write_request(
        self,
        method: str,
        path: str,
        route: str,
        status: int,
        duration_ms: float,
        correlation_id: str | None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        """The middleware's line, formatted directly: the same bytes :meth:`write` makes
        of the same fields, without building and walking a dictionary. Every string goes
        through the JSON encoder's own escaping, so no value can break out of its field."""
        escape = encode_basestring_ascii
        line = (
            f'{{"timestamp":"{self._clock.now()}","level":"info","logger":"{ACCESS_LOGGER}",'
            f'"event":"request","method":{escape(method)},"path":{escape(path)},'
            f'"route":{escape(route)},"status":{int(status)},"duration_ms":{float(duration_ms)!r},'
            f'"correlation_id":{"null" if correlation_id is None else escape(correlation_id)}'
        )
        if trace_id is not None and span_id is not None:
            line += f',"trace_id":{escape(trace_id)},"span_id":{escape(span_id)}'
        self._append((line + "}\n").encode("ascii"))

    def _append(self, data: bytes) -> None:
        with self._lock:
            if self._file.closed:
                self.dropped += 1
                return
            try:
                self._file.write(data)
                self.written += 1
                now = time.monotonic()
                if now - self._last_flush >= self._flush_interval:
                    self._last_flush = now
                    self._file.flush()
            except OSError as exc:
                # A full disk must not fail the request whose response is already sent;
                # the loss is counted and reported, never silent.
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    _log.error(
                        "access log %s: write failed (%s); %d line(s) dropped so far",
                        self.path,
                        exc.strerror or exc,
                        self.dropped,
                    )

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._last_flush = time.monotonic()
                try:
                    self._file.flush()
                except OSError as exc:
                    _log.error("access log %s: flush failed (%s)", self.path, exc.strerror or exc)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                try:
                    self._file.close()
                except OSError as exc:
                    _log.error(
                        "access log %s: buffered lines lost at close (%s)",
                        self.path,
                        exc.strerror or exc,
                    )


class LoggingAccessLog:
    """Send access lines through structlog as the ``saasfw.access`` logger.

    Slower than :class:`JsonLinesAccessLog` (the full processor chain runs per line), but
    the lines share the process's log stream and format.
    """

    def __init__(self) -> None:
        self._logger = structlog.get_logger(ACCESS_LOGGER)
        self.written = 0

    def write(self, fields: dict[str, Any]) -> None:
        event = fields.pop("event", "request")
        self._logger.info(event, **fields)
        self.written += 1

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
