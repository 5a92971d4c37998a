"""MessagingSettings: the package's section of the service settings."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from saasfw.messaging._errors import MessagingError
from saasfw.messaging._signing import EventSigner, EventVerifier

__all__ = ["MessagingSettings", "RelaySettings", "messaging_production_problems"]

_SCHEMES = {"rabbit": {"amqp", "amqps"}, "nats": {"nats", "tls"}, "memory": {"memory"}}


class RelaySettings(BaseModel):
    """Options of the outbox relay (see ``saasfw.core.outbox.OutboxRelay``)."""

    model_config = ConfigDict(extra="forbid")

    lease_seconds: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    max_keys: int = Field(default=64, ge=1, le=1_000)
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

    kind: Literal["rabbit", "nats", "memory"] = "rabbit"
    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    source: str = Field(default="/saasfw/service", min_length=1)
    destination: str = Field(
        default="saasfw.events",
        min_length=1,
        description="RabbitMQ topic exchange, or the NATS subject prefix and stream name",
    )
    outbox_table: str = "saasfw_messaging_outbox"
    inbox_table: str = "saasfw_messaging_inbox"
    dead_letter_table: str = "saasfw_messaging_dead_letters"
    job_runs_table: str = "saasfw_job_runs"
    inbox_retention: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="seconds an inbox row is kept: longer than any redelivery or replay",
    )
    cleanup_interval: float = Field(
        default=3600.0, gt=0, description="period of the inbox and outbox cleanup jobs"
    )
    relay: RelaySettings = Field(default_factory=RelaySettings)
    dead_letter_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff: float = Field(default=1.0, gt=0, description="first retry delay, seconds")
    retry_max_backoff: float = Field(default=60.0, gt=0)
    signing_key_id: str | None = None
    signing_key: SecretStr | None = None
    verification_keys: dict[str, dict[str, SecretStr]] = Field(default_factory=dict)

    def signer(self) -> EventSigner:
        """The signer of this service's events; refuses when no signing key is configured."""
        if self.signing_key is None or not self.signing_key_id:
            raise MessagingError(
                "messaging.signing_key and messaging.signing_key_id must be set to publish: "
                "consumers refuse unsigned events (SAASFW_MESSAGING__SIGNING_KEY, or a "
                "secret file)"
            )
        return EventSigner(self.source, self.signing_key_id, self.signing_key)

    @model_validator(mode="after")
    def _retention_outlives_redelivery(self) -> MessagingSettings:
        horizon = self.redelivery_horizon
        if self.inbox_retention <= horizon:
            raise ValueError(
                f"inbox_retention ({self.inbox_retention:.0f} s) must exceed the broker's "
                f"redelivery horizon ({horizon:.0f} s: dead_letter_attempts + 3 deliveries "
                "spaced by retry_max_backoff, plus the relay's backoff); an event redelivered "
                "after its inbox row is gone runs again"
            )
        return self

    @property
    def redelivery_horizon(self) -> float:
        """The longest a redelivery of one event can come after its first processing.

        Retries (up to the broker's delivery limit, each at most ``retry_max_backoff``
        apart) plus the relay's own retry ceiling; outages and dead-letter replays come on
        top, which is why the default retention is days.
        """
        return (self.dead_letter_attempts + 3) * self.retry_max_backoff + self.relay.max_backoff

    def verifier(self) -> EventVerifier:
        """The verifier for every source in ``verification_keys``."""
        return EventVerifier(self.verification_keys)


def messaging_production_problems(settings: MessagingSettings) -> list[str]:
    """Production safety rule: what is unsafe in these settings (empty when fine)."""
    problems: list[str] = []
    if settings.signing_key is None or not settings.signing_key_id:
        problems.append(
            "signing_key / signing_key_id are not set: this service's events cannot be signed "
            "and every consumer will dead-letter them"
        )
    elif len(settings.signing_key.get_secret_value().encode()) < 32:
        problems.append("signing_key is shorter than 32 bytes")
    for source, keys in settings.verification_keys.items():
        for key_id, key in keys.items():
            if len(key.get_secret_value().encode()) < 32:
                problems.append(
                    f"verification key {key_id!r} of source {source!r} is shorter than 32 bytes"
                )
    if settings.kind == "memory":
        problems.append(
            "kind is memory: the in-process transport is for development only (events do "
            "not leave the process and are lost when it stops); use rabbit or nats"
        )
        return problems
    url = urlsplit(settings.broker_url.get_secret_value())
    if url.scheme not in _SCHEMES[settings.kind]:
        problems.append(
            f"broker_url has scheme {url.scheme!r} but kind is {settings.kind!r} "
            f"(expected one of {sorted(_SCHEMES[settings.kind])})"
        )
    if url.username == "guest" and url.password == "guest":  # noqa: S105  # nosec B105
        problems.append("broker_url uses RabbitMQ's default guest/guest credentials")
    if settings.inbox_retention < 86_400.0:
        problems.append(
            "inbox_retention is under a day: a redelivery or a dead-letter replay after the "
            "inbox row is pruned applies the event a second time"
        )
    query = {k.lower(): v[-1] for k, v in parse_qs(url.query).items()}
    if url.scheme == "amqps" and query.get("no_verify_ssl", "0") != "0":
        # aiormq's switch for encrypting without checking the broker's certificate.
        problems.append(
            "broker_url switches TLS certificate verification off (no_verify_ssl); "
            "drop the parameter and trust the broker's CA instead"
        )
    return problems
