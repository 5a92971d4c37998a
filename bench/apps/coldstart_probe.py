"""One cold start in a fresh interpreter: ``python apps/coldstart_probe.py APP``.

Prints one JSON object: seconds to import the framework, seconds to build the app, seconds
for the app's start-up (its ASGI lifespan) and first request, and the resident memory
(VmRSS) and peak (VmHWM) once the first request has been answered.

- ``fastapi``: ``import fastapi``; a ``FastAPI()`` with one hello route.
- ``fastapi-sqla`` (informative): bare FastAPI plus the persistence the example uses,
  imported and built by hand: SQLAlchemy's asyncio engine on aiosqlite and Alembic's
  migration API; start-up opens a connection (``SELECT 1``).
- ``saasfw``: ``import saasfw.app``; the example orders service built by its own factory
  (``orders_service._app.load`` and ``build_app``), as ``orders-service`` builds it, on its
  embedded defaults (SQLite, migrations at start-up, audit to a local file) in a fresh
  data directory; the first request is ``GET /health/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

Message = dict[str, Any]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def _start_and_serve(app: Any, path: str) -> tuple[int, float, int]:
    """Run the lifespan start-up, serve ``path`` once; (status, seconds, VmRSS kB then)."""
    started_at = time.perf_counter()
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"start-up failed: {started}")
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    status = int(next(m["status"] for m in sent if m["type"] == "http.response.start"))
    elapsed = time.perf_counter() - started_at
    rss = _status_kb("VmRSS")
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await lifespan
    return status, elapsed, rss


def main(which: str) -> dict[str, float]:
    # Packages only development tools pull into the workspace environment (rich, via
    # bandit and schemathesis) are hidden, as in a production install: structlog imports
    # rich whenever it is importable.
    for name in filter(None, os.environ.get("BENCH_HIDE_MODULES", "").split(",")):
        sys.modules[name] = None  # type: ignore[assignment]
    c0 = time.process_time()
    t0 = time.perf_counter()
    if which == "fastapi":
        import fastapi

        t1 = time.perf_counter()
        app: Any = fastapi.FastAPI()

        @app.get("/")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

        path = "/"
    elif which == "fastapi-sqla":
        import alembic.command  # noqa: F401 - what a hand-assembled service imports to migrate
        import fastapi
        import sqlalchemy
        from sqlalchemy.ext.asyncio import create_async_engine

        t1 = time.perf_counter()
        engine = create_async_engine(f"sqlite+aiosqlite:///{os.environ['SAASFW_DATA_DIR']}/x.db")

        @contextlib.asynccontextmanager
        async def lifespan(_: Any) -> AsyncIterator[None]:
            async with engine.connect() as connection:
                await connection.execute(sqlalchemy.text("SELECT 1"))
            yield
            await engine.dispose()

        app = fastapi.FastAPI(lifespan=lifespan)

        @app.get("/")
        async def hello_db() -> dict[str, str]:
            return {"hello": "world"}

        path = "/"
    elif which == "saasfw":
        import saasfw.app  # noqa: F401 - the import being timed

        t1 = time.perf_counter()
        from orders_service._app import build_app, load

        app = build_app(load().settings)
        path = "/health/ready"
    else:
        raise SystemExit(f"unknown app {which!r}")
    t2 = time.perf_counter()
    c2 = time.process_time()
    rss_built = _status_kb("VmRSS")
    status, startup, rss = asyncio.run(_start_and_serve(app, path))
    if status != 200:
        raise SystemExit(f"{which}: GET {path} answered {status}")
    return {
        "import_s": t1 - t0,
        "build_s": t2 - t1,
        "import_build_cpu_s": c2 - c0,
        "startup_s": startup,
        "rss_built_kb": rss_built,
        "rss_kb": rss,
        "peak_rss_kb": _status_kb("VmHWM"),
    }


if __name__ == "__main__":
    result = main(sys.argv[1])
    sys.stdout.flush()
    print("COLDSTART " + json.dumps(result))
