"""Inventory change feed: only correctly signed, fresh, first-time events are applied."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from hostwarden.core.runtime import Operation, Runtime, system_actor
from hostwarden.errors import AuthenticationFailed, Conflict, ValidationFailed
from hostwarden.registry import webhooks
from hostwarden.registry.models import MachineRoom, WebhookDelivery, WebhookSource


@pytest.fixture
def source(runtime: Runtime) -> str:
    with runtime.operation(system_actor("test")) as op:
        _, secret = webhooks.create_source(op, "billing", reason="billing pushes changes")
    return secret


def body_of(event_id: str = "evt-1", event_type: str = "room.created") -> bytes:
    return json.dumps({"id": event_id, "type": event_type, "data": {"name": "BJ-1"}}).encode()


def add_room(op: Operation, data: dict[str, Any]) -> dict[str, Any]:
    room = MachineRoom(name=data["name"])
    op.session.add(room)
    op.session.flush()
    op.audit("room.create", "machine_room", room.id, after={"name": room.name})
    return {"room_id": room.id}


HANDLERS = {"room.created": add_room}


def rooms(runtime: Runtime) -> int:
    with runtime.reading() as session:
        return session.scalar(select(func.count()).select_from(MachineRoom)) or 0


def test_the_secret_is_stored_encrypted_and_shown_once(runtime: Runtime, source: str) -> None:
    with runtime.reading() as session:
        row = session.scalar(select(WebhookSource))
    assert row is not None
    assert source.encode() not in row.secret_enc


def test_a_correctly_signed_event_is_applied_once(runtime: Runtime, source: str) -> None:
    body = body_of()
    header = webhooks.sign(source, body, int(time.time()))
    source_id = webhooks.verify(runtime, "billing", header, body)
    event = webhooks.parse_event(body)
    first = webhooks.deliver(runtime, system_actor("webhook"), source_id, event, HANDLERS)
    again = webhooks.deliver(runtime, system_actor("webhook"), source_id, event, HANDLERS)
    assert first["status"] == "applied"
    assert first["duplicate"] is False
    assert again["duplicate"] is True
    assert again["detail"] == first["detail"]
    assert rooms(runtime) == 1


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "malformed"),
        ("t=abc,v1=00", "malformed"),
        ("v1=00", "malformed"),
        ("t={now},v1=" + "0" * 64, "does not match"),
        ("t={old},v1=" + "0" * 64, "away from now"),
    ],
)
def test_bad_signatures_are_refused_with_the_reason(
    runtime: Runtime, source: str, header: str, message: str
) -> None:
    now = int(time.time())
    with pytest.raises(AuthenticationFailed, match=message):
        webhooks.verify(runtime, "billing", header.format(now=now, old=now - 3600), body_of())


def test_a_signature_over_another_body_is_refused(runtime: Runtime, source: str) -> None:
    header = webhooks.sign(source, body_of("evt-1"), int(time.time()))
    with pytest.raises(AuthenticationFailed, match="does not match"):
        webhooks.verify(runtime, "billing", header, body_of("evt-2"))


def test_a_rotated_secret_replaces_the_old_one(runtime: Runtime, source: str) -> None:
    with runtime.operation(system_actor("test")) as op:
        new = webhooks.rotate_secret(op, "billing", reason="leaked in a ticket")
    now = int(time.time())
    with pytest.raises(AuthenticationFailed):
        webhooks.verify(runtime, "billing", webhooks.sign(source, body_of(), now), body_of())
    assert webhooks.verify(runtime, "billing", webhooks.sign(new, body_of(), now), body_of())


def test_a_disabled_or_unknown_source_is_refused(runtime: Runtime, source: str) -> None:
    with runtime.operation(system_actor("test")) as op:
        webhooks.set_active(op, "billing", False, reason="contract ended")
    header = webhooks.sign(source, body_of(), int(time.time()))
    with pytest.raises(AuthenticationFailed, match="unknown or disabled"):
        webhooks.verify(runtime, "billing", header, body_of())
    with pytest.raises(AuthenticationFailed, match="unknown or disabled"):
        webhooks.verify(runtime, "panel", header, body_of())


def test_a_failing_event_changes_nothing_and_can_be_sent_again(
    runtime: Runtime, source: str
) -> None:
    def broken(op: Operation, data: dict[str, Any]) -> dict[str, Any]:
        add_room(op, data)
        raise ValidationFailed("instance 'vm-9' is unknown.")

    event = webhooks.parse_event(body_of())
    actor = system_actor("webhook")
    with pytest.raises(ValidationFailed):
        webhooks.deliver(runtime, actor, 1, event, {"room.created": broken})
    assert rooms(runtime) == 0
    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert webhooks.deliver(runtime, actor, 1, event, HANDLERS)["status"] == "applied"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"type": "x", "data": {}}', "'id'"),
        (b'{"id": "e", "type": 3, "data": {}}', "'type'"),
    ],
)
def test_malformed_events_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        webhooks.parse_event(body)


def test_unknown_event_types_are_refused_with_the_known_ones(runtime: Runtime) -> None:
    event = webhooks.parse_event(body_of(event_type="cat.adopted"))
    with pytest.raises(ValidationFailed, match=r"room\.created"):
        webhooks.deliver(runtime, system_actor("webhook"), 1, event, HANDLERS)


def test_source_names_are_checked_and_unique(runtime: Runtime, source: str) -> None:
    with runtime.operation(system_actor("test")) as op, pytest.raises(Conflict):
        webhooks.create_source(op, "billing")
    with runtime.operation(system_actor("test")) as op, pytest.raises(ValidationFailed):
        webhooks.create_source(op, "Billing System!")
