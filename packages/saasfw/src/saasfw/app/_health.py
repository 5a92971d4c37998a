"""Health endpoints: liveness, readiness and startup, each a group of async checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

__all__ = ["HealthCheck", "HealthChecks", "HealthReport", "health_router"]

HealthCheck = Callable[[], Awaitable[None]]
Group = Literal["live", "ready", "startup"]


class CheckResult(BaseModel):
    """One check's outcome."""

    status: Literal["up", "down"]
    duration_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    """A group's outcome: ``up`` only when every check is up."""

    status: Literal["up", "down"]
    checks: dict[str, CheckResult]


class HealthChecks:
    """Named async checks (raise = down) in groups, plus the process's availability."""

    def __init__(self) -> None:
        self._checks: dict[str, tuple[HealthCheck, frozenset[str], float]] = {}
        self.started = False
        self.stopping = False

    def add(
        self,
        name: str,
        check: HealthCheck,
        *,
        groups: tuple[str, ...] = ("ready",),
        timeout: float = 2.0,
    ) -> None:
        """Register ``check`` under ``name`` for ``groups`` with a per-check ``timeout``."""
        self._checks[name] = (check, frozenset(groups), timeout)

    def mark_started(self) -> None:
        self.started = True

    def mark_stopping(self) -> None:
        self.stopping = True

    async def run(self, group: str) -> HealthReport:
        """Run the group's checks concurrently, each within its timeout."""
        selected = {n: c for n, c in self._checks.items() if group in c[1]}
        results = await asyncio.gather(*(self._one(c[0], c[2]) for c in selected.values()))
        by_name = dict(zip(selected, results, strict=True))
        if group in ("ready", "startup"):
            by_name["lifecycle"] = CheckResult(
                status="up" if self.started and not self.stopping else "down",
                duration_ms=0.0,
                error=None if self.started and not self.stopping else "not serving",
            )
        status: Literal["up", "down"] = (
            "up" if all(r.status == "up" for r in by_name.values()) else "down"
        )
        return HealthReport(status=status, checks=by_name)

    @staticmethod
    async def _one(check: HealthCheck, deadline: float) -> CheckResult:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(deadline):
                await check()
        except TimeoutError:
            error: str | None = f"no answer within {deadline:g}s"
        except Exception as exc:
            error = type(exc).__name__
        else:
            error = None
        return CheckResult(
            status="down" if error else "up",
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
            error=error,
        )


def health_router(checks: HealthChecks) -> APIRouter:
    """``/health/live``, ``/health/ready`` and ``/health/startup``: 200 when up, 503 when down."""
    router = APIRouter(prefix="/health", tags=["health"])

    def endpoint(group: Group) -> Callable[[], Awaitable[JSONResponse]]:
        async def probe() -> JSONResponse:
            report = await checks.run(group)
            return JSONResponse(
                report.model_dump(), status_code=200 if report.status == "up" else 503
            )

        return probe

    for group in ("live", "ready", "startup"):
        router.add_api_route(
            f"/{group}",
            endpoint(group),
            methods=["GET"],
            response_model=HealthReport,
            responses={503: {"model": HealthReport, "description": "Down"}},
            summary=f"{group} probe",
        )
    return router
