"""The orders service's settings: the framework sections plus its own."""

from __future__ import annotations

from saasfw.app import ServiceSettings

__all__ = ["OrdersSettings"]


class OrdersSettings(ServiceSettings):
    """Settings of the orders service (env: ``SAASFW_<SECTION>__<FIELD>``)."""
