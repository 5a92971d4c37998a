"""The orders service application factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from orders_service._customers import router as customers_router
from orders_service._routes_admin import router as admin_router
from orders_service._routes_auth import build_auth_router
from orders_service._routes_orders import router as orders_router
from orders_service._settings import OrdersSettings
from orders_service._users import SEEDED_ENVIRONMENTS, UserDirectory
from orders_service.migrations import VERSIONS_DIR
from saasfw.app import (
    ServiceSettings,
    auth_components,
    create_app,
    database,
    load_settings,
    singletons_of,
)
from saasfw.config import LoadedSettings

__all__ = ["CONFIG_DIR", "SERVICE", "build_app", "load"]

SERVICE = "orders-service"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
"""The example's bundled configuration (``SAASFW_CONFIG_DIR`` points elsewhere)."""


def load() -> LoadedSettings[OrdersSettings]:
    """The service's settings: ``config/``, ``.env``, ``SAASFW_*`` variables, secret files.

    Without ``SAASFW_ENV`` the example runs in ``development`` (a deployment sets
    ``SAASFW_ENV=production``, which turns every production rule into a start-up refusal).
    """
    config_dir = os.environ.get("SAASFW_CONFIG_DIR", str(CONFIG_DIR))
    return load_settings(
        OrdersSettings, service=SERVICE, default_env="development", config_dir=config_dir
    )


def build_app(settings: ServiceSettings) -> FastAPI:
    """Compose the orders service from its settings."""
    if not isinstance(settings, OrdersSettings):
        raise TypeError("build_app needs OrdersSettings (see orders_service.load)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = singletons_of(app)
        db = store.get(database)
        # saasfw.app ran the migrations already (migrations=VERSIONS_DIR below; replicas
        # starting together wait on saasfw.db's advisory lock, so they run once).
        users = UserDirectory(db.engine)
        if settings.env in SEEDED_ENVIRONMENTS:
            await users.seed(settings.users)  # the demo users; existing rows are kept
        issuer = store.get(auth_components).issuer
        if issuer is not None:
            # Every refresh asks the users table: a disabled or deleted user cannot refresh
            # and a role change reaches the user's next tokens.
            issuer.subjects = users
        # The order mutations stage their audit events in their own transactions
        # (saasfw.app.AuditTrail); saasfw.app runs the relay that delivers them.
        yield

    return create_app(
        settings,
        routers=[build_auth_router(settings.limits), orders_router, admin_router, customers_router],
        lifespan=lifespan,
        migrations=VERSIONS_DIR,
        title="Orders service",
        description="A multi-tenant orders API composed with saasfw.",
    )
