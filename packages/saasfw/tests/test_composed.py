"""The cross-cutting pieces agree when composed: one route template, one problem writer."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi import APIRouter, Depends
from prometheus_client import CollectorRegistry

from saasfw.app import ServiceSettings, create_app
from saasfw.app._observability import observability_settings
from saasfw.audit import AuditSettings, FileSinkSettings
from saasfw.observability import ObservabilitySettings, setup_observability
from saasfw.security import public


def _nested_router() -> APIRouter:
    items = APIRouter(prefix="/items")

    @items.put("/{item_id}")
    async def replace(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(public)])
    v1.include_router(items)
    return v1


async def test_audit_access_log_and_metrics_name_the_same_full_template(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    access_file = tmp_path / "access.jsonl"
    settings = ServiceSettings(
        service="composed",
        env="test",
        data_dir=tmp_path,
        audit=AuditSettings(file=FileSinkSettings(path=audit_file)),
        observability=ObservabilitySettings.model_validate(
            {"access_log": {"file": str(access_file), "flush_interval": 0.05}}
        ),
    )
    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    app = create_app(settings, routers=[_nested_router()], observability=obs)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        assert (await client.put("/v1/items/42")).status_code == 200
        metrics = (await client.get("/metrics")).text
    template = "/v1/items/{item_id}"
    assert f'route="{template}"' in metrics
    access = [json.loads(line) for line in access_file.read_text().splitlines()]
    assert [line.get("route") for line in access if line.get("method") == "PUT"] == [template]
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    audited = [r for r in records if r.get("action") == "PUT"]
    assert len(audited) == 1
    assert json.dumps(audited[0]).count(template) >= 1
    assert '/items/{item_id}"' not in json.dumps(audited[0]).replace(template, "")


async def test_a_refused_audit_event_answers_503_with_retry_after(tmp_path: Path) -> None:
    from saasfw.audit import AuditUnavailableError

    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/orders")
    async def create() -> None:
        raise AuditUnavailableError("the disk is full", retry_after=2.4, sink="file")

    settings = ServiceSettings(service="composed", env="test", data_dir=tmp_path)
    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    app = create_app(settings, routers=[router], observability=obs)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        refused = await client.post("/orders")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "2"
    body = refused.json()
    assert body["code"] == "audit.unavailable"
    assert body["correlation_id"] == refused.headers["x-request-id"]
    assert "disk" not in refused.text  # the sink's own words stay in the log
