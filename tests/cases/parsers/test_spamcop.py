"""SpamCop reports: spam sources and spamvertised web sites."""

from __future__ import annotations

from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.parsers.spamcop import SpamCopParser
from tests.cases.parsers.samples import parse_sample, utc


def test_spamcop_source_report_is_a_spam_event_for_the_email_from_address() -> None:
    _, chosen, report = parse_sample("spamcop_source.eml")

    assert chosen == "spamcop"
    [event] = report.events
    assert event.category == "spam"
    assert event.ip == "203.0.113.23"
    assert event.url is None
    assert event.occurred_at == utc(2026, 5, 1, 9, 41, 7)
    assert event.zone == "+0000"
    assert event.extra == {"spamcop_id": "7012345679"}
    assert "Email from 203.0.113.23 / Fri, 1 May 2026 09:41:07 +0000" in event.excerpt
    # The attached spam's Received line corroborates the address.
    assert "[203.0.113.23]" in event.excerpt.splitlines()[-1]


def test_spamvertised_site_asking_to_verify_an_account_is_phishing_with_its_url() -> None:
    _, chosen, report = parse_sample("spamcop_spamvertised.eml")

    assert chosen == "spamcop"
    [event] = report.events
    assert event.category == "phishing"
    assert event.url == "http://account-verify.example.com/login/"
    assert event.domain == "account-verify.example.com"
    assert event.ip == "198.51.100.44"
    assert event.occurred_at == utc(2026, 5, 1, 9, 50, 33)
    assert event.zone == "GMT"
    assert event.extra["spamvertised"] is True
    assert "Spamvertised web site: http://account-verify.example.com/login/" in event.excerpt
    assert "is 198.51.100.44; Fri, 01 May 2026 09:50:33 GMT" in event.excerpt


def test_spamvertised_advert_without_phishing_words_is_spam() -> None:
    raw = (
        b"From: 1@reports.spamcop.example.net\n"
        b"Subject: [SpamCop (http://pills.example.com/) id:7000000001]Cheap pills\n"
        b"Date: Fri, 01 May 2026 10:00:00 +0000\n\n"
        b"[ SpamCop V5.4.0 ]\n\n"
        b"Spamvertised web site: http://pills.example.com/\n\n"
        b"[ Offending message ]\nSubject: Cheap pills\n\nBuy now at http://pills.example.com/\n"
    )
    [event] = SpamCopParser().parse(read_message(raw)).events

    assert event.category == "spam"
    assert event.ip is None
    assert event.domain == "pills.example.com"
    # No "is <ip>; <date>" line: the report's Date stands in.
    assert event.occurred_at == utc(2026, 5, 1, 10, 0, 0)


def test_spamcop_report_without_its_lines_gives_no_event_and_a_note() -> None:
    raw = b"From: x@reports.spamcop.example.net\nSubject: [SpamCop (x) id:1]hi\n\nnothing here\n"
    report = SpamCopParser().parse(read_message(raw))

    assert report.events == []
    assert report.notes == [
        "the SpamCop report has no 'Email from' or 'Spamvertised web site' line"
    ]
