import tomllib
from pathlib import Path

import saasfw.app


def test_public_surface_is_pinned_and_sorted() -> None:
    # ruff's RUF022 order: constants, then classes, then functions, each sorted.
    assert saasfw.app.__all__ == [
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


def test_every_public_name_resolves() -> None:
    for name in saasfw.app.__all__:
        assert getattr(saasfw.app, name) is not None


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.app.__version__ == project["project"]["version"]
