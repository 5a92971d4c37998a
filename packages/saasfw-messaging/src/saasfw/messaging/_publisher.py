"""Publishing: stage a signed event into the outbox inside the caller's unit of work.

The event is stored in the same transaction as the change it announces, so both commit or
neither does; a relay delivers it later. The per-key ``sequence`` is only known once the
outbox assigned it, and the signature must cover it, so the row is staged first and its
payload written, signed, in the same transaction right after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from saasfw.core import ActorIdProvider, CorrelationIdProvider, TenantProvider
from saasfw.core.outbox import OutboxTables, stage_message
from saasfw.messaging._envelope import CONTENT_TYPE, CloudEvent
from saasfw.messaging._signing import EventSigner

__all__ = ["Publisher"]

TraceparentProvider = Callable[[], str | None]
ModelT = TypeVar("ModelT", bound=BaseModel)


class Publisher:
    """Stage events for one source into one outbox.

    Args:
        tables: the outbox (``saasfw.core.outbox.outbox_tables``); the relay reads it.
        signer: signs every event with the service's current key; it also sets ``source``.
        actor, tenant, correlation_id, traceparent: ports read when an event does not set
            the attribute itself (``saasfw.app`` wires them to security and observability).
    """

    def __init__(
        self,
        tables: OutboxTables,
        signer: EventSigner,
        *,
        actor: ActorIdProvider | None = None,
        tenant: TenantProvider | None = None,
        correlation_id: CorrelationIdProvider | None = None,
        traceparent: TraceparentProvider | None = None,
    ) -> None:
        self.tables = tables
        self.signer = signer
        self.declared: dict[str, type[BaseModel]] = {}
        self._providers: dict[str, Callable[[], str | None] | None] = {
            "actor": actor,
            "tenant": tenant,
            "correlationid": correlation_id,
            "traceparent": traceparent,
        }

    def declare(self, type: str, model: type[ModelT]) -> type[ModelT]:
        """Declare that this service publishes ``type`` with payload ``model``.

        The AsyncAPI document lists declared events (``asyncapi_document(publishes=
        publisher.declared)``); publishing does not require it.
        """
        CloudEvent.model_validate(
            {"id": "x", "source": "x", "type": type, "time": "x", "data": {}}
        )  # the type naming rule, with the envelope's own message
        self.declared[type] = model
        return model

    def _with_context(self, event: CloudEvent, key: str) -> CloudEvent:
        update_: dict[str, object] = {"partitionkey": key}
        for attribute, provider in self._providers.items():
            if getattr(event, attribute) is None and provider is not None:
                update_[attribute] = provider()
        return event.model_copy(update=update_)

    async def publish(
        self, session: AsyncSession | AsyncConnection, event: CloudEvent, *, key: str
    ) -> CloudEvent:
        """Stage ``event`` for ordering key ``key`` in ``session``'s open transaction.

        Events with one key are delivered in the order their transactions commit. Returns
        the event as it will be delivered (source, sequence and signature set). Nothing is
        sent before the caller commits; a rollback discards the event with the change.
        """
        event = self._with_context(event, key)
        staged = await stage_message(
            self.tables,
            session,
            key=key,
            type=event.type,
            payload="",
            headers={"content-type": CONTENT_TYPE},
            message_id=event.id,
        )
        signed = self.signer.sign(event.model_copy(update={"sequence": staged.sequence}))
        conn = await session.connection() if isinstance(session, AsyncSession) else session
        messages = self.tables.messages
        await conn.execute(
            update(messages)
            .where(messages.c.message_id == staged.message_id)
            .values(payload=signed.to_json())
        )
        return signed
