"""The projections service's settings: the framework sections plus its own."""

from __future__ import annotations

from pydantic import Field

from saasfw.app import ServiceSettings

__all__ = ["ProjectionsSettings"]


class ProjectionsSettings(ServiceSettings):
    """Settings of the projections service (env: ``SAASFW_<SECTION>__<FIELD>``).

    The events come from ``orders_source`` (the orders service's CloudEvents ``source``);
    their signing keys are in ``messaging.verification_keys[orders_source]``.
    """

    orders_source: str = Field(
        default="/services/orders-service",
        min_length=1,
        description="the CloudEvents source of the orders events this service projects",
    )
    queue: str = Field(
        default="projections-service.customer-totals",
        min_length=1,
        description="the consumer's queue (RabbitMQ) or durable consumer (NATS JetStream)",
    )
