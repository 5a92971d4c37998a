"""The README's five-minute tour runs as written (so the docs cannot drift)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_the_readme_tour_runs_and_fails_closed() -> None:
    if not README.exists():
        pytest.skip("README.md is not shipped next to the tests here")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    module = types.ModuleType("readme_tour")
    sys.modules["readme_tour"] = module  # FastAPI resolves annotations via the module
    try:
        exec(compile(blocks[0], str(README), "exec"), module.__dict__)  # noqa: S102
        app = module.__dict__["app"]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/status")).json() == {"ok": "yes"}
            refused = await client.post("/tenants/acme/orders")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == 'Bearer realm="api"'
        async with module.__dict__["security_lifespan"](app):
            pass  # every route declares its security
    finally:
        del sys.modules["readme_tour"]
