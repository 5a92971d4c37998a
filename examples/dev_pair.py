"""Development launcher: orders-service and projections-service in one process, no broker.

Run from the repository root::

    python3 -m uv run --frozen python examples/dev_pair.py

orders-service serves on http://127.0.0.1:8000 and projections-service on
http://127.0.0.1:8001 (``--orders-port`` / ``--projections-port``, or the variables
``ORDERS_PORT`` / ``PROJECTIONS_PORT``, move them). Both use the
in-process memory bus (``messaging.kind: memory``, named by ``messaging.destination``), so
an order created on one shows in the other's customer totals a moment later; nothing
leaves the process and nothing survives it. Ctrl-C (or SIGTERM) stops both gracefully.

The two services must trust each other's keys: orders signs its events and issues the
access tokens projections accepts. The launcher keeps one pair of random development keys
in ``<data_dir>/dev-pair-keys.json`` (mode 0600) and gives each service its side. It runs
only in ``development`` and ``test``: production refuses the memory transport anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from orders_service._app import CONFIG_DIR as ORDERS_CONFIG
from orders_service._app import SERVICE as ORDERS
from orders_service._app import build_app as build_orders
from orders_service._settings import OrdersSettings
from projections_service._app import CONFIG_DIR as PROJECTIONS_CONFIG
from projections_service._app import SERVICE as PROJECTIONS
from projections_service._app import build_app as build_projections
from projections_service._settings import ProjectionsSettings

from saasfw.app import load_settings
from saasfw.config import ConfigError

KEY_ID = "dev-pair"
DEV_ENVIRONMENTS = ("development", "test")


def pair_keys(data_dir: Path) -> dict[str, str]:
    """The pair's development keys, made once (random, 32 bytes, base64) and kept."""
    path = data_dir / "dev-pair-keys.json"
    if path.exists():
        keys: dict[str, str] = json.loads(path.read_text("utf-8"))
        return keys
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in ("jwt", "sign")}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(keys, file)
    return keys


def pair_environments(
    base: dict[str, str], keys: dict[str, str], orders_port: int, projections_port: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Each service's environment: the shared one plus its port, keys and messaging on."""
    shared = {k: v for k, v in base.items() if k != "SAASFW_CONFIG_DIR"}
    shared.setdefault("SAASFW_ENV", "development")
    orders = {
        **shared,
        "SAASFW_HTTP__PORT": str(orders_port),
        "SAASFW_COMPONENTS__MESSAGING": "true",
        "SAASFW_SECURITY__JWT__HMAC_SECRET": keys["jwt"],
        "SAASFW_MESSAGING__SIGNING_KEY_ID": KEY_ID,
        "SAASFW_MESSAGING__SIGNING_KEY": keys["sign"],
    }
    projections = {
        **shared,
        "SAASFW_HTTP__PORT": str(projections_port),
        # Two apps in one process share prometheus-client's global registry, where the
        # messaging metrics can be registered once: orders-service keeps them.
        "SAASFW_OBSERVABILITY__METRICS__ENABLED": "false",
        "SAASFW_SECURITY__JWT__HMAC_SECRET": keys["jwt"],
        "SAASFW_MESSAGING__VERIFICATION_KEYS": json.dumps(
            {f"/services/{ORDERS}": {KEY_ID: keys["sign"]}}
        ),
    }
    return orders, projections


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to the launcher (two servers, one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: Any, port: int, host: str) -> _Server:
    return _Server(uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None))


async def run_pair(orders_env: dict[str, str], projections_env: dict[str, str]) -> None:
    """Serve both until SIGINT or SIGTERM, then stop both (each drains its own work)."""
    orders = load_settings(
        OrdersSettings, service=ORDERS, config_dir=str(ORDERS_CONFIG), environ=orders_env
    ).settings
    projections = load_settings(
        ProjectionsSettings,
        service=PROJECTIONS,
        config_dir=str(PROJECTIONS_CONFIG),
        environ=projections_env,
    ).settings
    if orders.env not in DEV_ENVIRONMENTS:
        raise SystemExit(f"dev_pair runs in development or test only, not {orders.env!r}")
    servers = [
        _server(build_orders(orders), orders.http.port, orders.http.host),
        _server(build_projections(projections), projections.http.port, projections.http.host),
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    print(
        f"orders-service on http://{orders.http.host}:{orders.http.port}, "
        f"projections-service on http://{projections.http.host}:{projections.http.port} "
        "(one process, in-process event bus; Ctrl-C stops both)",
        flush=True,
    )
    # One after the other: each runs its Alembic migrations at start-up, and Alembic's
    # migration context is process-wide.
    tasks: list[asyncio.Task[None]] = []
    for server in servers:
        tasks.append(asyncio.create_task(server.serve()))
        while not server.started and not tasks[-1].done():  # noqa: ASYNC110 - uvicorn sets a flag
            await asyncio.sleep(0.05)
        if tasks[-1].done():
            stop()
            break
    await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> int:
    """Parse the ports, prepare the keys, serve both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders-port", type=int, default=int(os.environ.get("ORDERS_PORT", 8000)))
    parser.add_argument(
        "--projections-port", type=int, default=int(os.environ.get("PROJECTIONS_PORT", 8001))
    )
    args = parser.parse_args(argv)
    data_dir = Path(os.environ.get("SAASFW_DATA_DIR", "var"))
    keys = pair_keys(data_dir)
    orders_env, projections_env = pair_environments(
        dict(os.environ), keys, args.orders_port, args.projections_port
    )
    try:
        asyncio.run(run_pair(orders_env, projections_env))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 78
    return 0


if __name__ == "__main__":
    sys.exit(main())
