"""MessagingSettings: the package's section of the service settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["MessagingSettings", "RelaySettings"]


class RelaySettings(BaseModel):
    """Options of the outbox relay (see ``saasfw.core.outbox.OutboxRelay``)."""

    model_config = ConfigDict(extra="forbid")

    lease_seconds: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    max_keys: int = Field(default=16, ge=1, le=1_000)
    poll_interval: float = Field(default=0.5, gt=0)
    max_backoff: float = Field(default=30.0, gt=0)


class MessagingSettings(BaseModel):
    """Where events go and how they are signed, relayed and dead-lettered.

    ``broker_url`` is a secret (it may carry a password). ``signing_key`` signs this
    service's events under ``signing_key_id``; ``verification_keys`` maps each source this
    service consumes from (its own included, if it consumes its own events) to its key ids
    and keys, several during a rotation.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["rabbit", "nats"] = "rabbit"
    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    source: str = Field(default="/saasfw/service", min_length=1)
    destination: str = Field(
        default="saasfw.events",
        min_length=1,
        description="RabbitMQ topic exchange, or the NATS subject prefix and stream name",
    )
    outbox_table: str = "saasfw_messaging_outbox"
    inbox_table: str = "saasfw_messaging_inbox"
    relay: RelaySettings = Field(default_factory=RelaySettings)
    dead_letter_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff: float = Field(default=1.0, gt=0, description="first retry delay, seconds")
    retry_max_backoff: float = Field(default=60.0, gt=0)
    signing_key_id: str | None = None
    signing_key: SecretStr | None = None
    verification_keys: dict[str, dict[str, SecretStr]] = Field(default_factory=dict)
