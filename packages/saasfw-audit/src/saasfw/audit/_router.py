"""FastAPI router factory for auditors: search and statistics, each query itself audited.

FastAPI is imported when the factory is called, so ``import saasfw.audit`` stays cheap.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from saasfw.audit._event import Actor
from saasfw.audit._logger import AuditLogger
from saasfw.audit._search import AuditQuery, AuditSearch, InvalidCursorError

if TYPE_CHECKING:
    from fastapi import APIRouter


@dataclass(frozen=True, slots=True)
class Auditor:
    """Who is querying: returned by the dependency the application passes to the factory.

    ``tenant`` confines every query; ``can_decrypt`` is the permission to see encrypted
    fields in clear (e.g. the ``audit:decrypt`` role of the verified principal).
    """

    id: str
    tenant: str
    can_decrypt: bool = False


def create_audit_router(
    search: AuditSearch,
    logger: AuditLogger,
    *,
    auditor: Callable[..., Any],
    prefix: str = "/audit",
    tags: list[str] | None = None,
) -> Any:
    """An ``APIRouter`` with ``GET {prefix}/events`` and ``GET {prefix}/stats``.

    Args:
        search: the search over the SQL sink.
        logger: records an ``audit.events.searched`` / ``audit.stats.read`` event per query,
            and ``audit.decrypt.denied`` when decryption is asked for without permission.
        auditor: a FastAPI dependency returning the verified :class:`Auditor` (it should
            raise 401/403 itself for callers who may not read audit data at all).
    """
    from typing import Annotated

    from fastapi import APIRouter, Depends

    router = APIRouter(prefix=prefix, tags=list(tags or ["audit"]))
    auditor_dep = Annotated[Auditor, Depends(auditor)]
    _add_search_route(router, search, logger, auditor_dep)
    _add_stats_route(router, search, logger, auditor_dep)
    return router


def _actor_of(who: Auditor) -> Actor:
    return Actor(who.id, kind="auditor", tenant=who.tenant)


def _add_search_route(
    router: "APIRouter", search: AuditSearch, logger: AuditLogger, AuditorDep: Any
) -> None:
    """``GET /events``: one page of the auditor's tenant's events, the query audited."""
    from typing import Annotated

    from fastapi import HTTPException, Query

    @router.get("/events", summary="Search audit events (newest first, keyset paginated)")
    async def search_events(
        who: AuditorDep,
        since: datetime | None = None,
        until: datetime | None = None,
        type: str | None = None,
        actor_id: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        correlation_id: str | None = None,
        outcome: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, description="clamped to 200")] = 50,
        decrypt: bool = False,
    ) -> dict[str, Any]:
        query = AuditQuery(
            since, until, type, actor_id, resource_type, resource_id, correlation_id, outcome
        )
        if decrypt and not who.can_decrypt:
            await logger.arecord(
                "audit.decrypt.denied",
                action="decrypt",
                outcome="denied",
                actor=_actor_of(who),
                details=query.as_details(),
            )
            raise HTTPException(403, "decrypting audit fields needs the decrypt permission")
        try:
            page = await search.search(
                tenant=who.tenant, query=query, cursor=cursor, limit=limit, decrypt=decrypt
            )
        except InvalidCursorError as exc:
            raise HTTPException(400, exc.detail) from None
        await logger.arecord(
            "audit.events.searched",
            action="search",
            actor=_actor_of(who),
            details={**query.as_details(), "decrypt": decrypt, "returned": len(page.items)},
        )
        return {"items": page.items, "next_cursor": page.next_cursor, "limit": page.limit}


def _add_stats_route(
    router: "APIRouter", search: AuditSearch, logger: AuditLogger, AuditorDep: Any
) -> None:
    """``GET /stats``: counts per time bucket, type and outcome, the read audited."""

    @router.get("/stats", summary="Counts per time bucket, type and outcome")
    async def stats(
        who: AuditorDep,
        since: datetime,
        until: datetime,
        bucket: Literal["hour", "day"] = "day",
    ) -> dict[str, Any]:
        counts = await search.counts(tenant=who.tenant, since=since, until=until, bucket=bucket)
        await logger.arecord(
            "audit.stats.read",
            action="read",
            actor=_actor_of(who),
            details={"since": since.isoformat(), "until": until.isoformat(), "bucket": bucket},
        )
        return {"buckets": counts}
