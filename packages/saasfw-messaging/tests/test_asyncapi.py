"""The AsyncAPI 3.0 document: accepted by FastStream's AsyncAPI 3.0 model, schemas from pydantic."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema
from pydantic import BaseModel, SecretStr

from saasfw.core.outbox import outbox_tables
from saasfw.messaging import (
    CloudEvent,
    EventSigner,
    MessagingSettings,
    Publisher,
    asyncapi_document,
    asyncapi_router,
)


class Address(BaseModel):
    city: str


class OrderCreated(BaseModel):
    order_id: str
    total_cents: int
    ship_to: Address


class PaymentSettled(BaseModel):
    order_id: str


def document(kind: str = "rabbit") -> dict[str, object]:
    url = "amqp://svc:s3cret@broker.internal:5672/prod" if kind == "rabbit" else "nats://n:4222"
    settings = MessagingSettings(kind=kind, broker_url=SecretStr(url), destination="shop")  # type: ignore[arg-type]
    return asyncapi_document(
        title="orders",
        version="1.2.0",
        publishes={"orders.order.created.v1": OrderCreated},
        consumes={"payments.payment.settled.v1": PaymentSettled},
        settings=settings,
        description="Orders and what they wait for",
    )


def test_the_document_is_asyncapi_3_with_each_event_and_its_schema() -> None:
    doc = document()
    ApplicationSchema.model_validate(doc)  # FastStream's AsyncAPI 3.0.0 model accepts it
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"] == {
        "rabbit": {
            "host": "broker.internal:5672",
            "pathname": "/prod",
            "protocol": "amqp",
            "description": "RabbitMQ topic exchange 'shop', routing key = event type",
        }
    }
    assert "s3cret" not in str(doc)
    channels = doc["channels"]
    assert channels["orders_order_created_v1"]["address"] == "orders.order.created.v1"
    operations = doc["operations"]
    assert operations["send_orders_order_created_v1"]["action"] == "send"
    assert operations["receive_payments_payment_settled_v1"]["action"] == "receive"
    components = doc["components"]
    message = components["messages"]["orders_order_created_v1"]
    assert message["contentType"] == "application/cloudevents+json"
    envelope, specific = message["payload"]["allOf"]
    assert envelope == {"$ref": "#/components/schemas/CloudEvent"}
    assert specific["properties"]["type"] == {"const": "orders.order.created.v1"}
    assert specific["properties"]["data"] == {"$ref": "#/components/schemas/OrderCreated"}
    schemas = components["schemas"]
    assert set(schemas) >= {"CloudEvent", "OrderCreated", "PaymentSettled", "Address"}
    assert schemas["OrderCreated"]["properties"]["ship_to"] == {
        "$ref": "#/components/schemas/Address"
    }
    assert {"traceparent", "correlationid", "sequence", "signature"} <= set(
        schemas["CloudEvent"]["properties"]
    )


def test_on_nats_channels_are_subjects() -> None:
    doc = document("nats")
    ApplicationSchema.model_validate(doc)
    assert doc["channels"]["orders_order_created_v1"]["address"] == "shop.orders.order.created.v1"
    assert doc["servers"]["nats"]["protocol"] == "nats"


def test_the_publisher_declares_what_it_publishes() -> None:
    signer = EventSigner("/services/orders", "k1", SecretStr("k" * 32))
    publisher = Publisher(outbox_tables(), signer)
    assert publisher.declare("orders.order.created.v1", OrderCreated) is OrderCreated
    assert publisher.declared == {"orders.order.created.v1": OrderCreated}
    with pytest.raises(ValueError, match="ending in its version"):
        publisher.declare("orders.created", OrderCreated)
    assert CloudEvent  # the envelope model is the one the schema names


async def test_the_router_serves_the_document() -> None:
    app = FastAPI()
    app.include_router(asyncapi_router(document))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.json() == document()
    assert "/asyncapi.json" not in app.openapi()["paths"]
