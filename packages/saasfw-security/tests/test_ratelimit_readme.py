"""The rate-limit samples of the README run as written (so the docs cannot drift).

Each sample is the Python block of its README section, executed as a module the way a user
would paste it, then exercised: "Moving from slowapi" (memory storage, per-tenant keys and a
shared group) and "PostgreSQL storage" (against the test PostgreSQL).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _section_sample(heading: str) -> str:
    if not README.exists():
        pytest.skip("README.md is not shipped next to the tests here")
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n### {heading}\n")
    end = text.find("\n## ", start + 1)
    following = text.find("\n### ", start + 1)
    section = text[start : min(i for i in (end, following, len(text)) if i != -1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"expected one Python sample under {heading!r}"
    return str(blocks[0])


@pytest.fixture
def run_sample() -> Iterator[Any]:
    names: list[str] = []

    def run(heading: str) -> dict[str, Any]:
        name = f"readme_{len(names)}"
        module = types.ModuleType(name)
        sys.modules[name] = module  # FastAPI resolves annotations through the module
        names.append(name)
        exec(compile(_section_sample(heading), str(README), "exec"), module.__dict__)  # noqa: S102
        return module.__dict__

    yield run
    for name in names:
        del sys.modules[name]


async def test_the_slowapi_migration_sample_limits_per_tenant_and_per_group(
    run_sample: Any,
) -> None:
    sample = run_sample("Moving from slowapi")
    transport = httpx.ASGITransport(app=sample["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        acme = {"x-tenant-id": "acme"}
        answers = [await client.get("/search?q=x", headers=acme) for _ in range(11)]
        assert [a.status_code for a in answers] == [200] * 10 + [429]
        assert answers[0].json() == {"q": "x"}
        assert int(answers[-1].headers["retry-after"]) >= 1
        # Another tenant has its own budget; no tenant header counts by address.
        assert (await client.get("/search?q=x", headers={"x-tenant-id": "globex"})).is_success
        assert (await client.get("/search?q=x")).is_success
        exports = [(await client.get("/export")).status_code for _ in range(3)]
        assert exports == [200, 200, 429]
    await sample["limiter"].aclose()


@pytest.mark.postgres
async def test_the_postgresql_sample_counts_in_postgresql(
    run_sample: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("asyncpg")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from saasfw.security import RateLimitPolicy

    monkeypatch.setenv("RATE_LIMIT_DATABASE_URL", postgres_url)
    sample = run_sample("PostgreSQL storage (no Redis)")
    limiter = sample["limiter"]
    assert limiter.settings.uses_postgres_storage
    policy = RateLimitPolicy(name="readme", limits="2/minute", key="global")
    scope = {"type": "http", "client": ("192.0.2.1", 1), "headers": []}
    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        await limiter.health_check()
        decisions = [await limiter.check(policy, scope) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert not any(d.storage_failed for d in decisions)
        async with engine.connect() as conn:
            keys = (
                await conn.execute(text("SELECT key FROM rate_limits.saasfw_rate_limits"))
            ).all()
        assert any("/readme/" in key for (key,) in keys)
    finally:
        await limiter.aclose()
        # The sample's schema is this test's alone; nothing else uses it.
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS rate_limits CASCADE"))
        await engine.dispose()
