"""The service's AsyncAPI 3.0 document: the events it publishes and consumes, and their schemas.

Built from what the service registered, not from FastStream's broker introspection:
FastStream 0.7 generates AsyncAPI 2.6 and 3.0 from subscriber signatures, but saasfw's
subscribers receive the raw CloudEvents body, and the payload models live in
:meth:`Publisher.declare` and the consumer's handlers. Each event type is one channel (its
RabbitMQ routing key or NATS subject) with one message, whose payload schema is the
CloudEvents envelope with ``type`` fixed and ``data`` the pydantic model's JSON schema.
No credential of the broker URL reaches the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from saasfw.messaging._envelope import CONTENT_TYPE, CloudEvent
from saasfw.messaging._settings import MessagingSettings

__all__ = ["asyncapi_document", "asyncapi_router"]

_REF = "#/components/schemas/{model}"
_PROTOCOLS = {"amqp": "amqp", "amqps": "amqps", "nats": "nats", "tls": "nats"}


def _key(event_type: str) -> str:
    """A channel, operation and component key (AsyncAPI allows ``[A-Za-z0-9_-]``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", event_type)


def _server(settings: MessagingSettings) -> dict[str, Any]:
    url = urlsplit(settings.broker_url.get_secret_value())
    host = url.hostname or "localhost"
    if url.port:
        host = f"{host}:{url.port}"
    return {
        "host": host,  # never the user or password of the URL
        "pathname": url.path or "/",
        "protocol": _PROTOCOLS.get(url.scheme, url.scheme),
        "description": (
            f"RabbitMQ topic exchange {settings.destination!r}, routing key = event type"
            if settings.kind == "rabbit"
            else f"NATS JetStream, subject = {settings.destination}.<event type>"
        ),
    }


def _schemas(
    models: Iterable[type[BaseModel]],
) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    """JSON schemas of the envelope and every payload model, refs into components."""
    unique: list[type[BaseModel]] = list(dict.fromkeys([CloudEvent, *models]))
    refs, definitions = models_json_schema(
        [(model, "validation") for model in unique], ref_template=_REF
    )
    by_model: dict[type[BaseModel], str] = {
        model: refs[(model, "validation")]["$ref"] for model in unique
    }
    return by_model, dict(definitions.get("$defs", {}))


def _message(event_type: str, envelope_ref: str, data_ref: str) -> dict[str, Any]:
    return {
        "name": event_type,
        "title": event_type,
        "contentType": CONTENT_TYPE,
        "payload": {
            "allOf": [
                {"$ref": envelope_ref},
                {
                    "type": "object",
                    "properties": {"type": {"const": event_type}, "data": {"$ref": data_ref}},
                    "required": ["type", "data"],
                },
            ]
        },
    }


def asyncapi_document(
    *,
    title: str,
    version: str,
    publishes: Mapping[str, type[BaseModel]] | None = None,
    consumes: Mapping[str, type[BaseModel]] | None = None,
    settings: MessagingSettings | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of a service's events, as a JSON-ready dict.

    Args:
        title, version: the service's name and version.
        publishes: event type -> payload model (``Publisher.declared``).
        consumes: event type -> payload model (``EventConsumer.handled``).
        settings: where the events travel (broker kind, host, exchange or subject prefix).
    """
    settings = settings or MessagingSettings()
    publishes, consumes = dict(publishes or {}), dict(consumes or {})
    refs, definitions = _schemas([*publishes.values(), *consumes.values()])
    envelope_ref = refs[CloudEvent]
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for action, events in (("send", publishes), ("receive", consumes)):
        for event_type, model in sorted(events.items()):
            key = _key(event_type)
            address = (
                event_type if settings.kind == "rabbit" else f"{settings.destination}.{event_type}"
            )
            messages[key] = _message(event_type, envelope_ref, refs[model])
            channels[key] = {
                "address": address,
                "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            }
            operations[f"{action}_{key}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{key}"},
                "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
                "summary": f"{'publishes' if action == 'send' else 'consumes'} {event_type}",
            }
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "asyncapi": "3.0.0",
        "info": info,
        "defaultContentType": CONTENT_TYPE,
        "servers": {settings.kind: _server(settings)},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions},
    }


def asyncapi_router(
    document: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    *,
    path: str = "/asyncapi.json",
) -> Any:
    """A FastAPI ``APIRouter`` serving the document (or what a callable returns) at ``path``.

    Needs FastAPI (a service serving HTTP has it). The umbrella includes it with
    ``app.include_router(asyncapi_router(...))``.
    """
    try:
        from fastapi import APIRouter
        from fastapi.responses import JSONResponse
    except ImportError as exc:  # pragma: no cover - exercised by the isolation check
        raise ImportError("asyncapi_router needs FastAPI: pip install fastapi") from exc

    router = APIRouter()

    @router.get(path, include_in_schema=False)
    def asyncapi() -> JSONResponse:
        body = document() if callable(document) else document
        return JSONResponse(dict(body))

    return router
