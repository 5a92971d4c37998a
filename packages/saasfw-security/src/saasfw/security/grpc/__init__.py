"""gRPC (grpc.aio) server security: authentication, RBAC, rate limiting, TLS-only servers.

Needs the ``[grpc]`` extra; importing this package without it raises
:class:`saasfw.security.MissingExtraError` (an ``ImportError``) naming the extra.
"""

from saasfw.security._errors import MissingExtraError

try:
    import grpc
    import grpc.aio  # noqa: F401
except ImportError:
    raise MissingExtraError("saasfw.security.grpc", "grpc") from None

from saasfw.security.grpc._interceptors import (
    PUBLIC,
    GrpcSecurityInterceptor,
    MethodPermissions,
)
from saasfw.security.grpc._server import (
    GrpcServerSettings,
    build_grpc_server,
    grpc_production_problems,
    load_server_credentials,
)

__all__ = [
    "PUBLIC",
    "GrpcSecurityInterceptor",
    "GrpcServerSettings",
    "MethodPermissions",
    "build_grpc_server",
    "grpc_production_problems",
    "load_server_credentials",
]
