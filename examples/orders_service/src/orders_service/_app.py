"""The orders service application factory."""

from __future__ import annotations

from fastapi import FastAPI

from orders_service._settings import OrdersSettings
from saasfw.app import create_app, load_settings

__all__ = ["build_app", "load"]

SERVICE = "orders-service"


def load() -> OrdersSettings:
    """The service's settings from its environment."""
    return load_settings(OrdersSettings, service=SERVICE)


def build_app(settings: OrdersSettings | None = None) -> FastAPI:
    """Compose the orders service (also the uvicorn ``--factory`` target)."""
    settings = settings or load()
    return create_app(settings, title="Orders service")
