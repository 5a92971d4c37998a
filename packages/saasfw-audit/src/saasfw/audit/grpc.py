"""gRPC (``grpc.aio``) server interceptor that audits every call; needs ``saasfw-audit[grpc]``.

Usage::

    from saasfw.audit.grpc import AuditServerInterceptor
    server = grpc.aio.server(interceptors=[auth_interceptor, AuditServerInterceptor(logger)])

Put it after the authentication interceptor: the actor comes from the logger's actor port,
read when the handler has finished, never from request metadata.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from saasfw.audit._errors import MissingExtraError
from saasfw.audit._event import Actor, Resource
from saasfw.audit._logger import AuditLogger

try:
    import grpc
    import grpc.aio
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("grpc", "grpcio") from exc

__all__ = ["AuditServerInterceptor"]

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic only in the type stubs
    _Interceptor = grpc.aio.ServerInterceptor

_DENIED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class AuditServerInterceptor(_Interceptor):
    """Records one ``grpc.call`` event per RPC: method, status code, duration, actor.

    Args:
        logger: the audit logger.
        include: which full method names (``/pkg.Service/Method``) to audit (default: all).
        event_type: the event type recorded.
    """

    def __init__(
        self,
        logger: AuditLogger,
        *,
        include: Callable[[str], bool] | None = None,
        event_type: str = "grpc.call",
    ) -> None:
        self._logger = logger
        self._include = include or (lambda _method: True)
        self._type = event_type

    async def _record(
        self, method: str, context: Any, start: float, error: BaseException | None
    ) -> None:
        code = context.code()
        if code is None or isinstance(code, int):
            code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
        lg = self._logger
        actor = lg._actor() if lg._actor is not None else None
        peer = context.peer() if hasattr(context, "peer") else None
        if actor is None:
            actor = Actor("anonymous", kind="anonymous", address=peer)
        outcome = (
            "success" if code == grpc.StatusCode.OK else "denied" if code in _DENIED else "failure"
        )
        await lg.arecord(
            self._type,
            action=method.rsplit("/", 1)[-1],
            outcome=outcome,
            actor=actor,
            resource=Resource("grpc_method", method),
            details={
                "method": method,
                "code": code.name,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            },
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self._include(method):
            return handler
        record = self._record

        def wrap_unary(inner: Callable[..., Any]) -> Callable[..., Any]:
            async def call(request: Any, context: Any) -> Any:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    return await inner(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    await record(method, context, start, error)

            return call

        def wrap_stream(inner: Callable[..., Any]) -> Callable[..., Any]:
            async def call(request: Any, context: Any) -> AsyncIterator[Any]:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    await record(method, context, start, error)

            return call

        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **kw)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **kw)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), **kw)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), **kw)
        return handler
