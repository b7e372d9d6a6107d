"""Mail in and out over real SMTP on loopback: the intake listener (SMTP and LMTP) taking
reports, and the outbox delivering notices through a relay, retrying while it is down."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from hostwarden.cases import intake_smtp, notify, service
from hostwarden.cases.models import AbuseReport, OutgoingMail
from hostwarden.core.runtime import Runtime, system_actor
from tests.cases.support import build, event, mail, take


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """A relay that keeps what it is given (aiosmtpd, a real SMTP server)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 OK"


@pytest.fixture
def relay(runtime: Runtime) -> Iterator[Sink]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    runtime.settings.mail.relay_host = "127.0.0.1"
    runtime.settings.mail.relay_port = port
    runtime.settings.mail.from_address = "abuse@provider.example"
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def intake(runtime: Runtime) -> Iterator[int]:
    build(runtime)
    port = free_port()
    listener = intake_smtp.start(runtime, port=port)
    try:
        yield port
    finally:
        listener.stop()


REPORT = (
    "Hello,\n\nwe received spam from your network:\n\n"
    "Received: from vm1 (vm1.example.com [203.0.113.10]) by mx.reporter.example.org\n"
    "    with ESMTP id 4711; Fri, 01 May 2026 10:00:00 +0800\n\n"
    "Please stop it.\n"
)


def test_a_report_mailed_to_the_abuse_address_opens_a_case_for_the_customer(
    runtime: Runtime, intake: int
) -> None:
    with smtplib.SMTP("127.0.0.1", intake, timeout=10) as smtp:
        refused = smtp.sendmail("abuse@reporter.example.org", ["abuse@localhost"], mail(REPORT))
        code, _reply = smtp.docmd("NOOP")
    assert refused == {} and code == 250
    with runtime.reading() as session:
        report = session.scalars(select(AbuseReport)).one()
        assert report.channel == "smtp" and report.status == "parsed"
        case = service.get_case(session, 1)
    assert case.subject == "203.0.113.10" and case.category == "spam"


def test_mail_for_another_address_is_refused_at_rcpt(runtime: Runtime, intake: int) -> None:
    with smtplib.SMTP("127.0.0.1", intake, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("x@reporter.example.org")
        code, reply = smtp.rcpt("postmaster@localhost")
    assert code == 550 and b"not an abuse address" in reply


def test_a_mail_over_the_size_limit_is_refused_with_552(runtime: Runtime, intake: int) -> None:
    runtime.settings.cases.max_report_mb = 1
    # The listener took its limit at start; the service checks again (both say 552/TooLarge).
    big = mail(("x" * 70 + "\n") * 16_000)
    with (
        smtplib.SMTP("127.0.0.1", intake, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPDataError) as info,
    ):
        smtp.sendmail("x@reporter.example.org", ["abuse@localhost"], big)
    assert info.value.smtp_code == 552
    with runtime.reading() as session:
        assert session.scalars(select(AbuseReport)).first() is None


def test_lmtp_answers_once_per_recipient(runtime: Runtime) -> None:
    build(runtime)
    runtime.settings.cases.lmtp = True
    runtime.settings.cases.abuse_addresses = ["abuse@localhost", "security@localhost"]
    port = free_port()
    listener = intake_smtp.start(runtime, port=port)
    # smtplib's LMTP reads one reply after DATA; RFC 2033 wants one per recipient, so
    # the conversation is held by hand here.
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=10) as lmtp:
            assert lmtp.docmd("LHLO", "tester")[0] == 250
            assert lmtp.docmd("MAIL", "FROM:<x@reporter.example.org>")[0] == 250
            assert lmtp.docmd("RCPT", "TO:<abuse@localhost>")[0] == 250
            assert lmtp.docmd("RCPT", "TO:<security@localhost>")[0] == 250
            assert lmtp.docmd("DATA")[0] == 354
            lmtp.send(smtplib.quotedata(mail(REPORT).decode()).encode() + b"\r\n.\r\n")
            replies = [lmtp.getreply(), lmtp.getreply()]
    finally:
        listener.stop()
    assert [code for code, _ in replies] == [250, 250]
    assert b"accepted" in replies[1][1]
    with runtime.reading() as session:
        assert session.scalars(select(AbuseReport)).one().channel == "lmtp"


def test_the_notice_reaches_the_customer_through_the_relay_and_the_case_awaits_a_response(
    runtime: Runtime, relay: Sink
) -> None:
    build(runtime)
    reference = take(
        runtime, event(excerpt="Received: from vm1 [203.0.113.10] spam run")
    ).cases_opened[0]
    with runtime.operation(system_actor("desk-test")) as op:
        notify.notify_customer(op, service.get_case(op.session, reference), locale="zh-CN")
    result = notify.send_due(runtime)
    assert result.sent == 1
    sender, recipients, data = relay.messages[0]
    assert recipients == ["alice@example.com"] and sender == "abuse@provider.example"
    message = message_from_bytes(data, policy=policy.default)
    body = message.get_content()
    assert message["X-Hostwarden-Case"] == reference
    assert "垃圾邮件" in str(message["Subject"])
    assert "spam run" in body and "北京时间" in body
    assert f"{runtime.settings.cases.public_url}/respond/" in body
    with runtime.reading() as session:
        case = service.get_case(session, reference)
    assert case.state == "awaiting_response" and case.deadline_at is not None


def test_mail_waits_and_retries_while_the_relay_is_down_then_gives_up(runtime: Runtime) -> None:
    build(runtime)
    runtime.settings.mail.relay_host = "127.0.0.1"
    runtime.settings.mail.relay_port = free_port()  # nothing listens there
    runtime.settings.mail.max_attempts = 2
    reference = take(runtime, event()).cases_opened[0]
    with runtime.operation(system_actor("desk-test")) as op:
        notify.notify_customer(op, service.get_case(op.session, reference), locale="en")
    first = notify.send_due(runtime)
    assert first.retried == 1
    with runtime.reading() as session:
        queued = session.scalars(select(OutgoingMail)).one()
        assert queued.status == "pending" and queued.attempts == 1
        assert "Connection refused" in queued.last_error or "Errno" in queued.last_error
        retry_at = queued.next_attempt_at
    assert notify.send_due(runtime).as_dict() == {
        "sent": 0,
        "retried": 0,
        "failed": 0,
        "waiting": 0,
    }
    final = notify.send_due(runtime, now=retry_at + timedelta(seconds=1))
    assert final.failed == 1
    with runtime.reading() as session:
        assert session.scalars(select(OutgoingMail)).one().status == "failed"
        assert service.get_case(session, reference).state == "notified"


def test_a_customer_without_a_mail_address_cannot_be_notified(runtime: Runtime) -> None:
    from hostwarden.errors import Conflict
    from hostwarden.registry.models import Customer

    scene = build(runtime)
    with runtime.operation(system_actor("test")) as op:
        op.session.get(Customer, scene.alice).email = ""  # type: ignore[union-attr]
    reference = take(runtime, event()).cases_opened[0]
    with (
        runtime.operation(system_actor("desk-test")) as op,
        pytest.raises(Conflict, match="no mail address"),
    ):
        notify.notify_customer(op, service.get_case(op.session, reference))


def test_the_customer_reply_through_the_link_lands_on_the_timeline(runtime: Runtime) -> None:
    build(runtime)
    reference = take(runtime, event()).cases_opened[0]
    with runtime.operation(system_actor("desk-test")) as op:
        case = service.get_case(op.session, reference)
        mail_row = notify.notify_customer(op, case, locale="en")
        text = mail_row.message
    token = text.split("/respond/")[1].split()[0]
    service.customer_reply(runtime, token, "Removed the spam script.", [("log.txt", b"cleaned")])
    with runtime.reading() as session:
        from hostwarden.cases import queries

        detail = queries.case_detail(session, service.get_case(session, reference))
    reply = next(t for t in detail["timeline"] if t["kind"] == "customer-reply")
    assert reply["text"] == "Removed the spam script."
    assert reply["data"]["attachments"][0]["name"] == "log.txt"
    from hostwarden.errors import NotFound, ValidationFailed

    with pytest.raises(NotFound):
        service.customer_reply(runtime, "not-a-token", "hi", [])
    with pytest.raises(ValidationFailed, match="empty"):
        service.customer_reply(runtime, token, "  ", [])


def test_acknowledgements_go_to_people_not_to_automated_feeds(runtime: Runtime) -> None:
    build(runtime)
    service.receive(runtime, mail(REPORT), channel="smtp")
    with runtime.reading() as session:
        acks = session.scalars(select(OutgoingMail)).all()
    assert [m.recipient for m in acks] == ["abuse@reporter.example.org"]
    assert "AB-" in acks[0].subject
    # Through the API (a partner's or a feed's token): no acknowledgement.
    take(runtime, event(excerpt="feed"))
    with runtime.reading() as session:
        assert len(session.scalars(select(OutgoingMail)).all()) == 1


def test_the_retry_wait_doubles_up_to_six_hours_however_many_attempts_failed() -> None:
    from hostwarden.core.timeutil import doubling_backoff

    waits = [
        doubling_backoff(60, n, notify.MAX_BACKOFF_SECONDS).total_seconds()
        for n in (1, 2, 3, 9, 10, 99)
    ]
    # Attempt 99 overflowed timedelta when the doubling was not bounded first.
    assert waits == [60, 120, 240, 15360, 6 * 3600, 6 * 3600]
