"""Prometheus RED metrics: request counter, duration histogram, in-flight gauge, /metrics."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.types import Receive, Scope, Send

from saasfw.observability._errors import ObservabilityConfigError
from saasfw.observability._routes import route_template
from saasfw.observability._settings import DEFAULT_BUCKETS

REQUESTS_TOTAL = "saasfw_http_requests_total"
REQUEST_DURATION = "saasfw_http_request_duration_seconds"
REQUESTS_IN_FLIGHT = "saasfw_http_requests_in_flight"

# Methods outside this set are labelled _OTHER, so a client cannot mint label values.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)

_ObserveFns = tuple[Callable[[], None], Callable[[float], None]]


def multiprocess_mode() -> bool:
    """True when prometheus-client writes values to PROMETHEUS_MULTIPROC_DIR (several workers)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _InFlightCollector:
    """Counts requests in flight at scrape time, grouped by method and route template.

    A request's route is only known once the router has matched it, which is after the
    middleware has to count it as started. So instead of a gauge incremented under a label
    guessed up front, the middleware registers each active request (a dict insert) and the
    route is read from its scope when Prometheus scrapes. Requests not routed yet at that
    instant count as ``<unmatched>``.
    """

    def __init__(self, metrics: RedMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            REQUESTS_IN_FLIGHT,
            "HTTP requests being handled, by method and route template.",
            labels=("method", "route"),
        )
        for (method, route), count in sorted(self._metrics.in_flight().items()):
            family.add_metric((method, route), count)
        yield family


class RedMetrics:
    """The request counter, duration histogram and in-flight gauge of one registry.

    Label children are created once per (method, route, status) and their bound ``inc`` and
    ``observe`` cached, so recording a request is two dict operations and two metric
    updates. Use :func:`red_metrics` to get the instance for a registry; constructing two
    on one registry fails, as two collectors with the same names would.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.buckets = tuple(buckets)
        self.multiprocess = multiprocess_mode()
        labels = ("method", "route", "status")
        self._requests = Counter(
            "saasfw_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            labels,
            registry=self.registry,
        )
        self._duration = Histogram(
            REQUEST_DURATION,
            "Time from the request reaching the service to the last response byte, in seconds.",
            labels,
            buckets=self.buckets,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], _ObserveFns] = {}
        self._seen_routes: set[tuple[str, str]] = set()
        # id(scope) -> (method label, scope, root_path before the app ran)
        self._active: dict[int, tuple[str, Scope, str]] = {}
        self._gauge: Gauge | None = None
        self._synced: set[tuple[str, str]] = set()
        self._sync_stop: threading.Event | None = None
        if self.multiprocess:
            # Each worker writes its own value; livesum adds the live workers' values.
            self._gauge = Gauge(
                REQUESTS_IN_FLIGHT,
                "HTTP requests being handled, by method and route template.",
                ("method", "route"),
                multiprocess_mode="livesum",
                registry=self.registry,
            )
        else:
            self.registry.register(_InFlightCollector(self))

    @staticmethod
    def method_label(method: str) -> str:
        return method if method in KNOWN_METHODS else "_OTHER"

    def request_started(self, scope: Scope, method: str) -> None:
        self._active[id(scope)] = (method, scope, scope.get("root_path", ""))

    def request_finished(
        self, scope: Scope, method: str, route: str, status: int, seconds: float
    ) -> None:
        self._active.pop(id(scope), None)
        key = (method, route, status)
        try:
            inc, observe = self._children[key]
        except KeyError:
            label = str(status)
            inc = self._requests.labels(method, route, label).inc
            observe = self._duration.labels(method, route, label).observe
            self._children[key] = (inc, observe)
            self._seen_routes.add((method, route))
        inc()
        observe(seconds)

    def in_flight(self) -> dict[tuple[str, str], int]:
        """Requests in flight now, by (method, route); routes seen before report 0."""
        counts = dict.fromkeys(tuple(self._seen_routes), 0)
        for method, scope, root_path in tuple(self._active.values()):
            key = (method, route_template(scope, root_path))
            counts[key] = counts.get(key, 0) + 1
        return counts

    def sync_in_flight(self) -> None:
        """Write this worker's in-flight counts to the multiprocess gauge."""
        if self._gauge is None:
            return
        counts = self.in_flight()
        for key in self._synced - counts.keys():
            self._gauge.labels(*key).set(0)
        for key, count in counts.items():
            self._gauge.labels(*key).set(count)
        self._synced = set(counts)

    def start_in_flight_sync(self, interval: float = 1.0) -> None:
        """In multiprocess mode, sync the in-flight gauge every ``interval`` seconds."""
        if self._gauge is None or self._sync_stop is not None:
            return
        stop = threading.Event()
        self._sync_stop = stop

        def run() -> None:
            while not stop.wait(interval):
                self.sync_in_flight()

        threading.Thread(target=run, name="saasfw-in-flight-sync", daemon=True).start()

    def stop_in_flight_sync(self) -> None:
        if self._sync_stop is not None:
            self._sync_stop.set()
            self._sync_stop = None
        self.sync_in_flight()


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, RedMetrics] = weakref.WeakKeyDictionary()
_BY_REGISTRY_LOCK = threading.Lock()


def red_metrics(
    registry: CollectorRegistry | None = None, *, buckets: Sequence[float] = DEFAULT_BUCKETS
) -> RedMetrics:
    """Return the RED metrics of ``registry`` (default: prometheus-client's global one).

    Created on first use and shared afterwards, so several apps or middlewares in one
    process can record into the same registry without a duplicate-timeseries error.

    Raises:
        ObservabilityConfigError: the registry already has the metrics with other buckets.
    """
    target = registry if registry is not None else REGISTRY
    with _BY_REGISTRY_LOCK:
        existing = _BY_REGISTRY.get(target)
        if existing is None:
            existing = _BY_REGISTRY[target] = RedMetrics(target, buckets=buckets)
        elif existing.buckets != tuple(buckets):
            raise ObservabilityConfigError(
                f"{REQUEST_DURATION} is already registered with buckets {existing.buckets}; "
                "use the same buckets or another registry",
                setting="metrics.buckets",
            )
    return existing


class MetricsApp:
    """ASGI endpoint serving a registry in the Prometheus text or OpenMetrics format.

    In multiprocess mode it aggregates every worker's values from PROMETHEUS_MULTIPROC_DIR
    (reading them in a worker thread, since that is file I/O), whatever registry it got.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, metrics: RedMetrics | None = None
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self._metrics = metrics

    def _render(self, accept: str) -> tuple[bytes, str]:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        if multiprocess_mode():
            from prometheus_client import multiprocess

            if self._metrics is not None:
                self._metrics.sync_in_flight()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return encoder(registry), content_type
        return encoder(self.registry), content_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ObservabilityConfigError("the metrics endpoint serves HTTP requests only")
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain", allow=b"GET, HEAD")
            return
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
                break
        if multiprocess_mode():
            import anyio.to_thread

            body, content_type = await anyio.to_thread.run_sync(self._render, accept)
        else:
            body, content_type = self._render(accept)
        await _respond(send, 200, body, content_type, head=scope["method"] == "HEAD")


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    *,
    allow: bytes | None = None,
    head: bool = False,
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("latin-1")),
    ]
    if allow is not None:
        headers.append((b"allow", allow))
    message: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(message)
    # HEAD: the GET's headers (content-length included) without its body.
    await send({"type": "http.response.body", "body": b"" if head else body})
