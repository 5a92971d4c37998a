"""The README's operations samples run as written: saved as the file they name, then run."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

README = Path(__file__).parents[1] / "README.md"


def sample(filename: str) -> str:
    """The python block whose first line is ``# <filename>``."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL):
        if block.startswith(f"# {filename}\n"):
            return str(block)
    raise AssertionError(f"the README has no python block for {filename}")


def command() -> list[str]:
    script = Path(sys.executable).parent / "saasfw-messaging"
    return [str(script)] if script.exists() else [sys.executable, "-m", "saasfw.messaging"]


def test_the_asyncapi_sample_serves_and_exports_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orders_events.py").write_text(sample("orders_events.py"))
    shell = re.search(r"saasfw-messaging (asyncapi --app \S+)", README.read_text())
    assert shell is not None
    exported = subprocess.run(
        [*command(), *shell.group(1).split()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    ApplicationSchema.model_validate(document)
    assert set(document["operations"]) == {
        "send_orders_order_created_v1",
        "receive_payments_payment_settled_v1",
    }
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("orders_events")

    async def fetch() -> dict[str, object]:
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return dict((await client.get("/asyncapi.json")).json())

    assert asyncio.run(fetch()) == document
    sys.modules.pop("orders_events", None)


def test_the_jobs_sample_runs_each_job_once(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(sample("jobs.py"))
    ran = subprocess.run(
        [sys.executable, "jobs.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert sorted(ran.stdout.splitlines()) == [
        "daily-digest: succeeded",
        "inbox-cleanup:saasfw_messaging_inbox: succeeded",
        "outbox-cleanup:saasfw_messaging_outbox: succeeded",
    ]


@pytest.mark.rabbitmq
async def test_the_billing_sample_starts_answers_and_drains(
    rabbitmq_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("prometheus_client", exc_type=ImportError)
    pytest.importorskip("opentelemetry.sdk", exc_type=ImportError)
    suffix = uuid.uuid4().hex[:10]
    monkeypatch.setenv("BROKER_URL", rabbitmq_url)
    monkeypatch.setenv("EVENTS_EXCHANGE", f"saasfw-readme-{suffix}")
    monkeypatch.setenv("BILLING_QUEUE", f"saasfw-readme-{suffix}")
    (tmp_path / "billing_service.py").write_text(sample("billing_service.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("billing_service")
    try:
        app = module.app
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/health/broker")
            assert response.status_code == 200
            assert response.json() == {"status": "UP"}
        assert (tmp_path / "billing.db").is_file()
    finally:
        sys.modules.pop("billing_service", None)
        logging.getLogger("billing").removeHandler(module.log_handler)
