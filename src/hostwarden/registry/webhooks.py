"""The change feed in: HMAC-signed webhooks from billing systems and panels."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from hostwarden.core.runtime import Actor, Operation, Runtime
from hostwarden.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from hostwarden.registry.models import WebhookDelivery, WebhookSource

SIGNATURE_HEADER = "X-Hostwarden-Signature"
#: How far a signature's timestamp may be from now, against replayed requests.
TOLERANCE_SECONDS = 300
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,99}$")
_SECRET_FIELD = "webhook.secret"  # noqa: S105  (the vault field name, not a secret)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender computes: ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
    ``<t>.<raw body>``. Binding the time into the MAC stops replays of old requests."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            macs.append(value)
    if timestamp is None or not macs:
        raise AuthenticationFailed(
            f"the {SIGNATURE_HEADER} header is malformed.",
            hint="Send t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>; see "
            "docs/webhooks.md.",
        )
    return timestamp, macs


def create_source(op: Operation, name: str, *, reason: str = "") -> tuple[WebhookSource, str]:
    """Register a sender; returns its secret once (stored encrypted, never shown again)."""
    clean = name.strip().lower()
    if not _NAME.match(clean):
        raise ValidationFailed(
            f"'{name}' is not a valid source name.",
            hint="Use 2–100 lower-case letters, digits, '.', '_' or '-'.",
        )
    if op.session.scalar(select(WebhookSource.id).where(WebhookSource.name == clean)):
        raise Conflict(f"a webhook source named '{clean}' exists.", hint="Rotate its secret.")
    secret = secrets.token_urlsafe(32)
    source = WebhookSource(name=clean, secret_enc=op.runtime.vault.encrypt(_SECRET_FIELD, secret))
    op.session.add(source)
    op.session.flush()
    op.audit(
        "webhook_source.create", "webhook_source", source.id, after={"name": clean}, reason=reason
    )
    return source, secret


def rotate_secret(op: Operation, name: str, *, reason: str = "") -> str:
    source = get_source(op.session, name)
    secret = secrets.token_urlsafe(32)
    source.secret_enc = op.runtime.vault.encrypt(_SECRET_FIELD, secret)
    op.audit("webhook_source.rotate", "webhook_source", source.id, reason=reason)
    return secret


def set_active(op: Operation, name: str, active: bool, *, reason: str = "") -> WebhookSource:
    source = get_source(op.session, name)
    if source.is_active != active:
        source.is_active = active
        op.audit(
            "webhook_source.enable" if active else "webhook_source.disable",
            "webhook_source",
            source.id,
            after={"active": active},
            reason=reason,
        )
    return source


def get_source(session: Any, name: str) -> WebhookSource:
    source = session.scalar(select(WebhookSource).where(WebhookSource.name == name))
    if source is None:
        raise NotFound(
            f"no webhook source named '{name}'.",
            hint="Create it with `hostwarden webhook source-add`.",
        )
    return source  # type: ignore[no-any-return]


def list_sources(session: Any) -> list[WebhookSource]:
    return list(session.scalars(select(WebhookSource).order_by(WebhookSource.name)))


def verify(
    runtime: Runtime, name: str, header: str, body: bytes, *, now: float | None = None
) -> int:
    """Check a delivery's signature; returns the source id or raises AuthenticationFailed
    (unknown or disabled source, malformed header, stale time, wrong MAC)."""
    timestamp, macs = _parse_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise AuthenticationFailed(
            f"the signature's time is {int(current - timestamp)} s away from now.",
            hint=f"Sign with the current time; at most {TOLERANCE_SECONDS} s of clock skew "
            "is accepted.",
        )
    with runtime.reading() as session:
        source = session.scalar(select(WebhookSource).where(WebhookSource.name == name))
        if source is None or not source.is_active:
            raise AuthenticationFailed(f"webhook source '{name}' is unknown or disabled.")
        secret = runtime.vault.decrypt(_SECRET_FIELD, source.secret_enc)
        source_id = source.id
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise AuthenticationFailed(
            "the webhook signature does not match.",
            hint="Sign the raw request body with the source's current secret.",
        )
    return source_id


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    data: dict[str, Any]


def parse_event(body: bytes) -> Event:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ValidationFailed(
            f"the body is not JSON: {exc}.", hint="Send one JSON object per request."
        ) from exc
    if not isinstance(payload, dict):
        raise ValidationFailed("the body must be a JSON object.")
    event_id, event_type, data = payload.get("id"), payload.get("type"), payload.get("data")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 100:
        raise ValidationFailed(
            "'id' must be a non-empty string of at most 100 characters.",
            hint="Use the sender's unique event id; repeats are ignored.",
        )
    if not isinstance(event_type, str) or not isinstance(data, dict):
        raise ValidationFailed("'type' must be a string and 'data' an object.")
    return Event(event_id, event_type, data)


Handler = Callable[[Operation, dict[str, Any]], dict[str, Any]]


def deliver(
    runtime: Runtime, actor: Actor, source_id: int, event: Event, handlers: dict[str, Handler]
) -> dict[str, Any]:
    """Apply one verified event exactly once. A repeated event id answers with the first
    outcome and changes nothing; a failing event changes nothing and may be sent again."""
    with runtime.reading() as session:
        seen = session.scalar(
            select(WebhookDelivery).where(
                WebhookDelivery.source_id == source_id, WebhookDelivery.event_id == event.event_id
            )
        )
        if seen is not None:
            return {"status": seen.status, "duplicate": True, "detail": json.loads(seen.detail)}
    handler = handlers.get(event.event_type)
    if handler is None:
        known = ", ".join(sorted(handlers))
        raise ValidationFailed(
            f"unknown event type '{event.event_type}'.", hint=f"Known types: {known}."
        )
    with runtime.operation(actor) as op:
        result = handler(op, event.data)
        op.session.add(
            WebhookDelivery(
                source_id=source_id,
                event_id=event.event_id,
                event_type=event.event_type,
                status="applied",
                detail=json.dumps(result, default=str),
            )
        )
    return {"status": "applied", "duplicate": False, "detail": result}
