"""Downstream services: one httpx client each, with retries, a circuit breaker and propagation.

Each service named in ``settings.clients`` gets an ``httpx.AsyncClient`` built by the
framework: base URL, timeouts, connection limits, the service credential, and a transport
stack of (outermost first) the circuit breaker, retries, then saasfw.observability's
tracing transport, so every attempt is its own client span carrying ``traceparent`` and
the correlation id.

Retries: only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE), only on connection
errors, timeouts, 502, 503 and 504; exponential backoff with full jitter, ``Retry-After``
honoured up to ``backoff_max``. A POST is never repeated: the first attempt may have
taken effect.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from saasfw.app._breaker import CircuitBreaker
from saasfw.app._errors import CircuitOpenError, UnknownServiceError
from saasfw.app._inject import Provided
from saasfw.app._part import Part
from saasfw.app._problem import problem_response
from saasfw.app._settings import ClientSettings, ServiceSettings

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CircuitBreaker",
    "ServiceClient",
    "ServiceClients",
    "service_clients",
    "wire_clients",
]

_log = logging.getLogger("saasfw.app.clients")

M = TypeVar("M", bound=BaseModel)


class ServiceClient:
    """One downstream service: an ``httpx.AsyncClient`` plus typed JSON helpers.

    Subclass it for a typed client of your own::

        class BillingClient(ServiceClient):
            async def invoice(self, order_id: str) -> Invoice:
                return await self.get_model(f"/invoices/{order_id}", Invoice)
    """

    def __init__(
        self,
        name: str,
        settings: ClientSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        tracer_provider: Any = None,
        correlation_header: str | None = "X-Request-ID",
    ) -> None:
        # httpx and the transports only once a client is made: a service without downstream
        # clients does not import them at start-up.
        import httpx

        from saasfw.app._transport import ResilientTransport
        from saasfw.observability import TracingTransport

        self.name = name
        self.settings = settings
        self.breaker = CircuitBreaker(
            name, failures=settings.breaker_failures, reset=settings.breaker_reset
        )
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        inner = transport or httpx.AsyncHTTPTransport(limits=limits)
        traced = TracingTransport(
            inner, tracer_provider=tracer_provider, correlation_header=correlation_header
        )
        headers: dict[str, str] = {}
        if settings.api_key is not None:
            headers["X-API-Key"] = settings.api_key.get_secret_value()
        if settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"
        self.http = httpx.AsyncClient(
            base_url=settings.base_url,
            transport=ResilientTransport(traced, settings, self.breaker),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            headers=headers,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ServiceClient({self.name!r}, base_url={self.settings.base_url!r})"

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request (retried when idempotent); the response is not status-checked."""
        return await self.http.request(method, url, **kwargs)

    async def get_model(self, url: str, model: type[M], **kwargs: Any) -> M:
        """GET ``url`` and validate the JSON body as ``model`` (raises on 4xx/5xx)."""
        response = await self.http.get(url, **kwargs)
        response.raise_for_status()
        return model.model_validate_json(response.content)

    async def send_model(
        self, method: str, url: str, body: BaseModel, model: type[M], **kwargs: Any
    ) -> M:
        """Send ``body`` as JSON and validate the JSON answer as ``model``."""
        response = await self.http.request(
            method,
            url,
            content=body.model_dump_json(),
            headers={"Content-Type": "application/json"},
            **kwargs,
        )
        response.raise_for_status()
        return model.model_validate_json(response.content)

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()


class ServiceClients:
    """The registry of downstream services named in settings (``clients.<name>``)."""

    def __init__(self, clients: Mapping[str, ServiceClient]) -> None:
        self._clients = dict(clients)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, ClientSettings], *, tracer_provider: Any = None
    ) -> ServiceClients:
        """One :class:`ServiceClient` per configured service."""
        return cls(
            {
                name: ServiceClient(name, cfg, tracer_provider=tracer_provider)
                for name, cfg in settings.items()
            }
        )

    def __contains__(self, name: object) -> bool:
        return name in self._clients

    def names(self) -> list[str]:
        """The configured service names."""
        return sorted(self._clients)

    def get(self, name: str) -> ServiceClient:
        """The client of ``name``; :class:`UnknownServiceError` names the missing setting."""
        try:
            return self._clients[name]
        except KeyError:
            raise UnknownServiceError(name, self.names()) from None

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[ServiceClients]:
        """Open for the app's lifetime; closed at shutdown."""
        try:
            yield self
        finally:
            await self.aclose()


service_clients: Provided[ServiceClients] = Provided("service_clients")
"""The downstream services as a dependency: ``clients.get("billing")``."""


async def _circuit_open(request: Request, exc: Exception) -> Response:
    """A downstream's circuit is open: 503 with the seconds until it is tried again."""
    service = exc.service if isinstance(exc, CircuitOpenError) else "a dependency"
    retry_after = exc.retry_after if isinstance(exc, CircuitOpenError) else 1.0
    return problem_response(
        503,
        detail=f"A service this request needs ({service}) is unavailable; retry later.",
        instance=request.url.path,
        headers={"Retry-After": str(round(retry_after))},
    )


def wire_clients(settings: ServiceSettings, *, tracer_provider: Any = None) -> Part[ServiceClients]:
    """The downstream clients of ``settings.clients`` as a part (closed at shutdown)."""
    clients = ServiceClients.from_settings(settings.clients, tracer_provider=tracer_provider)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await clients.aclose()

    def handlers(app: FastAPI) -> None:
        app.add_exception_handler(CircuitOpenError, _circuit_open)

    setup = (handlers,) if settings.components.problem_details else ()
    return Part(
        "clients",
        clients,
        provides=((service_clients, clients),),
        lifespan=lifespan,
        budget=2.0,
        setup=setup,
    )
