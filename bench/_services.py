"""What the fleet shape talks to: an OTLP/HTTP receiver that counts and discards, and Redis.

``Receiver`` answers 200 to ``POST /v1/traces`` and ``POST /v1/metrics`` (counting the
spans in each protobuf export request) and serves the counts at ``GET /counts``. It runs
in the benchmark's own process, outside valgrind, so receiving costs the measured app
nothing beyond what sending to a real collector costs.

``redis_server()`` starts a private ``redis-server`` on a free port (no persistence), so
``INFO commandstats`` sees only the benchmark's commands; without ``redis-server`` it falls
back to ``SAASFW_TEST_REDIS_URL`` (whose statistics other clients may share).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)


class Receiver:
    """A local OTLP/HTTP endpoint: counts spans and export calls, keeps nothing."""

    def __init__(self) -> None:
        self.counts = {"spans": 0, "trace_exports": 0, "metric_exports": 0}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    if self.path == "/v1/traces":
                        receiver.counts["spans"] += _spans(body)
                        receiver.counts["trace_exports"] += 1
                    elif self.path == "/v1/metrics":
                        receiver.counts["metric_exports"] += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                with receiver._lock:
                    payload = json.dumps(receiver.counts).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, str]]:
    """(URL, where it came from): a private redis-server, else the shared test Redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        shared = os.environ.get("SAASFW_TEST_REDIS_URL")
        if not shared:
            raise RuntimeError("no redis-server and no SAASFW_TEST_REDIS_URL for the fleet shape")
        yield shared, "shared SAASFW_TEST_REDIS_URL (its statistics include other clients)"
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-redis-") as tmp:
        cmd = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("private redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", f"private redis-server on port {port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
