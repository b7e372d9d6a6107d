"""Alert deliveries: signed webhooks and RFC 5424 syslog, received on loopback sockets the
tests open; the queue's retries, backoff and giving up."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from hostwarden.core.config_detect import DetectSettings
from hostwarden.core.runtime import Runtime
from hostwarden.detect import delivery
from hostwarden.detect.alerts import AlertSink
from hostwarden.detect.models import DetectDelivery
from hostwarden.registry import webhooks
from tests.detect.alert_support import MINUTE, T0, Holders, finding, make_holders

SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """A webhook endpoint on loopback: answers with the queued statuses (then 200)."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/hostwarden"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def configure(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, **values: Any) -> None:
    monkeypatch.setattr(runtime.settings, "detect", DetectSettings(**values))


def rows(runtime: Runtime) -> list[DetectDelivery]:
    with runtime.reading() as session:
        return list(session.scalars(select(DetectDelivery).order_by(DetectDelivery.id)))


@pytest.fixture
def holders(runtime: Runtime) -> Holders:
    return make_holders(runtime)


# --- webhooks ---------------------------------------------------------------------------------


def test_a_new_alert_is_posted_signed_like_the_change_feed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, holders: Holders
) -> None:
    configure(runtime, monkeypatch, webhook_urls=[receiver.url], webhook_secret=SECRET)
    AlertSink(runtime).take([finding(customer_id=holders.acme)])
    report = delivery.deliver_due(runtime)
    assert report.as_dict() == {"delivered": 1, "retrying": 0, "failed": 0, "errors": []}
    ((headers, body),) = receiver.requests
    assert headers["content-type"] == "application/json"
    assert headers["x-hostwarden-event"] == "alert.created"
    assert headers["x-hostwarden-delivery"] == "1"
    # The receiver checks it with the same code the change feed uses.
    signature = headers[webhooks.SIGNATURE_HEADER.lower()]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", signature)
    assert match is not None
    assert webhooks.sign(SECRET, body, int(match.group(1))) == signature
    assert webhooks.sign("another secret", body, int(match.group(1))) != signature
    event = json.loads(body)
    assert (event["id"], event["type"]) == ("alert-1-0", "alert.created")
    assert (event["data"]["ip"], event["data"]["customer_id"]) == ("203.0.113.5", holders.acme)
    assert event["data"]["evidence"]["url"].startswith("/api/v1/flows/records?")
    (row,) = rows(runtime)
    assert (row.status, row.attempts, row.delivered_at is not None) == ("delivered", 1, True)
    # Nothing is sent twice.
    assert delivery.deliver_due(runtime).delivered == 0
    assert len(receiver.requests) == 1


def test_an_update_is_delivered_as_its_own_event(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    configure(runtime, monkeypatch, webhook_urls=[receiver.url], webhook_secret=SECRET)
    sink = AlertSink(runtime)
    sink.take([finding()])
    sink.take([finding(start_ms=T0 + 5 * MINUTE, severity="high")])
    assert delivery.deliver_due(runtime).delivered == 2
    events = [json.loads(body) for _, body in receiver.requests]
    assert [(e["id"], e["type"], e["data"]["severity"]) for e in events] == [
        ("alert-1-0", "alert.created", "medium"),
        ("alert-1-1", "alert.updated", "high"),
    ]


def test_a_failed_webhook_is_retried_after_a_doubling_backoff(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    configure(
        runtime,
        monkeypatch,
        webhook_urls=[receiver.url],
        webhook_secret=SECRET,
        delivery_retry_seconds=30,
    )
    receiver.statuses = [503, 500]
    AlertSink(runtime).take([finding()])
    now = datetime.now(UTC)
    first = delivery.deliver_due(runtime, now=now)
    assert (first.delivered, first.retrying) == (0, 1)
    assert "HTTP 503" in first.errors[0]
    (row,) = rows(runtime)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "pending",
        1,
        now + timedelta(seconds=30),
    )
    # Not due yet: nothing is sent.
    assert delivery.deliver_due(runtime, now=now + timedelta(seconds=29)).as_dict()["retrying"] == 0
    assert len(receiver.requests) == 1
    second = delivery.deliver_due(runtime, now=now + timedelta(seconds=30))
    assert second.retrying == 1
    assert rows(runtime)[0].next_attempt_at == now + timedelta(seconds=90)
    third = delivery.deliver_due(runtime, now=now + timedelta(seconds=90))
    assert third.delivered == 1
    (row,) = rows(runtime)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, "")
    # Every try was signed afresh, with the same event id for the receiver to spot repeats.
    assert len({json.loads(b)["id"] for _, b in receiver.requests}) == 1


def test_a_delivery_is_given_up_after_the_allowed_attempts(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configure(
        runtime,
        monkeypatch,
        webhook_urls=[f"http://127.0.0.1:{port}/hook"],
        webhook_secret=SECRET,
        delivery_attempts=2,
        delivery_retry_seconds=1,
    )
    AlertSink(runtime).take([finding()])
    now = datetime.now(UTC)
    assert delivery.deliver_due(runtime, now=now).retrying == 1
    final = delivery.deliver_due(runtime, now=now + timedelta(seconds=5))
    assert (final.retrying, final.failed) == (0, 1)
    (row,) = rows(runtime)
    assert (row.status, row.attempts) == ("failed", 2)
    assert "ConnectError" in row.last_error
    assert delivery.deliver_due(runtime, now=now + timedelta(days=1)).as_dict()["failed"] == 0


def test_the_backoff_doubles_up_to_an_hour() -> None:
    settings = DetectSettings(delivery_retry_seconds=30)
    waits = [delivery.backoff(settings, n).total_seconds() for n in (1, 2, 3, 7, 8, 30)]
    assert waits == [30, 60, 120, 1920, 3600, 3600]


def test_webhook_urls_need_a_secret_and_http() -> None:
    with pytest.raises(ValidationError, match="webhook_secret is empty"):
        DetectSettings(webhook_urls=["https://soc.example.net/hook"])
    with pytest.raises(ValidationError, match="not an http"):
        DetectSettings(webhook_urls=["ftp://soc.example.net/hook"], webhook_secret="x")
    shown = DetectSettings(webhook_urls=["https://a.example/h"], webhook_secret="x").model_dump(
        mode="json"
    )
    assert shown["webhook_secret"] == "**********"


# --- syslog ---------------------------------------------------------------------------------------

RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) hostwarden (?P<pid>\d+) (?P<msgid>\S+) "
    rb"(?P<sd>\[alert@32473(?: [a-z]+=\"(?:[^\"\\\]]|\\.)*\")+\]) (?P<msg>.*)$",
    re.DOTALL,
)


def test_an_alert_goes_to_syslog_over_udp_as_an_rfc5424_line(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, holders: Holders
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        configure(
            runtime,
            monkeypatch,
            syslog_host="127.0.0.1",
            syslog_port=sock.getsockname()[1],
            syslog_facility="local3",
        )
        AlertSink(runtime).take(
            [finding(severity="critical", category="ddos-out", customer_id=holders.acme)]
        )
        assert delivery.deliver_due(runtime).delivered == 1
        line, _ = sock.recvfrom(65535)
    parsed = RFC5424.match(line)
    assert parsed is not None, line
    # local3 (19) × 8 + Critical (2)
    assert parsed["pri"] == b"154"
    assert parsed["msgid"] == b"alert.created"
    assert parsed["ts"] == rows(runtime)[0].created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    sd = parsed["sd"].decode()
    assert 'id="1"' in sd and 'ip="203.0.113.5"' in sd and 'category="ddos-out"' in sd
    assert f'customer="{holders.acme}"' in sd and 'instance="-"' in sd
    assert parsed["msg"] == b"203.0.113.5 probed port 22 on 40 hosts in 5 minutes"


def test_over_tcp_each_line_is_framed_by_octet_counting(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(5)

        def accept_two() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    chunks = []
                    while chunk := conn.recv(65535):
                        chunks.append(chunk)
                    received.append(b"".join(chunks))

        thread = threading.Thread(target=accept_two)
        thread.start()
        configure(
            runtime,
            monkeypatch,
            syslog_host="127.0.0.1",
            syslog_port=server.getsockname()[1],
            syslog_protocol="tcp",
        )
        AlertSink(runtime).take([finding(), finding(ip="203.0.113.6", summary="Überlast ✓")])
        assert delivery.deliver_due(runtime).delivered == 2
        thread.join(timeout=5)
    assert len(received) == 2
    for frame in received:
        length, _, line = frame.partition(b" ")
        assert int(length) == len(line)
        assert RFC5424.match(line) is not None, line
    # Not plain ASCII: the message starts with the BOM RFC 5424 asks for.
    assert received[1].endswith(b"\xef\xbb\xbf" + "Überlast ✓".encode())


def test_a_syslog_server_that_is_down_is_retried(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configure(
        runtime, monkeypatch, syslog_host="127.0.0.1", syslog_port=port, syslog_protocol="tcp"
    )
    AlertSink(runtime).take([finding()])
    report = delivery.deliver_due(runtime)
    assert report.retrying == 1
    assert f"syslog tcp://127.0.0.1:{port}" in report.errors[0]


def test_structured_data_values_are_escaped_and_udp_lines_fit_2048_octets() -> None:
    event = {
        "id": "alert-7-0",
        "type": "alert.created",
        "occurred_at": "2026-05-04T12:05:00.000000Z",
        "data": {
            "id": 7,
            "kind": 'odd"kind]\\x',
            "severity": "low",
            "summary": "x" * 5000,
            "evidence": {"url": "/api/v1/flows/records?from=a&to=b&ip=c"},
        },
    }
    line = delivery.syslog_line(event, "daemon", hostname="hw-1", limit=2048)
    assert len(line) <= 2048
    assert line.startswith(b"<29>1 2026-05-04T12:05:00.000000Z hw-1 hostwarden ")
    assert b'kind="odd\\"kind\\]\\\\x"' in line
    assert RFC5424.match(line) is not None


def test_logs_and_reports_show_a_webhook_by_its_host_only() -> None:
    hook = "https://bot:pa55@hooks.example.net:8443/services/T0/B1/s3cr3t?token=abc"
    assert delivery.shown_target(hook) == "https://hooks.example.net:8443/…"
    assert delivery.shown_target("udp://192.0.2.9:514") == "udp://192.0.2.9:514"
    assert delivery.shown_target("http://soc.example.net") == "http://soc.example.net"
