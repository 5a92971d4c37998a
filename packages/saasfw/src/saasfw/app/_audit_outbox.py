"""Wiring saasfw.audit's outbox: the service's AuditOutbox and its relay, for one lifespan.

``create_app`` starts the audit logger and the database; a service that stages audit
events in its transactions enters :func:`run_audit_outbox` in its own lifespan, which
builds the :class:`~saasfw.audit.AuditOutbox` on the service database, runs its relay
until shutdown (before the logger is flushed and closed) and exposes the outbox as the
``audit_outbox`` dependency.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from saasfw.app._audit import audit_logger
from saasfw.app._db import database
from saasfw.app._inject import Provided, singletons_of
from saasfw.audit import AuditOutbox
from saasfw.core.outbox import OutboxRelay

__all__ = ["audit_outbox", "run_audit_outbox"]

audit_outbox: Provided[AuditOutbox] = Provided("audit_outbox")
"""The service's :class:`~saasfw.audit.AuditOutbox` as a dependency (lifespan singleton)."""

_log = logging.getLogger("saasfw.app")


@asynccontextmanager
async def run_audit_outbox(
    app: FastAPI,
    *,
    max_depth: int = 100_000,
    max_age: float = 300.0,
    drain_timeout: float = 5.0,
    **relay_options: Any,
) -> AsyncIterator[AuditOutbox]:
    """Build the outbox on the service database and run its relay while the block is open.

    The outbox tables (``saasfw_audit_outbox``, ``_keys``, ``_leases``) belong to the
    service's migrations. Past ``max_depth`` waiting events, or once the oldest waited
    ``max_age`` seconds, staging raises ``AuditUnavailableError`` (503 with Retry-After).
    At shutdown the relay delivers what is still waiting, for up to ``drain_timeout``
    seconds, before the logger is flushed (what is left is delivered by the next start or
    another replica). ``relay_options`` go to :class:`saasfw.core.outbox.OutboxRelay`.
    """
    store = singletons_of(app)
    outbox = AuditOutbox(store.get(audit_logger), max_depth=max_depth, max_age=max_age)
    relay = outbox.relay(store.get(database).engine, **relay_options)
    async with relay:
        store.put(audit_outbox, outbox)
        try:
            yield outbox
        finally:
            store.remove(audit_outbox)
    await _drain(relay, drain_timeout)


async def _drain(relay: OutboxRelay, seconds: float) -> None:
    """Deliver what waits until nothing is left or ``seconds`` passed (the loop is stopped)."""
    try:
        async with asyncio.timeout(seconds):
            while await relay.run_once():
                pass
    except TimeoutError:
        _log.warning("audit outbox not drained within %.0fs; the next start delivers it", seconds)
    except Exception as exc:  # the database may be going away too: the rows stay staged
        _log.warning("audit outbox drain at shutdown failed (%s); rows stay staged", exc)
