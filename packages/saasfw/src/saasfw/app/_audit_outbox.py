"""Wiring saasfw.audit's outbox: transactional audit, on by default with audit and database.

A mutation stages its audit event in its own transaction (``AuditTrail`` in a route, or
``audit_outbox``): the change and its event are committed together, or neither. The relay
runs in the lifespan of every replica (saasfw.core's outbox claims by ordering key, so one
relay at a time owns a producer's events) and hands each event to the audit logger, which
writes it to every sink. ``AuditLogger.record()`` stays for events that have no
transaction (logins, denials).
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from saasfw.app._audit import audit_logger
from saasfw.app._db import database
from saasfw.app._inject import Provided, singletons_of
from saasfw.app._part import Part
from saasfw.app._settings import ServiceSettings
from saasfw.audit import AuditLogger, AuditOutbox
from saasfw.core import create_missing_tables
from saasfw.core.outbox import OutboxRelay
from saasfw.db import Database

__all__ = ["AuditTrail", "audit_outbox", "run_audit_outbox", "wire_audit_outbox"]

audit_outbox: Provided[AuditOutbox] = Provided("audit_outbox")
"""The service's :class:`~saasfw.audit.AuditOutbox` as a dependency (lifespan singleton)."""


def _outbox_or_none(request: Request) -> AuditOutbox | None:
    store = singletons_of(request.app)
    return store.get(audit_outbox) if store.has(audit_outbox) else None


AuditTrail = Annotated[AuditOutbox | None, Depends(_outbox_or_none)]
"""The request's transactional audit: ``await trail.stage(session, "order.created", ...)``
in the unit of work, last before the commit (None when audit or the database is off)."""

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
    logger = store.get(audit_logger)
    outbox = AuditOutbox(logger, max_depth=max_depth, max_age=max_age)
    engine = store.get(database).engine
    await _create_tables(outbox, engine)
    # One delivery waits up to the logger's durable timeout: the lease must outlast it.
    relay_options.setdefault("lease_seconds", max(30.0, 2 * logger.durable_timeout))
    relay = outbox.relay(engine, **relay_options)
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


async def _create_tables(outbox: AuditOutbox, engine: Any) -> None:
    """Create the outbox tables when missing (a service's migrations may already have).

    Replicas starting together serialise on an advisory lock (PostgreSQL), so no two
    race on ``CREATE TABLE``.
    """
    tables = outbox.tables
    lock = f"saasfw-outbox:{tables.messages.name}"
    await create_missing_tables(engine, lock, tables.messages, tables.keys, tables.leases)


def wire_audit_outbox(
    settings: ServiceSettings, logger: AuditLogger | None, db: Database | None
) -> Part[None] | None:
    """Transactional audit as a part, when audit, the database and ``audit.outbox`` are on.

    Entered after the logger and the database, so at shutdown it drains (for up to
    ``audit.outbox.drain_timeout`` seconds) before the logger is flushed and closed.
    """
    section = settings.audit.outbox
    if logger is None or db is None or not section.enabled:
        return None

    def lifespan(app: FastAPI) -> Any:
        return run_audit_outbox(
            app,
            max_depth=section.max_depth,
            max_age=section.max_age,
            drain_timeout=section.drain_timeout,
        )

    return Part("audit_outbox", None, lifespan=lifespan, budget=section.drain_timeout + 1.0)
