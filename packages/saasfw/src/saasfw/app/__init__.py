"""saasfw.app: every saasfw concern composed into one FastAPI application."""

from saasfw.app._db import DbSession, database, db_session
from saasfw.app._factory import create_app, current_settings
from saasfw.app._inject import Provided, Singletons, singletons_of
from saasfw.app._load import load_settings
from saasfw.app._problem import (
    Problem,
    ProblemResponse,
    problem_response,
    problem_responses,
)
from saasfw.app._rules import production_rules
from saasfw.app._serve import serve
from saasfw.app._settings import ComponentSwitches, Environment, HttpSettings, ServiceSettings
from saasfw.app._version import __version__

__all__ = [
    "ComponentSwitches",
    "DbSession",
    "Environment",
    "HttpSettings",
    "Problem",
    "ProblemResponse",
    "Provided",
    "ServiceSettings",
    "Singletons",
    "__version__",
    "create_app",
    "current_settings",
    "database",
    "db_session",
    "load_settings",
    "problem_response",
    "problem_responses",
    "production_rules",
    "serve",
    "singletons_of",
]
