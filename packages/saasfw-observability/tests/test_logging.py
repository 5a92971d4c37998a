"""Logging: JSON or console, stdlib bridged, UTC timestamps, levels, redaction."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import structlog

from saasfw.observability import (
    LoggingSettings,
    ObservabilitySettings,
    Redactor,
    configure_logging,
)

UTC_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_structlog_and_stdlib_lines_share_the_json_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(ObservabilitySettings(environment="production"))
    structlog.get_logger("orders").info("placed", order_id=7)
    logging.getLogger("sqlalchemy.engine").warning("slow query %s", "select 1")
    logging.getLogger("uvicorn.error").info("Started server process")

    placed, slow, started = _lines(capsys.readouterr().out)
    assert placed == {
        "event": "placed",
        "order_id": 7,
        "level": "info",
        "logger": "orders",
        "timestamp": placed["timestamp"],
    }
    assert slow["event"] == "slow query select 1"
    assert slow["level"] == "warning"
    assert slow["logger"] == "sqlalchemy.engine"
    assert started["logger"] == "uvicorn.error"
    for line in (placed, slow, started):
        assert UTC_ISO.match(line["timestamp"]), line["timestamp"]


def test_uvicorn_handlers_are_replaced_so_lines_are_not_doubled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(logging.StreamHandler())
    uvicorn_logger.propagate = False
    configure_logging(ObservabilitySettings(environment="production"))
    logging.getLogger("uvicorn").info("hello")
    out = capsys.readouterr()
    assert [line["event"] for line in _lines(out.out)] == ["hello"]
    assert out.err == ""
    assert uvicorn_logger.handlers == []


def test_levels_apply_per_logger(capsys: pytest.CaptureFixture[str]) -> None:
    settings = ObservabilitySettings(
        environment="production",
        logging=LoggingSettings(level="WARNING", levels={"noisy": "ERROR", "chatty": "DEBUG"}),
    )
    configure_logging(settings)
    logging.getLogger("noisy").warning("dropped")
    logging.getLogger("noisy").error("kept 1")
    logging.getLogger("chatty").debug("kept 2")
    structlog.get_logger("other").info("dropped too")
    structlog.get_logger("other").warning("kept 3")
    assert [line["event"] for line in _lines(capsys.readouterr().out)] == [
        "kept 1",
        "kept 2",
        "kept 3",
    ]


def test_development_is_readable_console_output(capsys: pytest.CaptureFixture[str]) -> None:
    settings = ObservabilitySettings(environment="development")
    assert settings.log_format() == "console"
    configure_logging(settings)
    structlog.get_logger("orders").info("placed", order_id=7, password="hunter2")
    out = capsys.readouterr().out
    assert "placed" in out
    assert "order_id=7" in out
    assert "hunter2" not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_secrets_are_redacted_at_any_depth_in_both_paths(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(ObservabilitySettings(environment="production"))
    structlog.get_logger("auth").info(
        "login",
        user="ann",
        password="hunter2",
        headers={"Authorization": "Bearer abc", "Accept": "json", "Cookie": "sid=1"},
        attempts=[{"refresh_token": "r1", "ok": False}],
        db_password="pw",
        **{"x-api-key": "k-123"},
    )
    logging.getLogger("lib").info("call", extra={"client_secret": "s3", "user": "bob"})

    login, lib = _lines(capsys.readouterr().out)
    assert login["user"] == "ann"
    assert login["password"] == "[REDACTED]"
    assert login["db_password"] == "[REDACTED]"
    assert login["x-api-key"] == "[REDACTED]"
    assert login["headers"] == {
        "Authorization": "[REDACTED]",
        "Accept": "json",
        "Cookie": "[REDACTED]",
    }
    assert login["attempts"] == [{"refresh_token": "[REDACTED]", "ok": False}]
    assert lib["client_secret"] == "[REDACTED]"
    assert lib["user"] == "bob"


def test_exceptions_render_as_text_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ObservabilitySettings(environment="production"))
    try:
        raise ValueError("bad input")
    except ValueError:
        structlog.get_logger("x").exception("failed")
        logging.getLogger("y").exception("failed too")
    first, second = _lines(capsys.readouterr().out)
    assert "ValueError: bad input" in first["exception"]
    assert "ValueError: bad input" in second["exception"]


def test_redactor_without_keys_is_a_no_op() -> None:
    event = {"password": "x"}
    assert Redactor([])(None, "info", event) == {"password": "x"}
