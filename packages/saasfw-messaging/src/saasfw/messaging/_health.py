"""Health checks for the broker connection and the relay, in the shape saasfw-k8s registers.

Each is an ``async () -> None`` that returns when healthy and raises
:class:`BrokerUnavailable` when not. Register them in a group that readiness does NOT
include: a broker outage makes the service degraded (the outbox holds the events), and no
replica should leave rotation for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from saasfw.core.outbox import OutboxRelay
from saasfw.messaging._errors import MessagingError

__all__ = ["BrokerUnavailable", "broker_check", "relay_check"]


class BrokerUnavailable(MessagingError):
    """The broker does not answer, or the relay keeps failing to deliver."""


class _Pingable(Protocol):
    async def ping(self, timeout: float | None) -> bool: ...  # noqa: ASYNC109 - FastStream's


def broker_check(broker: _Pingable, *, timeout: float = 2.0) -> Callable[[], Awaitable[None]]:
    """A check that the FastStream broker (RabbitMQ or NATS) answers within ``timeout``."""

    async def check() -> None:
        if not await broker.ping(timeout):
            raise BrokerUnavailable(f"the message broker did not answer within {timeout:.1f}s")

    return check


def relay_check(relay: OutboxRelay) -> Callable[[], Awaitable[None]]:
    """A check that the outbox relay is not failing (three rounds or deliveries in a row)."""

    async def check() -> None:
        if relay.state.degraded:
            raise BrokerUnavailable(
                f"the outbox relay failed {relay.state.consecutive_errors} times in a row; "
                "events wait in the outbox"
            )

    return check
