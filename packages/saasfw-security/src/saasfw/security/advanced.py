"""saasfw.security.advanced: the pieces for wiring security by hand and extending it.

The ASGI middleware one by one, the FastAPI plumbing behind ``install_security``, the route
checks, the principal's context variable, the security-event types and the RBAC value
types. ``Authenticator``, ``install_security``, ``security_lifespan``,
``SecurityMiddleware``, ``TrustedProxies`` and ``SecurityEvents`` are also on
``saasfw.security``.
"""

from saasfw.security._authenticator import Authenticator
from saasfw.security._cors import CorsMiddleware
from saasfw.security._errors import MissingExtraError
from saasfw.security._events import (
    SecurityEvent,
    SecurityEventListener,
    SecurityEvents,
    SecurityEventType,
)
from saasfw.security._fastapi import SecurityContextMiddleware, install_security
from saasfw.security._headers import SecurityHeadersMiddleware
from saasfw.security._http_errors import SecurityHTTPException, security_problem_handler
from saasfw.security._limits import RequestLimitsMiddleware
from saasfw.security._principal import (
    AuthMethod,
    PrincipalKind,
    reset_current_principal,
    set_current_principal,
)
from saasfw.security._proxies import TrustedProxies
from saasfw.security._rbac import Permission, Role
from saasfw.security._routecheck import (
    assert_routes_secured,
    routes_without_security,
    security_lifespan,
)
from saasfw.security._stack import SecurityMiddleware

__all__ = [
    "AuthMethod",
    "Authenticator",
    "CorsMiddleware",
    "MissingExtraError",
    "Permission",
    "PrincipalKind",
    "RequestLimitsMiddleware",
    "Role",
    "SecurityContextMiddleware",
    "SecurityEvent",
    "SecurityEventListener",
    "SecurityEventType",
    "SecurityEvents",
    "SecurityHTTPException",
    "SecurityHeadersMiddleware",
    "SecurityMiddleware",
    "TrustedProxies",
    "assert_routes_secured",
    "install_security",
    "reset_current_principal",
    "routes_without_security",
    "security_lifespan",
    "security_problem_handler",
    "set_current_principal",
]
