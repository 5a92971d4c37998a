"""``orders-service erase <tenant> <e-mail>``: erase a customer's personal data from a shell.

For an operator (or a Kubernetes Job) acting on a data subject's request without an admin
login. It does what ``POST /admin/customers/erasure`` does, on the service's database
directly: deletes the customer's audit key in the shared key table (every replica stops
decrypting at once) and replaces the e-mail in the customer's orders (announcing
``orders.customer.erased.v1`` through the outbox when messaging is on). The erasure is audited
through the service's audit outbox: a running replica's relay writes it to the hash-chained
trail (this process never writes to a replica's log file itself).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orders_service._settings import OrdersSettings
    from saasfw.messaging import Publisher

__all__ = ["erase_main"]


async def _erase(settings: OrdersSettings, tenant: str, email: str, operator: str) -> str:
    import anyio.to_thread

    from orders_service._customers import customer_subject, scrub_customer_orders
    from saasfw.audit import (
        Actor,
        AuditLogger,
        AuditOutbox,
        ConsoleSink,
        Resource,
        build_subject_key_store,
    )
    from saasfw.db import Database

    keys = build_subject_key_store(settings.audit)
    if keys is None:
        raise SystemExit("audit.encryption.subject_keys is not set: nothing to erase")
    db = Database(settings.db, service=settings.service.replace("-", "_"))
    try:
        key_id = await anyio.to_thread.run_sync(keys.erase, customer_subject(tenant, email))
        events = _publisher(settings, tenant, operator)
        scrubbed = await scrub_customer_orders(db.engine, tenant, email, events)
        # Staged, never started: the logger only stamps the event for the outbox.
        stamp = AuditLogger([ConsoleSink()], producer_id=f"{settings.service}-erase-cli")
        outbox = AuditOutbox(stamp, key=f"{settings.service}-erase-cli")
        async with db.engine.begin() as connection:
            await outbox.stage(
                connection,
                "orders.customer.erased",
                action="erase",
                resource=Resource("customer", key_id or "-"),
                details={"key_id": key_id, "orders_scrubbed": scrubbed, "via": "cli"},
                actor=Actor(id=operator, kind="operator", tenant=tenant),
            )
    finally:
        close = getattr(keys, "close", None)
        if close is not None:
            await anyio.to_thread.run_sync(close)
        await db.close()
    return f"erased: key {key_id or '(none: the customer had no audit key)'}, {scrubbed} order(s)"


def _publisher(settings: OrdersSettings, tenant: str, operator: str) -> Publisher | None:
    """The service's publisher (its outbox and signing key), when messaging is on: the
    erasure is announced like the route's, relayed by a running replica."""
    if not settings.components.messaging:
        return None
    from saasfw.core.outbox import outbox_tables
    from saasfw.messaging import Publisher

    return Publisher(
        outbox_tables(settings.messaging.outbox_table),
        settings.messaging.signer(),
        actor=lambda: operator,
        tenant=lambda: tenant,
    )


def erase_main(argv: list[str]) -> int:
    """Parse ``<tenant> <customer e-mail>``, erase, print what was done; exit 0."""
    from orders_service._app import load
    from saasfw.app._effective import effective_settings
    from saasfw.config import ConfigError

    parser = argparse.ArgumentParser(
        prog="orders-service erase",
        description="Erase a customer's personal data (audit key and order e-mails).",
    )
    parser.add_argument("tenant", help="the tenant the customer belongs to, e.g. acme")
    parser.add_argument("customer_email", help="the customer's e-mail address")
    parser.add_argument(
        "--operator", default=getpass.getuser(), help="who asked (recorded as the actor)"
    )
    args = parser.parse_args(argv)
    try:
        loaded = load()
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 78
    settings = effective_settings(loaded.settings)
    from orders_service._settings import OrdersSettings

    if not isinstance(settings, OrdersSettings):  # load() builds OrdersSettings
        raise TypeError("orders-service settings expected")
    print(asyncio.run(_erase(settings, args.tenant, args.customer_email, args.operator)))
    return 0
