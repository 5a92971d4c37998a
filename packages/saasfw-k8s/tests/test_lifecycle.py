"""Lifecycle: availability transitions, drain, ordered and bounded shutdown hooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from saasfw.k8s import (
    AvailabilityState,
    HealthProbeMiddleware,
    HealthRegistry,
    Lifecycle,
    LifecycleError,
    LifecycleSettings,
    running_lifecycles,
)


def _state(lifecycle: Lifecycle) -> AvailabilityState:
    return lifecycle.state


async def test_states_only_move_forward() -> None:
    lifecycle = Lifecycle()
    assert lifecycle.state is AvailabilityState.STARTING
    lifecycle.mark_ready()
    assert lifecycle.begin_drain() is True
    assert lifecycle.begin_drain() is False
    lifecycle.mark_ready()
    assert _state(lifecycle) is AvailabilityState.DRAINING


async def test_hooks_run_newest_first_and_a_failure_does_not_stop_the_rest() -> None:
    order: list[str] = []
    lifecycle = Lifecycle()

    def hook(name: str, fail: bool = False) -> Any:
        async def run() -> None:
            order.append(name)
            if fail:
                raise RuntimeError("secret detail")

        return run

    lifecycle.add_shutdown_hook("tracer-shutdown", hook("tracer"))
    lifecycle.add_shutdown_hook("database-close", hook("database", fail=True))
    lifecycle.add_shutdown_hook("audit-flush", hook("audit"))
    outcomes = await lifecycle.run_shutdown_hooks()
    assert order == ["audit", "database", "tracer"]
    assert [(o.name, o.ok, o.error) for o in outcomes] == [
        ("audit-flush", True, None),
        ("database-close", False, "RuntimeError"),
        ("tracer-shutdown", True, None),
    ]
    assert lifecycle.state is AvailabilityState.STOPPED


async def test_a_hanging_hook_is_cut_at_its_timeout_and_the_budget_bounds_all() -> None:
    lifecycle = Lifecycle(LifecycleSettings(shutdown_timeout_seconds=0.5))
    ran: list[str] = []

    async def hang() -> None:
        await asyncio.sleep(30)

    async def quick() -> None:
        ran.append("quick")

    lifecycle.add_shutdown_hook("last", quick)
    lifecycle.add_shutdown_hook("eats-budget", hang)
    lifecycle.add_shutdown_hook("own-timeout", hang, timeout=0.1)
    outcomes = {o.name: o for o in await lifecycle.run_shutdown_hooks()}
    assert outcomes["own-timeout"].error == "timed out after 0.1s"
    assert not outcomes["eats-budget"].ok
    assert outcomes["last"].error == "budget exhausted"
    assert ran == []


def test_hook_registration_errors() -> None:
    lifecycle = Lifecycle()

    async def noop() -> None:
        return None

    lifecycle.add_shutdown_hook("a", noop)
    with pytest.raises(LifecycleError, match="already registered"):
        lifecycle.add_shutdown_hook("a", noop)
    with pytest.raises(LifecycleError, match="> 0"):
        lifecycle.add_shutdown_hook("b", noop, timeout=0)
    lifecycle.begin_drain()
    with pytest.raises(LifecycleError, match="shutdown has begun"):
        lifecycle.add_shutdown_hook("c", noop)


async def test_drain_waits_for_in_flight_to_reach_zero() -> None:
    lifecycle = Lifecycle(LifecycleSettings(drain_poll_interval_seconds=0.01))
    lifecycle.mark_ready()
    in_flight = [3]

    async def finish() -> None:
        for _ in range(3):
            await asyncio.sleep(0.05)
            in_flight[0] -= 1

    finisher = asyncio.create_task(finish())
    assert await lifecycle.drain(lambda: in_flight[0]) is True
    assert in_flight[0] == 0
    assert lifecycle.state is AvailabilityState.DRAINING
    await finisher


async def test_drain_gives_up_at_its_timeout() -> None:
    lifecycle = Lifecycle(
        LifecycleSettings(drain_timeout_seconds=0.2, drain_poll_interval_seconds=0.01)
    )
    assert await lifecycle.drain(lambda: 1) is False


async def test_wrapped_lifespan_composes_with_the_users_own() -> None:
    events: list[str] = []
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append(f"own start while {lifecycle.state.value}")
        yield {"pool": "the-pool"}
        events.append(f"own stop while {lifecycle.state.value}")

    async def flush() -> None:
        events.append("hook")

    lifecycle.add_shutdown_hook("flush", flush)
    app = FastAPI(lifespan=lifecycle.wrap(own))
    app.add_middleware(HealthProbeMiddleware, registry=HealthRegistry(), lifecycle=lifecycle)

    async with app.router.lifespan_context(app) as state:
        assert lifecycle in running_lifecycles()
        assert lifecycle.state is AvailabilityState.READY
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert state == {"pool": "the-pool"}
            assert (await client.get("/health/ready")).status_code == 200
    assert events == ["own start while starting", "own stop while draining", "hook"]
    assert _state(lifecycle) is AvailabilityState.STOPPED
    assert lifecycle not in running_lifecycles()
    with pytest.raises(LifecycleError, match="runs one lifespan once"):
        async with lifecycle.lifespan(app):
            pass


async def test_hooks_run_even_when_startup_fails() -> None:
    lifecycle = Lifecycle()
    ran: list[str] = []

    @asynccontextmanager
    async def broken(app: object) -> AsyncIterator[None]:
        raise RuntimeError("cannot connect")
        yield

    async def close() -> None:
        ran.append("close")

    lifecycle.add_shutdown_hook("close", close)
    with pytest.raises(RuntimeError, match="cannot connect"):
        async with lifecycle.wrap(broken)(object()):
            pass
    assert ran == ["close"]
    assert lifecycle.state is AvailabilityState.STOPPED


def test_grace_period_covers_prestop_drain_hooks_and_margin() -> None:
    settings = LifecycleSettings(
        prestop_sleep_seconds=5,
        drain_timeout_seconds=20.5,
        shutdown_timeout_seconds=10,
        grace_margin_seconds=5,
    )
    assert settings.termination_grace_period_seconds == 5 + 21 + 10 + 5
