"""saasfw.app: every saasfw concern composed into one FastAPI application."""

from saasfw.app._audit import audit_logger
from saasfw.app._audit_outbox import AuditTrail, audit_outbox, run_audit_outbox
from saasfw.app._auth import AuthComponents, auth_components, security_events
from saasfw.app._cli_token import development_token
from saasfw.app._clients import CircuitBreaker, ServiceClient, ServiceClients, service_clients
from saasfw.app._db import DbSession, database, db_session
from saasfw.app._errors import AppError, CircuitOpenError, UnknownServiceError
from saasfw.app._factory import create_app, current_settings, health_registry, lifecycle
from saasfw.app._inject import Provided, Singletons, singletons_of
from saasfw.app._load import load_settings
from saasfw.app._messaging import EventHandlers, EventPublisher, Messaging, messaging
from saasfw.app._problem import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    ProblemResponse,
    problem_response,
    problem_responses,
)
from saasfw.app._rules import production_rules
from saasfw.app._serve import serve
from saasfw.app._settings import (
    ClientSettings,
    ComponentSwitches,
    DeploymentSettings,
    Environment,
    HttpSettings,
    OverrideSettings,
    ServiceSettings,
    TokenSettings,
)
from saasfw.app._version import __version__
from saasfw.core.jobs import Job, JobContext

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "AppError",
    "AuditTrail",
    "AuthComponents",
    "CircuitBreaker",
    "CircuitOpenError",
    "ClientSettings",
    "ComponentSwitches",
    "DbSession",
    "DeploymentSettings",
    "Environment",
    "EventHandlers",
    "EventPublisher",
    "HttpSettings",
    "Job",
    "JobContext",
    "Messaging",
    "OverrideSettings",
    "Problem",
    "ProblemResponse",
    "Provided",
    "ServiceClient",
    "ServiceClients",
    "ServiceSettings",
    "Singletons",
    "TokenSettings",
    "UnknownServiceError",
    "__version__",
    "audit_logger",
    "audit_outbox",
    "auth_components",
    "create_app",
    "current_settings",
    "database",
    "db_session",
    "development_token",
    "health_registry",
    "lifecycle",
    "load_settings",
    "messaging",
    "problem_response",
    "problem_responses",
    "production_rules",
    "run_audit_outbox",
    "security_events",
    "serve",
    "service_clients",
    "singletons_of",
]
