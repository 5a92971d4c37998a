"""The orders service application factory."""

from __future__ import annotations

from fastapi import FastAPI

from orders_service._settings import OrdersSettings
from saasfw.app import ServiceSettings, create_app, load_settings
from saasfw.config import LoadedSettings

__all__ = ["SERVICE", "build_app", "load"]

SERVICE = "orders-service"


def load() -> LoadedSettings[OrdersSettings]:
    """The service's settings: ``config/``, ``.env``, ``SAASFW_*`` variables, secret files.

    Without ``SAASFW_ENV`` the example runs in ``development`` (a deployment sets
    ``SAASFW_ENV=production``, which turns every production rule into a start-up refusal).
    """
    return load_settings(OrdersSettings, service=SERVICE, default_env="development")


def build_app(settings: ServiceSettings) -> FastAPI:
    """Compose the orders service from its settings."""
    return create_app(settings, title="Orders service")
