"""Alert deliveries: to webhooks (signed like the change feed) and to syslog (RFC 5424),
through a queue in the database that is retried with backoff.

``enqueue`` writes one ``DetectDelivery`` per destination in the transaction that
creates or updates the alert; ``deliver_due`` (the scheduler's ``detect.deliver`` job, or
``hostwarden detect deliver``) sends what is due. A failed send is tried again after
``[detect] delivery_retry_seconds``, doubling up to an hour, until
``delivery_attempts`` tries; then the row stays with status ``failed`` and its last
error. Delivery is at least once: a receiver recognises a repeat by the event ``id``.

Webhook requests carry the same ``X-Hostwarden-Signature: t=<unix seconds>,v1=<hex>``
header as the change feed (``registry.webhooks.sign``: HMAC-SHA256 of ``"<t>.<body>"``),
so one verifier serves both directions (docs/webhooks.md). The time is that of the
attempt, so a retry an hour later still passes a receiver's freshness check.

Syslog lines are written here rather than through ``logging.handlers.SysLogHandler``:
that handler reports a failed send only to ``handleError`` (it prints and carries on),
so the queue could not know to try again; it frames TCP with a trailing NUL instead of
RFC 6587 octet counting; and it has no RFC 5424 header or structured data.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden import __version__
from hostwarden.core.config import Settings
from hostwarden.core.config_detect import DetectSettings
from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Runtime
from hostwarden.core.scheduler import JobSpec
from hostwarden.core.timeutil import as_utc, doubling_backoff, isoformat, utcnow
from hostwarden.detect.models import DetectDelivery
from hostwarden.registry.webhooks import SIGNATURE_HEADER, sign

log = get_logger("hostwarden.detect.delivery")

EVENT_TYPES = ("alert.created", "alert.updated")
EVENT_HEADER = "X-Hostwarden-Event"
DELIVERY_HEADER = "X-Hostwarden-Delivery"
#: Longest wait between two tries of one delivery.
MAX_BACKOFF_SECONDS = 3600
#: RFC 5426 §3.2: a receiver should take datagrams of 2048 octets; longer ones may be
#: cut, so the message text is shortened to fit (the structured data is kept whole).
UDP_MAX_OCTETS = 2048
#: RFC 5424 §6.2.1 facility codes.
FACILITIES = {
    "user": 1,
    "daemon": 3,
    "auth": 4,
    **{f"local{i}": 16 + i for i in range(8)},
}
#: Alert severity → syslog severity (RFC 5424 §6.2.1): critical is Critical (2), high
#: Error (3), medium Warning (4), low Notice (5), info Informational (6).
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
#: SD-ID of the alert's structured data. Names without '@' are reserved to IANA
#: (RFC 5424 §7.2); 32473 is the enterprise number RFC 5612 sets aside for examples and
#: documentation, used here until the project has its own.
SD_ID = "alert@32473"
APP_NAME = "hostwarden"


class DeliveryFailed(Exception):
    """One send did not go through; the message says why (it is kept on the row)."""


def targets(settings: DetectSettings) -> list[tuple[str, str]]:
    """(channel, target) of every configured destination."""
    found = [("webhook", url) for url in settings.webhook_urls]
    if settings.syslog_host:
        host = settings.syslog_host
        shown = f"[{host}]" if ":" in host else host
        found.append(("syslog", f"{settings.syslog_protocol}://{shown}:{settings.syslog_port}"))
    return found


def event_body(alert_id: int, event_type: str, data: dict[str, Any], now: datetime) -> str:
    """The event as JSON: ``id`` names this state of the alert (its number of updates),
    so a repeat of one delivery has the same id and a later update a new one."""
    return json.dumps(
        {
            "id": f"alert-{alert_id}-{data.get('updates', 0)}",
            "type": event_type,
            "occurred_at": isoformat(now),
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )


def enqueue(
    session: Session,
    settings: DetectSettings,
    alert_id: int,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
) -> int:
    """Queue the event for every destination, in the caller's transaction; how many."""
    destinations = targets(settings)
    if not destinations:
        return 0
    body = event_body(alert_id, event_type, data, now)
    for channel, target in destinations:
        session.add(
            DetectDelivery(
                alert_id=alert_id,
                event_type=event_type,
                channel=channel,
                target=target,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                last_error="",
                created_at=now,
            )
        )
    return len(destinations)


# --- sending ----------------------------------------------------------------------------------


def shown_target(target: str) -> str:
    """A destination as logs and reports show it: scheme, host and port only. Webhook
    URLs often carry their credential in the path or query (a chat service's hook
    token) or as user:password, and secrets are never logged."""
    parts = urlsplit(target)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    hidden = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{hidden}"


def send_webhook(settings: DetectSettings, url: str, body: bytes, delivery_id: int) -> None:
    secret = settings.webhook_secret.get_secret_value()
    if not secret:
        raise DeliveryFailed("[detect] webhook_secret is empty, so the request cannot be signed")
    event = json.loads(body).get("type", "")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"hostwarden/{__version__}",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        EVENT_HEADER: str(event),
        DELIVERY_HEADER: str(delivery_id),
    }
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=settings.webhook_timeout_seconds
        )
    except httpx.HTTPError as exc:
        # httpx names the URL in some messages; only its host goes on.
        detail = str(exc).replace(url, shown_target(url))
        raise DeliveryFailed(f"{type(exc).__name__}: {detail}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code} {response.text[:200]!r}")


def _sd_value(value: Any) -> str:
    """RFC 5424 §6.3.3: '"', '\\' and ']' are escaped with a backslash in a PARAM-VALUE."""
    text = "-" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_line(
    event: dict[str, Any], facility: str, *, hostname: str | None = None, limit: int | None = None
) -> bytes:
    """One RFC 5424 message: header, the alert's fields as structured data, the summary
    as the message (UTF-8 with the BOM the RFC asks for when it is not plain ASCII)."""
    data: dict[str, Any] = event["data"]
    pri = FACILITIES[facility] * 8 + SYSLOG_SEVERITY.get(str(data.get("severity")), 4)
    host = (hostname or socket.gethostname() or "-")[:255].replace(" ", "-")
    header = f"<{pri}>1 {event['occurred_at']} {host} {APP_NAME} {os.getpid()} {event['type'][:32]}"
    params = {
        "id": data.get("id"),
        "event": event.get("id"),
        "category": data.get("category"),
        "kind": data.get("kind"),
        "severity": data.get("severity"),
        "ip": data.get("ip"),
        "direction": data.get("direction"),
        "customer": data.get("customer_id"),
        "instance": data.get("instance_id"),
        "first": data.get("first_seen"),
        "last": data.get("last_seen"),
        "updates": data.get("updates"),
        "evidence": (data.get("evidence") or {}).get("url"),
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    head = f"{header} {sd} ".encode()
    message = str(data.get("summary") or "")
    encoded = message.encode()
    if limit is not None and len(head) + len(encoded) + 3 > limit:
        room = max(limit - len(head) - 3, 0)
        encoded = encoded[:room].decode("utf-8", errors="ignore").encode()
    if not encoded.isascii():
        encoded = b"\xef\xbb\xbf" + encoded
    return head + encoded


def send_syslog(settings: DetectSettings, target: str, body: bytes) -> None:
    parts = urlsplit(target)
    host, port = parts.hostname or "", parts.port or 514
    event = json.loads(body)
    try:
        if parts.scheme == "udp":
            line = syslog_line(event, settings.syslog_facility, limit=UDP_MAX_OCTETS)
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM
            )[0]
            with socket.socket(family, kind, proto) as sock:
                sock.sendto(line, address)
        else:
            line = syslog_line(event, settings.syslog_facility)
            with socket.create_connection(
                (host, port), timeout=settings.webhook_timeout_seconds
            ) as sock:
                # RFC 6587 §3.4.1 octet counting: "<length> <message>".
                sock.sendall(f"{len(line)} ".encode() + line)
    except OSError as exc:
        raise DeliveryFailed(f"syslog {target}: {exc}") from exc


Sender = Callable[[DetectSettings, DetectDelivery], None]


def send(settings: DetectSettings, row: DetectDelivery) -> None:
    if row.channel == "webhook":
        send_webhook(settings, row.target, row.body.encode(), row.id)
    elif row.channel == "syslog":
        send_syslog(settings, row.target, row.body.encode())
    else:
        raise DeliveryFailed(f"unknown channel '{row.channel}'")


# --- the queue ----------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    delivered: int = 0
    #: Failed this time, to be tried again.
    retrying: int = 0
    #: Failed for the last allowed time: given up.
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "errors": self.errors,
        }


def backoff(settings: DetectSettings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: the retry time, doubled each time."""
    return doubling_backoff(settings.delivery_retry_seconds, attempts, MAX_BACKOFF_SECONDS)


def deliver_due(
    runtime: Runtime, *, now: datetime | None = None, limit: int = 200, sender: Sender = send
) -> DeliveryReport:
    """Send every queued delivery that is due (oldest first, at most ``limit``); each
    outcome is written at once, so a crash mid-run repeats at most one send."""
    settings = runtime.settings.detect
    moment = utcnow() if now is None else as_utc(now)
    with runtime.reading() as session:
        due = list(
            session.scalars(
                select(DetectDelivery)
                .where(DetectDelivery.status == "pending", DetectDelivery.next_attempt_at <= moment)
                .order_by(DetectDelivery.id)
                .limit(limit)
            )
        )
    report = DeliveryReport()
    for row in due:
        error = ""
        try:
            sender(settings, row)
        except DeliveryFailed as exc:
            error = str(exc)[:1000]
        except Exception as exc:  # a bug must not stop the other deliveries
            error = f"{type(exc).__name__}: {exc}"[:1000]
        with runtime.db.session() as session:
            stored = session.get(DetectDelivery, row.id)
            if stored is None or stored.status != "pending":
                continue
            stored.attempts += 1
            if not error:
                stored.status = "delivered"
                stored.delivered_at = utcnow()
                stored.last_error = ""
                report.delivered += 1
                continue
            stored.last_error = error
            report.errors.append(f"{row.channel} {shown_target(row.target)}: {error}")
            if stored.attempts >= settings.delivery_attempts:
                stored.status = "failed"
                report.failed += 1
                log.error(
                    "detect.delivery_failed",
                    delivery=row.id,
                    alert=row.alert_id,
                    target=shown_target(row.target),
                    attempts=stored.attempts,
                    error=error,
                )
            else:
                stored.next_attempt_at = moment + backoff(settings, stored.attempts)
                report.retrying += 1
                log.warning(
                    "detect.delivery_retry",
                    delivery=row.id,
                    target=shown_target(row.target),
                    attempts=stored.attempts,
                    error=error,
                )
    return report


def list_deliveries(
    session: Session, *, status: str | None = None, limit: int = 100
) -> list[DetectDelivery]:
    query = select(DetectDelivery).order_by(DetectDelivery.id.desc()).limit(limit)
    if status:
        query = query.where(DetectDelivery.status == status)
    return list(session.scalars(query))


def deliver_job(runtime: Runtime) -> dict[str, Any]:
    return deliver_due(runtime).as_dict()


def jobs(settings: Settings) -> list[JobSpec]:
    """The ``hostwarden.jobs`` entry point of detection."""
    return [
        JobSpec(
            "detect.deliver",
            deliver_job,
            settings.detect.delivery_interval_seconds,
            "Sends queued alert deliveries (webhooks, syslog) that are due, with retries.",
        )
    ]
