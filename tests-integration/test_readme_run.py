"""The root README's run command really serves the orders example."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from conftest import ServerProcess


def test_readme_run_command_serves_the_orders_example(readme_server: ServerProcess) -> None:
    ready = httpx.get(f"{readme_server.base_url}/health/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["status"] == "UP"
    openapi = httpx.get(f"{readme_server.base_url}/openapi.json", timeout=5).json()
    assert openapi["info"]["title"] == "Orders service"
    assert {"/orders", "/orders/{order_id}", "/auth/login"} <= set(openapi["paths"])
