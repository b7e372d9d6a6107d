"""ARF feedback-loop reports: RFC 5965 and the older variants big mailbox providers send."""

from __future__ import annotations

from hostwarden.cases.parsers.arf import ArfParser
from hostwarden.cases.parsers.mime import read_message
from tests.cases.parsers.samples import parse_sample, utc


def test_arf_report_gives_a_spam_event_for_the_source_ip_at_the_arrival_time() -> None:
    _, chosen, report = parse_sample("arf_rfc5965.eml")

    assert chosen == "arf"
    assert report.parser == "arf"
    assert report.notes == []
    [event] = report.events
    assert event.category == "spam"
    assert event.ip == "192.0.2.25"
    assert event.port is None
    assert event.occurred_at == utc(2026, 5, 1, 9, 58, 41)
    assert event.zone == "+0000"
    assert event.reporter == "fbl-reports@mailbox.example.com"
    assert "Source-IP: 192.0.2.25" in event.excerpt
    assert "Feedback-Type: abuse" in event.excerpt


def test_arf_report_carries_the_reported_domain_uri_and_feedback_fields() -> None:
    _, _, report = parse_sample("arf_rfc5965.eml")
    [event] = report.events

    assert event.domain == "news.shop.example.net"
    assert event.url == "http://news.shop.example.net/unsubscribe?u=1337"
    assert event.extra["ip_source"] == "Source-IP"
    assert event.extra["feedback_type"] == "abuse"
    assert event.extra["user_agent"] == "MailboxFBL/2.1"
    assert event.extra["original_mail_from"] == "<bounces+1337@news.shop.example.net>"
    assert event.extra["original_subject"] == "Spring sale - 70% off all watches"
    assert event.extra["incidents"] == "1"


def test_legacy_jmrp_report_takes_the_first_external_received_hop_of_the_original() -> None:
    # The original's top two Received lines are the provider's own relays (same domain,
    # then an RFC 1918 edge address); the third names the customer's VPS.
    _, chosen, report = parse_sample("arf_jmrp_legacy.eml")

    assert chosen == "arf"
    [event] = report.events
    assert event.category == "spam"
    assert event.ip == "203.0.113.61"
    assert event.extra["ip_source"] == "Received"
    assert "[203.0.113.61]" in event.excerpt
    assert "Received: from vps1187.customer.example.net" in event.excerpt


def test_legacy_report_without_arrival_date_uses_the_date_of_the_original() -> None:
    _, _, report = parse_sample("arf_jmrp_legacy.eml")
    [event] = report.events

    assert event.occurred_at == utc(2026, 5, 1, 17, 12, 40)
    assert event.zone == "+0000"
    assert event.extra["original_message_id"] == "<a1b2c3d4@vps1187.customer.example.net>"


def test_feedback_fields_sent_as_text_plain_are_read_and_fraud_stays_fraud() -> None:
    _, chosen, report = parse_sample("arf_textplain_feedback.eml")

    assert chosen == "arf"
    [event] = report.events
    assert event.category == "fraud"
    assert event.ip == "198.51.100.77"
    assert event.occurred_at == utc(2026, 5, 1, 17, 47, 10)
    assert event.zone == "-0400"
    assert "Source-IP: 198.51.100.77" in event.excerpt


FEEDBACK = """From: fbl@mailbox.example.com
To: abuse@hosting.example.net
Subject: {subject}
Date: Fri, 01 May 2026 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b"

--b
Content-Type: text/plain

{human}
--b
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: Test/1
Version: 1
Source-IP: {source_ip}

--b
Content-Type: text/rfc822-headers

Received: from smtp.example.net (smtp.example.net [198.51.100.9]) by mx.mailbox.example.com
Date: Fri, 01 May 2026 11:00:00 +0000

--b--
"""


def _feedback(
    feedback_type: str = "abuse",
    source_ip: str = "192.0.2.5",
    subject: str = "FBL",
    human: str = "A complaint.",
) -> bytes:
    return FEEDBACK.format(
        feedback_type=feedback_type, source_ip=source_ip, subject=subject, human=human
    ).encode()


def test_feedback_types_map_to_categories() -> None:
    parser = ArfParser()
    seen = {}
    for feedback_type in ("abuse", "fraud", "virus", "other", "opt-out"):
        [event] = parser.parse(read_message(_feedback(feedback_type))).events
        seen[feedback_type] = event.category

    assert seen == {
        "abuse": "spam",
        "fraud": "fraud",
        "virus": "malware",
        "other": "other",
        "opt-out": "other",
    }


def test_phishing_named_in_the_report_makes_it_a_phishing_event() -> None:
    raw = _feedback("fraud", human="The recipient reported this message as phishing.")
    [event] = ArfParser().parse(read_message(raw)).events

    assert event.category == "phishing"


def test_invalid_source_ip_falls_back_to_the_received_header_with_a_note() -> None:
    report = ArfParser().parse(read_message(_feedback(source_ip="not-an-address")))

    [event] = report.events
    assert event.ip == "198.51.100.9"
    assert event.extra["ip_source"] == "Received"
    assert any("'not-an-address' is not an IP address" in note for note in report.notes)
    # No Arrival-Date: the original's Date is the time.
    assert event.occurred_at == utc(2026, 5, 1, 11, 0, 0)


def test_arf_scores_rfc5965_highest_and_plain_mail_zero() -> None:
    parser = ArfParser()
    plain = read_message(b"From: a@example.com\nSubject: hi\n\nhello 192.0.2.1\n")

    assert parser.score(read_message(_feedback())) == 1.0
    assert parser.score(plain) == 0.0


def test_feedback_report_without_source_ip_takes_the_received_hop_without_a_note() -> None:
    # Some providers (Yahoo-style) leave Source-IP out and send the original's headers.
    report = ArfParser().parse(read_message(_feedback(source_ip="")))

    [event] = report.events
    assert event.ip == "198.51.100.9"
    assert event.extra["ip_source"] == "Received"
    assert report.notes == []
