"""MessagingSettings: secrets stay masked, helpers build signer and verifier, production rule."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from saasfw.messaging import (
    CloudEvent,
    MessagingError,
    MessagingSettings,
    messaging_production_problems,
)

KEY = "k" * 40


class Ping(BaseModel):
    n: int


def _safe() -> MessagingSettings:
    return MessagingSettings(
        kind="nats",
        broker_url=SecretStr("nats://nats.internal:4222"),
        source="/services/orders",
        signing_key_id="2026-12",
        signing_key=SecretStr(KEY),
        verification_keys={"/services/orders": {"2026-12": SecretStr(KEY)}},
    )


def test_secrets_never_show_in_repr_or_dump() -> None:
    settings = MessagingSettings(
        broker_url=SecretStr("amqp://svc:hunter2-password@rabbit:5672/"),
        signing_key=SecretStr(KEY),
        signing_key_id="k1",
    )
    for text in (repr(settings), settings.model_dump_json()):
        assert "hunter2" not in text
        assert KEY not in text


def test_signer_and_verifier_from_settings_round_trip() -> None:
    settings = _safe()
    event = settings.signer().sign(CloudEvent.create("ops.ping.sent.v1", Ping(n=1)))
    assert event.source == "/services/orders"
    assert settings.verifier().verify(event) == event


def test_signer_refuses_without_a_key() -> None:
    with pytest.raises(MessagingError, match="signing_key"):
        MessagingSettings().signer()


def test_safe_settings_have_no_production_problems() -> None:
    assert messaging_production_problems(_safe()) == []


def test_defaults_are_refused_in_production() -> None:
    problems = messaging_production_problems(MessagingSettings())
    assert any("signing_key" in p for p in problems)
    assert any("guest/guest" in p for p in problems)
    for problem in problems:
        assert "guest:guest" not in problem


def test_kind_and_url_scheme_must_agree() -> None:
    settings = _safe().model_copy(update={"kind": "rabbit"})
    assert any("scheme 'nats'" in p for p in messaging_production_problems(settings))


def test_nested_env_shape_validates() -> None:
    settings = MessagingSettings.model_validate(
        {"relay": {"batch_size": 50}, "dead_letter_attempts": 3, "kind": "rabbit"}
    )
    assert settings.relay.batch_size == 50
    with pytest.raises(ValueError, match="extra"):
        MessagingSettings.model_validate({"relay": {"batchsize": 50}})


def test_switching_broker_tls_verification_off_is_refused() -> None:
    verified = _safe().model_copy(
        update={"kind": "rabbit", "broker_url": SecretStr("amqps://svc:pw@rabbit:5671/")}
    )
    assert messaging_production_problems(verified) == []
    unverified = verified.model_copy(
        update={"broker_url": SecretStr("amqps://svc:pw@rabbit:5671/?no_verify_ssl=1")}
    )
    (problem,) = messaging_production_problems(unverified)
    assert "no_verify_ssl" in problem
    assert "pw" not in problem


def test_inbox_retention_must_outlive_the_redelivery_horizon() -> None:
    settings = MessagingSettings()
    assert settings.redelivery_horizon == (5 + 3) * 60.0 + 30.0
    with pytest.raises(ValueError, match="redelivery horizon"):
        MessagingSettings(inbox_retention=300.0)
    short = _safe().model_copy(update={"inbox_retention": 3600.0})
    assert any("inbox_retention is under a day" in p for p in messaging_production_problems(short))
