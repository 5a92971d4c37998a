"""One grpc.aio server interceptor for authentication, RBAC and rate limiting.

The interceptor wraps the real method handler instead of replacing it, so the generated
protobuf (de)serializers and the streaming shape are kept exactly. The checks run inside
the wrapped behaviour because only the servicer context knows the TLS peer
(``auth_context``) and can abort with a status. Each RPC runs in its own contextvars
context (grpc.aio's contract), so the principal set here is visible to the handler through
:func:`saasfw.security.get_current_principal` and never leaks to another call.

Methods are denied unless listed in the permission map: an entry maps a full method name
(``/package.Service/Method``) or a whole service (``/package.Service/*``) to the
permissions it needs, or to :data:`PUBLIC`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NoReturn, TypeAlias
from urllib.parse import unquote

import grpc
import grpc.aio

from saasfw.security._authenticator import API_KEY_HEADER, Authenticator
from saasfw.security._errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
)
from saasfw.security._events import SecurityEvent, SecurityEventType
from saasfw.security._principal import Principal, set_current_principal
from saasfw.security._proxies import parse_ip
from saasfw.security._ratelimit import RateLimiter, RateLimitPolicy
from saasfw.security._rbac import Permission

__all__ = ["PUBLIC", "GrpcSecurityInterceptor", "MethodPermissions"]


class _Public:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PUBLIC"


PUBLIC: Final = _Public()
"""Map a method to this to serve it without authentication (health checks, reflection)."""

MethodPermissions: TypeAlias = Mapping[str, Sequence[str] | _Public]

_Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _peer_scope(context: _Context) -> dict[str, Any]:
    """A minimal ASGI-like scope for the limiter: the peer address, no headers."""
    peer = unquote(context.peer() or "")
    kind, _, rest = peer.partition(":")
    host: str | None = None
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    address = parse_ip(host) if host else None
    return {
        "type": "grpc",
        "client": (str(address), 0) if address is not None else None,
        "headers": [],
    }


class GrpcSecurityInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticate, authorize and rate-limit every call of a grpc.aio server.

    Credentials, in order: ``authorization: Bearer <jwt>`` metadata, the API key metadata
    (``x-api-key``), then the verified client certificate of the TLS peer when the
    authenticator has an mTLS authenticator. Two credentials at once are refused.

    Status codes: unlisted method PERMISSION_DENIED; missing or invalid credentials
    UNAUTHENTICATED; missing permission PERMISSION_DENIED; limit used up
    RESOURCE_EXHAUSTED and storage down on a fail-closed policy UNAVAILABLE (both with
    ``retry-after`` trailing metadata).

    Args:
        authenticator: the same :class:`Authenticator` the HTTP side uses (verifiers, RBAC
            policy, security-events port).
        permissions: method or ``/package.Service/*`` to required permissions, or PUBLIC.
        rate_limiter: limiter for ``rate_limit`` and ``method_rate_limits``.
        rate_limit: policy applied to every call (counted per method).
        method_rate_limits: policies for particular methods, replacing ``rate_limit``.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        permissions: MethodPermissions,
        *,
        rate_limiter: RateLimiter | None = None,
        rate_limit: RateLimitPolicy | None = None,
        method_rate_limits: Mapping[str, RateLimitPolicy] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self._rules: dict[str, tuple[Permission, ...] | _Public] = {}
        for method, needed in permissions.items():
            if not method.startswith("/") or method.count("/") != 2:
                raise ConfigurationError(
                    f"gRPC method {method!r} must be '/package.Service/Method' or"
                    " '/package.Service/*'"
                )
            if isinstance(needed, _Public):
                self._rules[method] = needed
            elif isinstance(needed, str):
                raise ConfigurationError(
                    f"permissions of {method!r} must be a sequence of strings, not one string"
                )
            else:
                self._rules[method] = tuple(Permission.parse(p) for p in needed)
        if (rate_limit or method_rate_limits) and rate_limiter is None:
            raise ConfigurationError("gRPC rate limits need a rate_limiter")
        self.rate_limiter = rate_limiter
        self.rate_limit = rate_limit
        self.method_rate_limits = dict(method_rate_limits or {})
        self._api_key_header = API_KEY_HEADER.lower()

    def _rule(self, method: str) -> tuple[Permission, ...] | _Public | None:
        rule = self._rules.get(method)
        if rule is None:
            service = method.rsplit("/", 1)[0]
            rule = self._rules.get(service + "/*")
        return rule

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        return self._wrap(handler, method, self._rule(method))

    # -- the checks ------------------------------------------------------------------

    async def _abort(self, context: _Context, code: grpc.StatusCode, message: str) -> NoReturn:
        await context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    def _publish(self, event_type: str, outcome: str, context: _Context, **details: Any) -> None:
        scope = _peer_scope(context)
        principal: Principal | None = details.pop("principal", None)
        self.authenticator.events.publish(
            SecurityEvent(
                type=event_type,
                outcome=outcome,  # type: ignore[arg-type]
                principal_id=principal.id if principal else None,
                tenant=principal.tenant if principal else None,
                address=scope["client"][0] if scope["client"] else None,
                details=details,
            )
        )

    async def _authenticate(self, context: _Context) -> Principal | None:
        bearer: list[str] = []
        api_key: list[str] = []
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                bearer.append(value)
            elif key == self._api_key_header and isinstance(value, str):
                api_key.append(value.strip())
        if len(bearer) + len(api_key) > 1:
            raise AuthenticationError("present one credential, not several", code="auth.ambiguous")
        auth = self.authenticator
        if bearer:
            scheme, _, token = bearer[0].partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError(
                    "only Bearer authorization is accepted", code="auth.scheme"
                )
            if auth.jwt is None:
                raise AuthenticationError("bearer tokens are not accepted here", code="auth.scheme")
            return (await auth.jwt.verify(token.strip())).principal
        if api_key:
            if auth.api_keys is None:
                raise AuthenticationError("API keys are not accepted here", code="auth.scheme")
            return await auth.api_keys.verify(api_key[0])
        if auth.mtls is not None:
            peer = {name: list(values) for name, values in context.auth_context().items()}
            return auth.mtls.authenticate_grpc(peer)
        return None

    async def _admit(
        self, method: str, rule: tuple[Permission, ...] | _Public | None, context: _Context
    ) -> None:
        if rule is None:
            self._publish(
                SecurityEventType.ACCESS_DENIED, "denied", context, method=method, reason="unmapped"
            )
            await self._abort(
                context, grpc.StatusCode.PERMISSION_DENIED, "this method is not permitted"
            )
        principal: Principal | None = None
        if not isinstance(rule, _Public):
            try:
                principal = await self._authenticate(context)
            except AuthenticationError as exc:
                self._publish(
                    SecurityEventType.AUTH_FAILED,
                    "failure",
                    context,
                    method=method,
                    reason=exc.code,
                )
                await self._abort(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)
            if principal is None:
                self._publish(
                    SecurityEventType.AUTH_FAILED,
                    "failure",
                    context,
                    method=method,
                    reason="auth.required",
                )
                await self._abort(
                    context, grpc.StatusCode.UNAUTHENTICATED, "authentication is required"
                )
            try:
                self.authenticator.policy.check(principal, *rule)
            except PermissionDeniedError as exc:
                self._publish(
                    SecurityEventType.ACCESS_DENIED,
                    "denied",
                    context,
                    principal=principal,
                    method=method,
                    reason=exc.code,
                    permissions=[str(p) for p in rule],
                )
                await self._abort(context, grpc.StatusCode.PERMISSION_DENIED, exc.message)
        # Set before rate limiting so policies keyed by principal see it.
        set_current_principal(principal)
        policy = self.method_rate_limits.get(method, self.rate_limit)
        if policy is not None and self.rate_limiter is not None:
            decision = await self.rate_limiter.check(
                policy, _peer_scope(context), scope_name=method
            )
            if not decision.allowed:
                context.set_trailing_metadata((("retry-after", str(decision.retry_after)),))
                if decision.storage_failed:
                    await self._abort(
                        context, grpc.StatusCode.UNAVAILABLE, "rate limit cannot be checked now"
                    )
                await self._abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit exceeded; retry after {decision.retry_after}s",
                )

    # -- wrapping the real handler, serializers untouched -----------------------------

    def _wrap(
        self,
        handler: grpc.RpcMethodHandler,  # type: ignore[type-arg]
        method: str,
        rule: tuple[Permission, ...] | _Public | None,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        admit = self._admit
        h: Any = handler  # the behaviours' static types do not know grpc.aio contexts
        serializers: dict[str, Any] = {
            "request_deserializer": h.request_deserializer,
            "response_serializer": h.response_serializer,
        }
        if h.unary_unary is not None:
            unary_unary = h.unary_unary

            async def guarded_unary_unary(request: Any, context: _Context) -> Any:
                await admit(method, rule, context)
                return await _result(unary_unary(request, context))

            return grpc.unary_unary_rpc_method_handler(guarded_unary_unary, **serializers)
        if h.unary_stream is not None:
            unary_stream = h.unary_stream

            async def guarded_unary_stream(request: Any, context: _Context) -> AsyncIterator[Any]:
                await admit(method, rule, context)
                async for item in _stream(unary_stream(request, context)):
                    yield item

            return grpc.unary_stream_rpc_method_handler(guarded_unary_stream, **serializers)
        if h.stream_unary is not None:
            stream_unary = h.stream_unary

            async def guarded_stream_unary(requests: Any, context: _Context) -> Any:
                await admit(method, rule, context)
                return await _result(stream_unary(requests, context))

            return grpc.stream_unary_rpc_method_handler(guarded_stream_unary, **serializers)
        stream_stream = h.stream_stream

        async def guarded_stream_stream(requests: Any, context: _Context) -> AsyncIterator[Any]:
            await admit(method, rule, context)
            async for item in _stream(stream_stream(requests, context)):
                yield item

        return grpc.stream_stream_rpc_method_handler(guarded_stream_stream, **serializers)


async def _result(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _stream(value: Any) -> AsyncIterator[Any]:
    """Responses of a streaming behaviour: an async or sync iterator, or a coroutine that
    writes through ``context.write`` and returns nothing."""
    if hasattr(value, "__aiter__"):
        async for item in value:
            yield item
    elif inspect.isawaitable(value):
        await value
    elif value is not None:
        for item in value:
            yield item
