"""The CloudEvents envelope and its HMAC signatures: round trips, tampering, rotation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from saasfw.messaging import (
    CloudEvent,
    EventRejected,
    EventSigner,
    EventVerifier,
    SignatureError,
    parse_event,
)

KEY_1 = SecretStr("k1-" + "a" * 40)
KEY_2 = SecretStr("k2-" + "b" * 40)
SOURCE = "/services/orders"


class OrderCreated(BaseModel):
    order_id: str
    total_cents: int
    note: str = ""


texts = st.text(max_size=40)
optional_ids = st.none() | st.text(min_size=1, max_size=40)


@st.composite
def events(draw: st.DrawFn) -> CloudEvent:
    payload = OrderCreated(
        order_id=draw(st.text(min_size=1, max_size=20)),
        total_cents=draw(st.integers(-(2**53), 2**53)),
        note=draw(texts),
    )
    return CloudEvent.create(
        "orders.order.created.v1",
        payload,
        subject=draw(optional_ids),
        tenant=draw(optional_ids),
        actor=draw(optional_ids),
        correlationid=draw(optional_ids),
        partitionkey=draw(optional_ids),
        sequence=draw(st.none() | st.integers(1, 2**62)),
    )


@settings(max_examples=200)
@given(event=events())
def test_signed_event_round_trips_through_json_and_verifies(event: CloudEvent) -> None:
    signed = EventSigner(SOURCE, "k1", KEY_1).sign(event)
    received = parse_event(signed.to_json().encode())
    assert received == signed
    verified = EventVerifier({SOURCE: {"k1": KEY_1}}).verify(received)
    assert OrderCreated.model_validate(verified.data).model_dump() == event.data


@settings(max_examples=200)
@given(
    event=events(),
    field=st.sampled_from(["tenant", "actor", "sequence", "data", "type", "subject", "id"]),
)
def test_any_altered_attribute_fails_verification(event: CloudEvent, field: str) -> None:
    signed = EventSigner(SOURCE, "k1", KEY_1).sign(event)
    altered_value: object = {
        "tenant": (signed.tenant or "") + "x",
        "actor": (signed.actor or "") + "x",
        "sequence": (signed.sequence or 0) + 1,
        "data": {**signed.data, "total_cents": signed.data["total_cents"] + 1},
        "type": "orders.order.deleted.v1",
        "subject": (signed.subject or "") + "x",
        "id": signed.id + "x",
    }[field]
    altered = CloudEvent.model_validate({**signed.model_dump(), field: altered_value})
    with pytest.raises(SignatureError) as caught:
        EventVerifier({SOURCE: {"k1": KEY_1}}).verify(altered)
    assert caught.value.reason == "mismatch"


def test_rotation_accepts_every_listed_key_and_refuses_removed_ones() -> None:
    event = CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="1", total_cents=1))
    old = EventSigner(SOURCE, "k1", KEY_1).sign(event)
    new = EventSigner(SOURCE, "k2", KEY_2).sign(event)
    during = EventVerifier({SOURCE: {"k1": KEY_1, "k2": KEY_2}})
    assert during.verify(old) == old
    assert during.verify(new) == new
    after = EventVerifier({SOURCE: {"k2": KEY_2}})
    with pytest.raises(SignatureError) as caught:
        after.verify(old)
    assert caught.value.reason == "unknown-key"


def test_key_of_another_source_does_not_verify() -> None:
    event = CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="1", total_cents=1))
    forged = EventSigner("/services/billing", "k1", KEY_2).sign(event)
    forged = forged.model_copy(update={"source": SOURCE})
    with pytest.raises(SignatureError) as caught:
        EventVerifier({SOURCE: {"k1": KEY_1}, "/services/billing": {"k1": KEY_2}}).verify(forged)
    assert caught.value.reason == "mismatch"


def test_unsigned_event_is_refused() -> None:
    event = CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="1", total_cents=1))
    with pytest.raises(SignatureError) as caught:
        EventVerifier({SOURCE: {"k1": KEY_1}}).verify(event)
    assert caught.value.reason == "missing"


def test_keys_never_appear_in_reprs_or_errors() -> None:
    signer = EventSigner(SOURCE, "k1", KEY_1)
    verifier = EventVerifier({SOURCE: {"k1": KEY_1}})
    event = CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="1", total_cents=1))
    with pytest.raises(SignatureError) as caught:
        EventVerifier({SOURCE: {"k1": KEY_2}}).verify(signer.sign(event))
    secret = KEY_1.get_secret_value()
    for text in (repr(signer), repr(verifier), str(caught.value)):
        assert secret not in text
        assert KEY_2.get_secret_value() not in text


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        EventSigner(SOURCE, "k1", SecretStr("short"))
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        EventVerifier({SOURCE: {"k1": SecretStr("short")}})


@pytest.mark.parametrize(
    "name", ["orders.order.created", "Orders.order.created.v1", "created.v0", "orders..v1", "v1"]
)
def test_event_type_must_be_dotted_and_versioned(name: str) -> None:
    with pytest.raises(ValueError, match="ending in its version"):
        CloudEvent.create(name, OrderCreated(order_id="1", total_cents=1))


@given(body=st.binary(max_size=200))
def test_garbage_bodies_are_rejected_as_malformed(body: bytes) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_event(body)
    assert caught.value.reason == "malformed"
