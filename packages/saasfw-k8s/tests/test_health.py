"""HealthRegistry: groups, per-check timeouts, caching and single-flight under probe storms."""

from __future__ import annotations

import asyncio

import pytest

from saasfw.k8s import HealthConfigError, HealthRegistry, Status


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A real async check that counts its runs and can be told to fail or hang."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.failure: Exception | None = None

    async def __call__(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure


async def test_standard_groups_exist_and_are_up_when_empty() -> None:
    registry = HealthRegistry()
    assert registry.groups == {"live", "ready", "startup"}
    for group in ("live", "ready", "startup"):
        report = await registry.check_group(group)
        assert report.status is Status.UP
        assert report.checks == ()


async def test_checks_default_to_readiness_never_liveness() -> None:
    registry = HealthRegistry()
    registry.add("db", Counting())
    assert registry.names("ready") == ["db"]
    assert registry.names("live") == []


async def test_custom_groups_are_created_by_naming_them() -> None:
    registry = HealthRegistry()
    registry.add("cache", Counting(), groups=("ready", "deep"))
    assert "deep" in registry.groups
    assert [r.name for r in (await registry.check_group("deep")).checks] == ["cache"]
    with pytest.raises(HealthConfigError):
        await registry.check_group("nope")


async def test_a_failing_check_reports_type_but_never_its_message() -> None:
    registry = HealthRegistry()
    check = Counting()
    check.failure = ConnectionRefusedError("postgresql://admin:hunter2@db:5432 refused")
    registry.add("db", check)
    report = await registry.check_group("ready")
    assert report.status is Status.DOWN
    (result,) = report.checks
    assert result.error == "ConnectionRefusedError"
    assert "hunter2" not in str(report.to_dict())


async def test_a_hanging_check_is_down_at_its_timeout() -> None:
    registry = HealthRegistry()
    registry.add("slow", Counting(delay=30.0), timeout=0.2)
    registry.add("fast", Counting())
    report = await registry.check_group("ready")
    assert report.status is Status.DOWN
    by_name = {r.name: r for r in report.checks}
    assert by_name["slow"].error == "timed out after 0.2s"
    assert by_name["slow"].duration_seconds < 5.0
    assert by_name["fast"].status is Status.UP


async def test_a_timeout_error_raised_by_the_check_is_not_called_our_timeout() -> None:
    registry = HealthRegistry()
    check = Counting()
    check.failure = TimeoutError("socket")
    registry.add("db", check, timeout=5.0)
    (result,) = (await registry.check_group("ready")).checks
    assert result.error == "TimeoutError"


async def test_results_are_cached_for_the_ttl_then_rerun() -> None:
    clock = Clock()
    registry = HealthRegistry(cache_ttl=1.0, clock=clock)
    check = Counting()
    registry.add("db", check)
    first = await registry.check_group("ready")
    second = await registry.check_group("ready")
    assert check.calls == 1
    assert not first.checks[0].cached
    assert second.checks[0].cached
    clock.now += 1.5
    await registry.check_group("ready")
    assert check.calls == 2


async def test_failures_are_cached_too_so_a_down_dependency_is_not_hammered() -> None:
    clock = Clock()
    registry = HealthRegistry(cache_ttl=5.0, clock=clock)
    check = Counting()
    check.failure = OSError("down")
    registry.add("db", check)
    for _ in range(10):
        assert (await registry.check_group("ready")).status is Status.DOWN
    assert check.calls == 1


async def test_a_probe_storm_shares_one_run() -> None:
    registry = HealthRegistry(cache_ttl=0.0)
    check = Counting(delay=0.2)
    registry.add("db", check, groups=("ready", "startup"))
    reports = await asyncio.gather(
        *(registry.check_group(g) for g in ["ready", "startup"] * 50), registry.check_all()
    )
    assert check.calls == 1
    assert all(r.status is Status.UP for r in reports)


async def test_a_cancelled_prober_does_not_cancel_the_shared_run() -> None:
    registry = HealthRegistry(cache_ttl=10.0)
    check = Counting(delay=0.2)
    registry.add("db", check)
    impatient = asyncio.create_task(registry.check_group("ready"))
    await asyncio.sleep(0.05)
    patient = asyncio.create_task(registry.check_group("ready"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    report = await patient
    assert report.status is Status.UP
    assert check.calls == 1


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Bad Name", {}),
        ("", {}),
        ("ok", {"groups": ()}),
        ("ok", {"groups": ("Not Valid",)}),
        ("ok", {"timeout": 0.0}),
        ("ok", {"timeout": -1.0}),
    ],
)
def test_invalid_registrations_are_refused(name: str, kwargs: dict[str, object]) -> None:
    registry = HealthRegistry()
    with pytest.raises(HealthConfigError):
        registry.add(name, Counting(), **kwargs)  # type: ignore[arg-type]


def test_duplicate_and_unknown_names_are_refused() -> None:
    registry = HealthRegistry()
    registry.add("db", Counting())
    with pytest.raises(HealthConfigError, match="already registered"):
        registry.add("db", Counting())
    registry.remove("db")
    with pytest.raises(HealthConfigError):
        registry.remove("db")


def test_registry_settings_are_validated() -> None:
    with pytest.raises(HealthConfigError):
        HealthRegistry(cache_ttl=-1.0)
    with pytest.raises(HealthConfigError):
        HealthRegistry(default_timeout=0.0)


def test_max_timeout_follows_the_registered_checks() -> None:
    registry = HealthRegistry(default_timeout=2.0)
    assert registry.max_timeout == 2.0
    registry.add("a", Counting(), timeout=4.5)
    assert registry.max_timeout == 4.5
